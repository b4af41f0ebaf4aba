"""Typed audit event names, ``"area:subject:action"``. Later domains add theirs here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

EVENT_NAME_SHAPE: Final = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")


class AuditEventType(StrEnum):
    SYSTEM_SERVICE_STARTED = "system:service:started"
    SYSTEM_SCHEMA_MIGRATED = "system:schema:migrated"
    AUDIT_CHAIN_VERIFIED = "audit:chain:verified"
    AUDIT_CHAIN_BROKEN = "audit:chain:broken"


class AuditResult(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a user, an API key, the system itself, or an anonymous client."""

    type: str
    id: str | None = None

    @classmethod
    def system(cls, component: str = "plexus") -> Actor:
        return cls("system", component)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls("anonymous", None)


@dataclass(frozen=True, slots=True)
class Target:
    """What was acted on."""

    type: str
    id: str | None = None
