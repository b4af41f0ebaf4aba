"""Mounts every domain's JSON router under ``/api/v1``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from plexus.authz.policy import Public

API_PREFIX = "/api/v1"


class ApiIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api: Literal["plexus"]
    version: Literal["v1"]


def build_api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)

    @router.get("/", response_model=ApiIndex, tags=["meta"], dependencies=[Depends(Public())])
    async def api_index() -> ApiIndex:
        """What this API is (no software version: that would help an attacker only)."""
        return ApiIndex(api="plexus", version="v1")

    from plexus.auth.endpoints import router as auth_router

    router.include_router(auth_router)

    from plexus.auth.mfa_endpoints import router as mfa_router

    router.include_router(mfa_router)

    from plexus.auth.webauthn_endpoints import router as webauthn_router

    router.include_router(webauthn_router)

    from plexus.api_keys.endpoints import router as api_keys_router

    router.include_router(api_keys_router)

    from plexus.workspaces.endpoints import router as workspaces_router

    router.include_router(workspaces_router)

    from plexus.security.endpoints import router as security_router

    router.include_router(security_router)

    from plexus.connections.endpoints import providers_router
    from plexus.connections.endpoints import router as connections_router

    router.include_router(connections_router)
    router.include_router(providers_router)

    from plexus.notifications.endpoints import router as notifications_router

    router.include_router(notifications_router)

    from plexus.media.endpoints import public_router as public_media_router
    from plexus.media.endpoints import router as media_router

    router.include_router(media_router)
    router.include_router(public_media_router)

    from plexus.content.endpoints import router as content_router
    from plexus.publishing.endpoints import content_router as publish_router
    from plexus.publishing.endpoints import router as publications_router

    router.include_router(content_router)
    router.include_router(publish_router)
    router.include_router(publications_router)

    from plexus.upload_links.endpoints import public_router as public_uploads_router
    from plexus.upload_links.endpoints import router as upload_links_router

    router.include_router(upload_links_router)
    router.include_router(public_uploads_router)

    from plexus.webhooks_out.endpoints import router as webhooks_router

    router.include_router(webhooks_router)
    return router
