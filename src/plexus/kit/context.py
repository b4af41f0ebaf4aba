"""Per-request context that outlives no request: its id and the client's address."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from typing import Final

_REQUEST_ID: ContextVar[str | None] = ContextVar("plexus_request_id", default=None)
_CLIENT_IP: ContextVar[str | None] = ContextVar("plexus_client_ip", default=None)

#: An incoming X-Request-ID is kept only when it is this tame; otherwise a new one is made,
#: so a client cannot inject text into logs or responses through it.
_REQUEST_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")


def new_request_id() -> str:
    return secrets.token_hex(16)


def accept_request_id(candidate: str | None) -> str:
    if candidate and _REQUEST_ID_SHAPE.fullmatch(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


def current_client_ip() -> str | None:
    return _CLIENT_IP.get()


def bind_request(request_id: str, client_ip: str | None) -> tuple[object, object]:
    """Set the context for one request; returns tokens for ``unbind_request``."""
    return _REQUEST_ID.set(request_id), _CLIENT_IP.set(client_ip)


def unbind_request(tokens: tuple[object, object]) -> None:
    request_token, ip_token = tokens
    _REQUEST_ID.reset(request_token)  # type: ignore[arg-type]
    _CLIENT_IP.reset(ip_token)  # type: ignore[arg-type]
