"""Rate limits (R15) with the ``limits`` library: one budget per class and identifier.

Storage is in memory for a single process, or Redis when ``PLEXUS_REDIS_URL`` is set so
every process of the deployment draws from one budget (keys are namespaced by
``PLEXUS_QUEUE_NAME``). Each check records the tightest budget seen on the request, which
``RateLimitHeadersMiddleware`` sends as ``RateLimit-*`` headers on the response.

The same budgets count failures for the IP guard: the ``block_*`` classes are thresholds
(``PLEXUS_RATE_LIMITS`` overrides them like any other class), spent by ``count`` rather
than ``check``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Final

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import MutableHeaders

from plexus.config import ConfigError
from plexus.errors import RateLimited
from plexus.kit.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from limits import RateLimitItem
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from plexus.config import Settings

log = get_logger("plexus.ratelimit")

#: Default budgets per class. ``PLEXUS_RATE_LIMITS`` overrides any of them.
DEFAULT_LIMITS: Final[dict[str, str]] = {
    # Per principal, on every authenticated route.
    "default": "600 per minute",
    # Per client address, on every request, matched route or not (the IP guard).
    "ip": "1200 per minute",
    # Per client address, on public routes without a class of their own.
    "public": "120 per minute",
    # Liveness and readiness probes, per client address.
    "probe": "600 per minute",
    # Logins: per address and per account.
    "login": "20 per 5 minutes",
    "login_account": "10 per 5 minutes",
    "mfa": "10 per 5 minutes",
    "refresh": "60 per minute",
    "password": "5 per 15 minutes",
    "invitation": "30 per hour",
    "upload": "60 per hour",
    # Public upload links: per link, and per client address across links.
    "upload_link": "30 per hour",
    "upload_link_ip": "20 per hour",
    # IP guard thresholds: failures from one address (IPv6: one /64) before it is blocked.
    # Failed logins, whatever the account (credential stuffing).
    "block_login": "30 per hour",
    # 401, 403 and 404 responses (scanning, probing for objects or credentials).
    "block_errors": "100 per minute",
    # Refused CSRF tokens or foreign origins.
    "block_csrf": "20 per 10 minutes",
    # Bad signatures (signed webhooks, signed links).
    "block_signature": "20 per 10 minutes",
    # Spent, forged or revoked tokens presented.
    "block_token": "20 per 10 minutes",
    # An exhausted budget is audited at most this often per address (not per refusal).
    "audit_rate_limited": "1 per minute",
}

STATE_KEY: Final = "ratelimit"
#: The budgets a request has already spent a unit of, so that two layers checking the
#: same budget (the IP guard and a route's policy) cost the request one unit, not two.
SPENT_KEY: Final = "ratelimit_spent"
#: Redis must answer fast or be treated as down (the limiter then fails open).
REDIS_TIMEOUT_SECONDS: Final = 1.0


def parse_overrides(spec: str) -> dict[str, str]:
    """``"login=10/minute;default=600/minute"`` → ``{"login": "10/minute", ...}``."""
    overrides: dict[str, str] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            msg = f"rate limit entries are class=limit, got {part.strip()!r}"
            raise ValueError(msg)
        overrides[name.strip()] = value.strip()
    return overrides


def limit_table(spec: str) -> dict[str, RateLimitItem]:
    """The parsed budget of every class; ConfigError naming the variable on a bad entry."""
    try:
        table = {**DEFAULT_LIMITS, **parse_overrides(spec)}
        return {name: parse(value) for name, value in table.items()}
    except ValueError as exc:
        raise ConfigError([f"PLEXUS_RATE_LIMITS is invalid: {exc}"]) from None


class RateLimiter:
    """Named budgets over one storage: memory for one process, Redis for several."""

    def __init__(self, settings: Settings) -> None:
        self.items = limit_table(settings.rate_limits)
        if settings.redis_url is not None:
            self.storage = storage_from_string(
                settings.redis_url.get_secret_value(),
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        else:
            self.storage = storage_from_string("memory://")
        self.limiter = MovingWindowRateLimiter(self.storage)
        # Deployments sharing one Redis keep their budgets apart.
        self.namespace = settings.queue_name

    @property
    def remote(self) -> bool:
        """Whether a check does network I/O (async callers then run it in a thread)."""
        return not isinstance(self.storage, MemoryStorage)

    def item(self, rate_class: str) -> RateLimitItem:
        return self.items.get(rate_class) or self.items["default"]

    def check(self, scope: MutableMapping[str, Any], rate_class: str, identifier: str) -> None:
        """Spend one unit of ``rate_class`` for ``identifier``; raise RateLimited when spent.

        ``scope`` is the request's ASGI scope (or ``{}`` outside a request): the tightest
        budget seen is kept there for the ``RateLimit-*`` headers, and a budget is spent
        at most once per request. A storage outage lets the request through (and is
        logged): the service staying up outweighs a budget that cannot be counted.
        """
        keys = (self.namespace, rate_class, identifier)
        state = scope.setdefault("state", {})
        spent: set[tuple[str, ...]] = state.setdefault(SPENT_KEY, set())
        if keys in spent:
            return
        spent.add(keys)
        item = self.item(rate_class)
        try:
            allowed = self.limiter.hit(item, *keys)
            stats = self.limiter.get_window_stats(item, *keys)
        except Exception as exc:  # noqa: BLE001 - any storage failure fails open, logged
            # One line per failure, no traceback: an outage must not flood the log.
            log.error("ratelimit_storage_failed", error=type(exc).__name__)  # noqa: TRY400
            return
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        current = state.get(STATE_KEY)
        if current is None or stats.remaining < current[1]:
            state[STATE_KEY] = (item.amount, stats.remaining, reset)
        if not allowed:
            log.warning("rate_limited", rate_class=rate_class, retry_after=reset)
            raise RateLimited(
                retry_after=reset,
                detail=f"Too many requests of this kind; retry in {reset} seconds.",
                headers=rate_headers(item.amount, 0, reset),
            )

    def count(self, rate_class: str, identifier: str) -> bool:
        """Spend one unit without raising; False once the budget is exhausted.

        For thresholds (the IP guard's ``block_*`` classes). A storage outage counts as
        within budget.
        """
        keys = (self.namespace, rate_class, identifier)
        try:
            return self.limiter.hit(self.item(rate_class), *keys)
        except Exception as exc:  # noqa: BLE001 - any storage failure fails open, logged
            # One line per failure, no traceback: an outage must not flood the log.
            log.error("ratelimit_storage_failed", error=type(exc).__name__)  # noqa: TRY400
            return True

    def reset(self, rate_class: str, identifier: str) -> None:
        """Forget what ``identifier`` spent of ``rate_class`` (a threshold that fired)."""
        try:
            self.limiter.clear(self.item(rate_class), self.namespace, rate_class, identifier)
        except Exception as exc:  # noqa: BLE001 - any storage failure is logged, not raised
            # One line per failure, no traceback: an outage must not flood the log.
            log.error("ratelimit_storage_failed", error=type(exc).__name__)  # noqa: TRY400


def rate_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(reset),
    }


class RateLimitHeadersMiddleware:
    """Puts ``RateLimit-Limit/Remaining/Reset`` on every response whose request was checked.

    The values are the tightest budget the request drew on (``scope["state"]["ratelimit"]``,
    written by ``RateLimiter.check``); headers a response already carries (a 429's own)
    are kept.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen = (scope.get("state") or {}).get(STATE_KEY)
                if seen is not None:
                    headers = MutableHeaders(scope=message)
                    for name, value in rate_headers(*seen).items():
                        headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
