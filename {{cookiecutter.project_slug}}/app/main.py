"""Application entry point: `uvicorn app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from loguru import logger

from app.api.routes import include_routes
from app.core.config import Settings, get_settings
from app.core.db import engine
from app.core.error_handlers import register_exception_handlers
from app.core.logger import setup_logging
from app.middleware.logging import RequestContextMiddleware


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_logging(settings)
    docs = settings.show_docs
    app = FastAPI(
        title=settings.project_name,
        version="{{ cookiecutter.version }}",
        description="{{ cookiecutter.description }}",
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        lifespan=lifespan,
    )
    register_exception_handlers(app)
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
        log_requests=logger.level(settings.log_level).no <= logger.level("INFO").no,
    )
    include_routes(app)
    return app


app = create_app()
