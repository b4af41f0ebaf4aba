"""The IP guard in front of every request.

It refuses blocked addresses, spends the per-address budget, and watches for bursts of
401/403/404 responses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio.to_thread

from plexus.errors import AddressBlocked, RateLimited
from plexus.middleware import send_problem
from plexus.security.ipguard.networks import budget_key

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from plexus.security.ipguard.service import IpGuard

#: Responses whose bursts look like scanning or guessing.
ERROR_STATUSES: Final = frozenset({401, 403, 404})
RATE_LIMITED_STATUS: Final = 429
WS_POLICY_VIOLATION: Final = 1008


class IpGuardMiddleware:
    """Refuses blocked addresses (403), spends the per-address ``ip`` budget of every
    request (matched route or not), and watches responses for 401/403/404 bursts.

    Sits right inside ``RequestContextMiddleware``, so the address it sees is the one
    resolved from a trusted proxy's ``X-Forwarded-For`` (and only a trusted proxy's).
    """

    def __init__(self, app: ASGIApp, guard: IpGuard) -> None:
        self.app = app
        self.guard = guard
        self.limiter = guard.limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip: str | None = client[0] if client else None
        if self.guard.needs_refresh():
            await anyio.to_thread.run_sync(self.guard.refresh_if_stale)
        blocked = self.guard.blocking_rule(ip) is not None
        if scope["type"] == "websocket":
            if blocked:
                # Closing before accepting refuses the handshake (policy violation).
                await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            else:
                await self.app(scope, receive, send)
            return
        if blocked:
            await send_problem(
                send,
                AddressBlocked(
                    "Requests from this address are blocked. If this is a mistake, contact "
                    "the administrator of this service and quote the request id."
                ),
            )
            return
        if not await self._spend_budget(scope, send, ip):
            return
        status: int | None = None

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watching_send)
        await self._watch(status, ip)

    async def _watch(self, status: int | None, ip: str | None) -> None:
        """After the response: count error bursts; audit an exhausted budget."""
        if status in ERROR_STATUSES:
            await anyio.to_thread.run_sync(self.guard.note_error_response, ip)
        elif status == RATE_LIMITED_STATUS:
            await anyio.to_thread.run_sync(self.guard.note_rate_limited, ip)

    async def _spend_budget(self, scope: Scope, send: Send, ip: str | None) -> bool:
        """Spend the request's unit of the address's ``ip`` budget; answer 429 when spent."""
        try:
            if self.limiter.remote:
                await anyio.to_thread.run_sync(self.limiter.check, scope, "ip", budget_key(ip))
            else:
                self.limiter.check(scope, "ip", budget_key(ip))
        except RateLimited as exc:
            await send_problem(send, exc)
            await anyio.to_thread.run_sync(self.guard.note_rate_limited, ip)
            return False
        return True
