from fastapi import APIRouter

{% if cookiecutter.use_b2_storage -%}
from app.api.v1.endpoints import auth, files, user
{%- else -%}
from app.api.v1.endpoints import auth, user
{%- endif %}

API_V1_PREFIX = "/api/v1"

# The routers of version 1, mounted under API_V1_PREFIX.
v1_routers: list[APIRouter] = [
    auth.router,
    user.router,
    {%- if cookiecutter.use_b2_storage %}
    files.router,
    {%- endif %}
]
