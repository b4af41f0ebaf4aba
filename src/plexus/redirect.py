"""The plain-HTTP listener beside a TLS one: UI paths get 308 to https, API paths an error.

An API client that sent a credential over plain HTTP must learn its mistake, not be
silently redirected (the credential has already crossed the network in the clear).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from plexus.errors import HTTPSRequired
from plexus.kit.context import new_request_id
from plexus.middleware import send_problem

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

_HOST: Final = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


class HTTPSRedirectApp:
    def __init__(self, tls_port: int, public_url: str | None = None) -> None:
        self.tls_port = tls_port
        self.public_origin = None
        if public_url:
            parts = urlsplit(public_url)
            self.public_origin = f"https://{parts.netloc}"

    def _origin(self, scope: Scope) -> str | None:
        if self.public_origin:
            return self.public_origin
        host_header = Headers(scope=scope).get("host", "")
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        if not _HOST.fullmatch(host):
            return None
        return f"https://{host}" if self.tls_port == 443 else f"https://{host}:{self.tls_port}"  # noqa: PLR2004

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        request_id = new_request_id()
        origin = self._origin(scope)
        if path == "/api" or path.startswith("/api/") or origin is None:
            await send_problem(
                _with_id(send, request_id),
                HTTPSRequired("This API is served over HTTPS only; use https://."),
            )
            return
        query = scope.get("query_string", b"").decode("latin-1")
        location = origin + (scope.get("raw_path") or path.encode()).decode("latin-1")
        if query:
            location += "?" + query
        await _with_id(send, request_id)(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _with_id(send: Send, request_id: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message["headers"],
                (b"x-request-id", request_id.encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"cache-control", b"no-store"),
            ]
        await send(message)

    return wrapped
