"""Readiness checks of the things Plexus cannot work without."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from sqlalchemy import text

from plexus.kit.logging import get_logger
from plexus.worker import queue_ping

if TYPE_CHECKING:
    from plexus.runtime import Runtime

log = get_logger("plexus.health")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool


def check_database(rt: Runtime) -> Check:
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness_failed", check="database", error=type(exc).__name__)
        return Check("database", ok=False)
    return Check("database", ok=True)


def check_queue() -> Check:
    try:
        queue_ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness_failed", check="queue", error=type(exc).__name__)
        return Check("queue", ok=False)
    return Check("queue", ok=True)


def check_redis(rt: Runtime) -> Check | None:
    if rt.settings.redis_url is None:
        return None
    try:
        client = redis.Redis.from_url(
            rt.settings.redis_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=2
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness_failed", check="redis", error=type(exc).__name__)
        return Check("redis", ok=False)
    return Check("redis", ok=True)


def readiness(rt: Runtime) -> list[Check]:
    checks = [check_database(rt), check_queue()]
    redis_check = check_redis(rt)
    if redis_check is not None:
        checks.append(redis_check)
    return checks
