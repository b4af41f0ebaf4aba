"""``create_app()``: the one ASGI application, with its middleware, error handlers and routes."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from plexus.api import API_PREFIX, build_api_router
from plexus.auth.endpoints import wellknown as wellknown_router
from plexus.config import Settings, get_settings
from plexus.errors import install_error_handlers
from plexus.health.endpoints import router as health_router
from plexus.middleware import (
    BodyLimitMiddleware,
    CORSMiddleware,
    DeadlineMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from plexus.runtime import Runtime, init_runtime
from plexus.security.ipguard import IpGuardMiddleware
from plexus.security.ratelimit import RateLimitHeadersMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

#: How long a media upload may take (the body is streamed to disk as it arrives).
UPLOAD_DEADLINE_SECONDS: Final = 600.0
STATIC_DIR: Final = Path(__file__).parent / "static"
#: Probes must answer fast or not at all.
PROBE_DEADLINE_SECONDS: Final = 5.0


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the application for ``settings`` (default: the process settings)."""
    settings = settings or (runtime.settings if runtime else get_settings())
    rt = runtime or init_runtime(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        rt.dispose()

    docs = settings.docs_enabled
    app = FastAPI(
        title="Plexus",
        summary="Self-hosted, security-first integration hub.",
        version="v1",
        openapi_url=f"{API_PREFIX}/openapi.json" if docs else None,
        # The interactive pages load scripts from a CDN, which the CSP forbids; the
        # document itself is what clients and scanners use.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(build_api_router())
    app.include_router(wellknown_router)
    from plexus.connections.endpoints import client_metadata_router

    app.include_router(client_metadata_router)
    # html=False: a directory is a 404, never a listing.
    app.mount("/static", StaticFiles(directory=STATIC_DIR, html=False), name="static")
    if not settings.is_production:
        # The practice platform the sandbox provider publishes to (never in production).
        from plexus.providers.sandbox import SandboxPlatform

        sandbox = SandboxPlatform(settings.data_dir / "sandbox.db")
        app.mount("/sandbox", sandbox.app(), name="sandbox")

    # add_middleware wraps what is there, so the last one added runs first.
    app.add_middleware(
        DeadlineMiddleware,
        default=settings.request_deadline_seconds,
        per_prefix={
            "/healthz": PROBE_DEADLINE_SECONDS,
            "/readyz": PROBE_DEADLINE_SECONDS,
            # An upload of up to PLEXUS_MEDIA_MAX_BYTES over a slow link takes minutes.
            "/api/v1/media": UPLOAD_DEADLINE_SECONDS,
            "/api/v1/media/": settings.request_deadline_seconds,
            # Public upload links take the same raw-body uploads.
            "/api/v1/public/uploads/": UPLOAD_DEADLINE_SECONDS,
        },
    )
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        # Uploads (exactly the collection path) may be large; everything under it is JSON.
        per_prefix={
            f"{API_PREFIX}/media": settings.media_max_bytes,
            f"{API_PREFIX}/media/": settings.max_body_bytes,
            f"{API_PREFIX}/public/uploads/": settings.media_max_bytes,
        },
    )
    app.add_middleware(CORSMiddleware, origins=settings.cors_origins)
    app.add_middleware(RateLimitHeadersMiddleware)
    # Right inside RequestContext: it sees the client address resolved from trusted proxies.
    app.add_middleware(IpGuardMiddleware, guard=rt.ip_guard)
    app.add_middleware(RequestContextMiddleware, settings=settings)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
