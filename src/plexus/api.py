"""Mounts every domain's JSON router under ``/api/v1``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

API_PREFIX = "/api/v1"


class ApiIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api: Literal["plexus"]
    version: Literal["v1"]


def build_api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)

    @router.get("/", response_model=ApiIndex, tags=["meta"])
    async def api_index() -> ApiIndex:
        """What this API is (no software version: that would help an attacker only)."""
        return ApiIndex(api="plexus", version="v1")

    return router
