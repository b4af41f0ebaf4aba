"""Keeping every worker inside a platform's limits.

Checked in the claim's transaction, after ``serialise_claims`` took the connection's row,
so two workers claiming on one connection count one after the other:

- the connection's ``rate_limited_until`` (set when the platform answered 429);
- the daily cap (posts per rolling 24 hours), always counted in the database from what
  was really sent, so it survives restarts and holds across machines;
- request rate limits, per connection or for the whole app (``RateLimit.scope``): in
  Redis (a moving window shared by every machine) when Plexus has one, otherwise counted
  from the claims in the database.

Each check answers the moment the publication may be tried again, or None.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from plexus.kit.logging import get_logger
from plexus.publishing import repository

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.config import Settings
    from plexus.models.connections import Connection
    from plexus.providers.base import Capabilities, RateLimit

DAY: Final = timedelta(hours=24)
REDIS_TIMEOUT_SECONDS: Final = 1.0

log = get_logger("plexus.publishing")


class RedisWindows:
    """Moving windows in Redis, one per (provider, connection or app)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.storage = storage_from_string(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.namespace = namespace

    def hit(self, limit: RateLimit, key: str, now: datetime) -> datetime | None:
        """Spend one request of ``limit`` for ``key``; when spent, the moment it frees."""
        item = RateLimitItemPerSecond(limit.requests, limit.per_seconds)
        keys = (self.namespace, "publish", key)
        if self.limiter.hit(item, *keys):
            return None
        reset = self.limiter.get_window_stats(item, *keys).reset_time
        return max(now + timedelta(seconds=1), datetime.fromtimestamp(reset, tz=now.tzinfo))


_windows: dict[tuple[str, str], RedisWindows] = {}


def _redis_windows(settings: Settings) -> RedisWindows | None:
    if settings.redis_url is None:
        return None
    url = settings.redis_url.get_secret_value()
    key = (url, settings.queue_name)
    if key not in _windows:
        _windows[key] = RedisWindows(url, settings.queue_name)
    return _windows[key]


def _counted_in_database(
    session: Session, limit: RateLimit, connection: Connection, now: datetime
) -> datetime | None:
    since = now - timedelta(seconds=limit.per_seconds)
    if limit.scope == "app":
        count, earliest = repository.sent_since(session, since, provider=connection.provider)
    else:
        count, earliest = repository.sent_since(session, since, connection_id=connection.id)
    if count < limit.requests:
        return None
    return (earliest or now) + timedelta(seconds=limit.per_seconds)


def wait_until(
    session: Session,
    settings: Settings,
    connection: Connection,
    capabilities: Capabilities,
    now: datetime,
) -> tuple[datetime | None, str | None]:
    """When the next publish on ``connection`` may go (None: now), and why it waits."""
    if connection.rate_limited_until is not None and connection.rate_limited_until > now:
        return connection.rate_limited_until, "the platform asked Plexus to slow down"
    cap = capabilities.daily_post_cap
    if cap is not None:
        count, earliest = repository.sent_since(session, now - DAY, connection_id=connection.id)
        if count >= cap:
            window = (earliest or now) + DAY
            return (
                window,
                f"the daily cap of {cap} posts is reached; next window {window:%Y-%m-%d %H:%M} UTC",
            )
    windows = _redis_windows(settings)
    for limit in capabilities.rate_limits:
        key = (
            connection.provider
            if limit.scope == "app"
            else f"{connection.provider}:{connection.id}"
        )
        until: datetime | None = None
        if windows is not None:
            try:
                until = windows.hit(limit, key, now)
            except Exception as exc:  # noqa: BLE001 - Redis down: count in the database instead
                log.warning("publish_throttle_redis_failed", error=type(exc).__name__)
                until = _counted_in_database(session, limit, connection, now)
        else:
            until = _counted_in_database(session, limit, connection, now)
        if until is not None:
            return until, f"{limit.requests} requests per {limit.per_seconds} s"
    return None, None
