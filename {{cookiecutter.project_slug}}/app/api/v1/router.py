from fastapi import APIRouter

from app.api.v1.endpoints import auth, user
{%- if cookiecutter.use_b2_storage %}
from app.api.v1.endpoints import files
{%- endif %}

api_v1_router = APIRouter()
api_v1_router.include_router(auth.router)
api_v1_router.include_router(user.router)
{%- if cookiecutter.use_b2_storage %}
api_v1_router.include_router(files.router)
{%- endif %}
