"""ASGI middleware: request context and access log, security headers, CORS, body caps, deadlines.

Each is a plain ASGI wrapper (no BaseHTTPMiddleware), so none buffers a body and all of
them see every response, including the ones other middleware produce. Order, outermost
first: SecurityHeaders, RequestContext, CORS, BodyLimit, Deadline, then the router.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING, Any, Final

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders

from plexus.errors import (
    DeadlineExceeded,
    InternalError,
    PayloadTooLarge,
    PermissionDenied,
    PlexusError,
    problem_bytes,
)
from plexus.kit.context import accept_request_id, bind_request, unbind_request
from plexus.kit.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from plexus.config import Settings

DEADLINE_EXPIRED: Final = "plexus.deadline_expired"
ONE_YEAR: Final = 31_536_000

access_log = get_logger("plexus.access")
error_log = get_logger("plexus.error")

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PERMISSIONS_POLICY: Final = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), interest-cohort=(), browsing-topics=()"
)


async def send_problem(send: Send, error: PlexusError) -> None:
    body, headers = problem_bytes(error)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _longest_prefix(path: str, table: dict[str, Any], default: Any) -> Any:
    best, value = -1, default
    for prefix, candidate in table.items():
        if path.startswith(prefix) and len(prefix) > best:
            best, value = len(prefix), candidate
    return value


class SecurityHeadersMiddleware:
    """Sets the transport and browser-hardening headers on every response (R13, R14)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        authenticated = "authorization" in request_headers or "cookie" in request_headers
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # The scheme is read here, after RequestContext resolved trusted proxies.
                if scope.get("scheme") == "https":
                    headers["Strict-Transport-Security"] = f"max-age={ONE_YEAR}; includeSubDomains"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers["Permissions-Policy"] = PERMISSIONS_POLICY
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
                headers.setdefault("Content-Security-Policy", API_CSP)
                status = int(message["status"])
                is_static = path.startswith("/static/")
                if authenticated or status >= 400 or not is_static:  # noqa: PLR2004
                    headers["Cache-Control"] = "no-store"
                    headers.setdefault("Pragma", "no-cache")
                if "server" in headers:
                    del headers["server"]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContextMiddleware:
    """Request id, real client address, the access log line, and the last-resort 500.

    The client address comes from ``X-Forwarded-For`` only when the direct peer is a
    trusted proxy; the right-most address that is not itself a trusted proxy is the client.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies]

    def _is_trusted(self, address: str | None) -> bool:
        if not address or not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def _resolve_client(self, scope: Scope) -> None:
        client = scope.get("client")
        peer = client[0] if client else None
        if not self._is_trusted(peer):
            return
        headers = Headers(scope=scope)
        forwarded = [p.strip() for p in headers.get("x-forwarded-for", "").split(",") if p.strip()]
        for address in reversed(forwarded):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                break
            if not self._is_trusted(address):
                scope["client"] = (address, 0)
                break
        proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._resolve_client(scope)
        request_id = accept_request_id(Headers(scope=scope).get("x-request-id"))
        client = scope.get("client")
        client_ip = client[0] if client else None
        tokens = bind_request(request_id, client_ip)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - the last-resort handler: log it, answer a generic 500
            error_log.exception("unhandled_exception", route=_route_template(scope))
            if state["status"] is None:
                await send_problem(send_with_id, InternalError())
        finally:
            route_state: MutableMapping[str, Any] = scope.get("state") or {}
            access_log.info(
                "request",
                method=scope["method"],
                route=_route_template(scope),
                status=state["status"],
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                client_ip=client_ip,
                principal=route_state.get("principal"),
            )
            unbind_request(tokens)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    # Static mounts and unmatched paths: never log the raw path (it may carry a token).
    path: str = scope.get("path", "")
    if path.startswith("/static/"):
        return "/static/{path}"
    return "<unmatched>"


class CORSMiddleware:
    """CORS from an explicit allow-list; any other origin gets no grant at all (R13).

    A refused preflight is a 403 problem; a refused simple request goes through without
    CORS headers, so the browser withholds the response from the foreign page.
    """

    ALLOWED_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
    ALLOWED_HEADERS: Final = (
        "authorization",
        "content-type",
        "idempotency-key",
        "x-csrf-token",
        "x-request-id",
    )
    EXPOSED_HEADERS: Final = (
        "X-Request-ID, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
    )

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin in self.origins
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            await self._preflight(send, headers, origin, allowed=allowed)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.add_vary_header("Origin")
                if allowed:
                    out["Access-Control-Allow-Origin"] = origin
                    out["Access-Control-Allow-Credentials"] = "true"
                    out["Access-Control-Expose-Headers"] = self.EXPOSED_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, headers: Headers, origin: str, *, allowed: bool) -> None:
        method = headers.get("access-control-request-method", "").upper()
        wanted = [
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        ]
        if (
            not allowed
            or method not in self.ALLOWED_METHODS
            or any(h not in self.ALLOWED_HEADERS for h in wanted)
        ):
            await send_problem(send, PermissionDenied("This cross-origin request is not allowed."))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-allow-methods", ", ".join(self.ALLOWED_METHODS).encode()),
                    (b"access-control-allow-headers", ", ".join(self.ALLOWED_HEADERS).encode()),
                    (b"access-control-max-age", b"600"),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


class _BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed body passes the cap.

    It is an HTTPException because FastAPI's body reader re-raises those but turns any
    other error into a generic 400.
    """

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyLimitMiddleware:
    """Refuses bodies over the route's cap with 413 before the handler sees them (R18).

    A declared Content-Length over the cap is refused without reading a byte; a chunked
    body is counted as it streams and refused the moment it passes the cap.
    """

    def __init__(self, app: ASGIApp, default: int, per_prefix: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.per_prefix = per_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = _longest_prefix(scope["path"], self.per_prefix, self.default)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_problem(send, PayloadTooLarge("Invalid Content-Length."))
                return
            if int(declared) > limit:
                await send_problem(send, PayloadTooLarge(f"The limit is {limit} bytes."))
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await send_problem(send, PayloadTooLarge(f"The limit is {limit} bytes."))


def _consume_outcome(task: asyncio.Future[None]) -> None:
    """Collect the outcome of an abandoned handler so its error is logged, not lost."""
    if not task.cancelled() and task.exception() is not None:
        error_log.warning("handler_failed_after_deadline", error=type(task.exception()).__name__)


class DeadlineMiddleware:
    """Answers 504 when a request overruns its route's deadline (R18).

    The handler is cancelled; a handler running in a worker thread cannot be interrupted,
    so the request is also marked expired and the commit point rolls its work back
    instead of committing it after the client was told it failed.
    """

    def __init__(self, app: ASGIApp, default: float, per_prefix: dict[str, float]) -> None:
        self.app = app
        self.default = default
        self.per_prefix = per_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float = _longest_prefix(scope["path"], self.per_prefix, self.default)
        started = False
        expired = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if expired:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        done, _ = await asyncio.wait({work}, timeout=deadline)
        if work in done:
            work.result()
            return
        if started:
            # The response is already streaming; let it finish rather than cut it.
            await work
            return
        expired = True
        scope[DEADLINE_EXPIRED] = True
        work.add_done_callback(_consume_outcome)
        work.cancel()
        await send_problem(send, DeadlineExceeded(f"The deadline is {deadline:g} seconds."))
        error_log.warning("deadline_exceeded", route=_route_template(scope), deadline=deadline)
