"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from plexus.authz.policy import Public
from plexus.deps import RuntimeDep
from plexus.errors import ServiceUnavailable
from plexus.health.service import readiness

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ready"]
    checks: dict[str, Literal["ok"]]


@router.get("/healthz", response_model=Liveness, dependencies=[Depends(Public("probe"))])
async def healthz() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    dependencies=[Depends(Public("probe"))],
    responses={503: {"description": "A dependency is down; the body names which."}},
)
async def readyz(rt: RuntimeDep) -> Readiness:
    checks = await run_in_threadpool(readiness, rt)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        msg = f"Not ready: {', '.join(failed)} unavailable."
        raise ServiceUnavailable(msg, extra={"failed": failed})
    return Readiness(status="ready", checks={c.name: "ok" for c in checks})
