"""Raising security events: one row each, plus a warning in the log. Never commits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from plexus.kit.context import current_client_ip
from plexus.kit.logging import get_logger, redact_value
from plexus.models.identity import SecurityEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from plexus.security.events import SecurityEventKind, Severity

log = get_logger("plexus.security")


def raise_security_event(  # noqa: PLR0913 - an event has these parts
    session: Session,
    kind: SecurityEventKind,
    severity: Severity,
    *,
    workspace_id: int | None = None,
    user_id: int | None = None,
    ip: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> SecurityEvent:
    """Record a security event in the caller's transaction."""
    clean = redact_value(None, dict(details or {}))
    event = SecurityEvent(
        kind=str(kind),
        severity=str(severity),
        workspace_id=workspace_id,
        user_id=user_id,
        ip=ip if ip is not None else current_client_ip(),
        details=json.dumps(clean, sort_keys=True, separators=(",", ":")),
    )
    session.add(event)
    session.flush()
    log.warning(
        "security_event",
        kind=str(kind),
        severity=str(severity),
        workspace_id=workspace_id,
        user_id=user_id,
        ip=event.ip,
    )
    return event
