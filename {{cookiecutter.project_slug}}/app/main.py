"""Application entry point: `uvicorn app.main:app` (or `uvicorn app.main:create_app --factory`)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from loguru import logger

from app.api.routes import include_routes
from app.api.v1.router import API_V1_PREFIX
from app.core.auth import PasswordHasher, TokenCodec
from app.core.config import Environment, Need, Settings, load_settings
from app.core.db import Database
from app.core.error_handlers import register_exception_handlers
from app.core.logger import setup_logging
from app.core.migrations import SchemaCheck
from app.core.rate_limit import RateLimiter
{%- if cookiecutter.use_redis %}
from app.core.redis import create_redis
{%- endif %}
from app.jobs.broker import create_jobs
{%- if not cookiecutter.use_redis %}
from app.jobs.context import JobContext
{%- endif %}
from app.middleware.body_limit import BodyLimitMiddleware
from app.middleware.logging import RequestContextMiddleware
from app.middleware.login_guard import LoginGuardMiddleware
{%- if cookiecutter.use_b2_storage %}
from app.services.back_blaze_b2 import BackBlaze
{%- endif %}
{%- if not cookiecutter.use_redis %}
from app.services.email import EmailTemplates, Mailer
{%- endif %}

# What the API uses beyond the settings every command reads, so what it refuses to start
# without.
API_NEEDS = (
    Need.TOKENS,  # access and refresh tokens
    {%- if not cookiecutter.use_redis %}
    Need.MAIL,  # the jobs, the password-reset mail among them, run in this process
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}
    Need.STORAGE,  # file uploads
    {%- endif %}
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build every resource from the app's settings; release them at shutdown.

    Building does no I/O but one bounded read of the database's migration revision, which
    only logs: a dependency that is down at start-up shows in readiness and in the routes that
    need it, and the process still starts.
    """
    settings: Settings = app.state.settings
    {%- if cookiecutter.use_redis %}
    redis = create_redis(settings)
    app.state.redis = redis
    app.state.rate_limiter = RateLimiter(settings, redis)
    {%- else %}
    app.state.rate_limiter = RateLimiter(settings)
    if settings.web_concurrency > 1:
        logger.warning(
            "WEB_CONCURRENCY={}: each worker process keeps its own rate-limit counts, so a "
            "client gets up to {} times each limit; use Redis to share them",
            settings.web_concurrency,
            settings.web_concurrency,
        )
    {%- endif %}
    if settings.current_environment is Environment.PROD and settings.show_docs:
        logger.warning(
            "API docs are on in prod (DOCS_ENABLED=true): /docs and the schema are public"
        )
    app.state.database = Database.from_settings(settings)
    # The code's migrations are read once, here; the log says at once whether the database is
    # migrated for this code, and which command migrates it if not.
    app.state.schema_check = SchemaCheck.of_code()
    await app.state.schema_check.read_at_start(app.state.database)
    app.state.passwords = PasswordHasher.from_settings(settings)
    app.state.tokens = TokenCodec.from_settings(settings)
    {%- if cookiecutter.use_redis %}
    # Queues jobs on Redis for the workers (app/worker.py); connects on first use.
    app.state.jobs = create_jobs(settings)
    {%- else %}
    # Runs jobs in this process, after the response, on this app's database.
    app.state.jobs = create_jobs(settings)
    await app.state.jobs.start(
        JobContext(
            settings=settings,
            database=app.state.database,
            mailer=Mailer.from_settings(settings),
            templates=EmailTemplates(),
        )
    )
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}
    # Authorizes with B2 on its first call, not here.
    app.state.storage = BackBlaze(
        settings.b2_application_key_id, settings.b2_application_key, realm=settings.b2_realm
    ).select_bucket(settings.b2_bucket_name)
    {%- endif %}
    try:
        yield
    finally:
        await app.state.jobs.stop()
        await app.state.database.dispose()
        {%- if cookiecutter.use_redis %}
        await redis.aclose()
        {%- endif %}


def operation_id(route: APIRoute) -> str:
    """Short, stable operation ids (`auth-login`, `users-read_me`): generated clients get
    readable names.
    """
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for these settings (default: the environment and `.env`); without what it
    needs (API_NEEDS), the process stops with one line naming each missing setting.
    """
    settings = (settings or load_settings()).require(*API_NEEDS)
    log_request = setup_logging(settings)
    options: dict[str, Any] = {
        "title": settings.project_name,
        "version": "{{ cookiecutter.version }}",
        "description": "{{ cookiecutter.description }}",
        "lifespan": lifespan,
        "generate_unique_id_function": operation_id,
    }
    if settings.show_docs:
        # /docs and /redoc with their JavaScript and CSS served from the fastapi-offline
        # package, not a CDN: the docs work air-gapped and behind strict proxies.
        app = FastAPIOffline(**options)
    else:
        app = FastAPI(**options, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    register_exception_handlers(app)
    # Innermost: a login attempt known to be over its limit is refused before routing, at
    # about the cost of /health.
    app.add_middleware(LoginGuardMiddleware, login_path=f"{API_V1_PREFIX}/auth/login")
    # Around it the body limit, and around both CORS: their refusals carry CORS headers too.
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_body_bytes,
        {%- if cookiecutter.use_b2_storage %}
        # The upload: the file plus room for the multipart envelope.
        route_limits=[("POST", "/api/v1/files", settings.b2_upload_max_bytes + 16 * 1024)],
        {%- endif %}
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    # Added last, so it is outermost: every response, CORS preflights and 500s included,
    # carries the request id and the security headers.
    app.add_middleware(
        RequestContextMiddleware,
        hsts=not settings.is_local,
        log_request=log_request,
    )
    include_routes(app)
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app`, built from the environment on first use: importing this module (as the
    tests do) reads no settings and builds nothing.
    """
    if name == "app":
        app = create_app()
        globals()["app"] = app
        return app
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
