"""Test-only routes mounted on a real app, to drive the error, deadline and logging paths."""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError

from plexus.audit.events import Actor, AuditEventType
from plexus.deps import RuntimeDep, SessionDep
from plexus.kit.logging import get_logger

log = get_logger("tests.routes")


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(max_length=50)
    count: int = 1


class SlowState:
    def __init__(self) -> None:
        self.finished = threading.Event()


def mount_test_routes(app: FastAPI, slow_seconds: float = 1.5) -> SlowState:
    router = APIRouter(prefix="/api/v1/_t")
    state = SlowState()

    @router.post("/echo")
    def echo(body: Echo) -> Echo:
        log.info("echo_received", payload=body.model_dump())
        return body

    @router.get("/search")
    def search(q: Annotated[str, Query(max_length=20)]) -> dict[str, str]:
        return {"q": q}

    @router.get("/boom")
    def boom(rt: RuntimeDep) -> None:
        key = rt.settings.secret("audit_key")
        # Not a query: an error message that looks like one, to prove it never leaks.
        msg = f"SELECT password FROM users WHERE key='{key}' in /srv/plexus/app.py"  # noqa: S608
        raise RuntimeError(msg)

    @router.get("/db-down")
    def db_down() -> None:
        raise OperationalError("SELECT * FROM secrets", {}, Exception("connection refused"))

    @router.post("/slow-write")
    def slow_write(session: SessionDep, rt: RuntimeDep) -> dict[str, str]:
        rt.audit.record(session, AuditEventType.SYSTEM_SERVICE_STARTED, Actor.system("slow"))
        time.sleep(slow_seconds)
        state.finished.set()
        return {"status": "done"}

    @router.post("/logs")
    def logs(body: dict[str, object]) -> dict[str, str]:
        log.info("client_payload", **{k: v for k, v in body.items() if isinstance(k, str)})
        log.info("free_text %s", str(body))
        return {"status": "logged"}

    app.include_router(router)
    return state
