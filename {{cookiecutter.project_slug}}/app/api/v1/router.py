from fastapi import APIRouter

{% if cookiecutter.use_b2_storage -%}
from app.api.v1.endpoints import auth, files, user
{%- else -%}
from app.api.v1.endpoints import auth, user
{%- endif %}

api_v1_router = APIRouter()
api_v1_router.include_router(auth.router)
api_v1_router.include_router(user.router)
{%- if cookiecutter.use_b2_storage %}
api_v1_router.include_router(files.router)
{%- endif %}
