"""One refresh in flight per connection, across threads, processes and machines.

``refresh_lock(settings, connection_id)`` holds an in-process lock (threads of this
process) and a Redis lock when ``PLEXUS_REDIS_URL`` is set (every process and machine
sharing that Redis). Inside it the refresh takes a PostgreSQL advisory lock (every process
on the database) or a file lock (SQLite: every process on the host), re-reads the row, and
commits the new tokens before the locks are let go: whoever waits re-reads the row only
once the new tokens are durable, and reuses them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from plexus.kit.logging import get_logger
from plexus.providers.base import ProviderRetryable

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

    from plexus.config import Settings

#: Longest a refresh may hold its lock before Redis frees it (a crashed holder).
REDIS_LOCK_SECONDS: Final = 120
#: Longest a waiter waits for another process's refresh.
WAIT_SECONDS: Final = 60.0

log = get_logger("plexus.connections")

_local_guard = threading.Lock()
_local_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
_redis_clients: dict[str, redis.Redis] = {}


class RefreshLockTimeout(ProviderRetryable):
    """Another refresh of this connection held its lock for too long: try again later."""

    def __init__(self) -> None:
        super().__init__("another refresh of this connection is taking too long", retry_after=30)


def _local_lock(connection_id: int) -> threading.Lock:
    with _local_guard:
        return _local_locks[connection_id]


def _redis(settings: Settings) -> redis.Redis | None:
    if settings.redis_url is None:
        return None
    import redis as redis_lib

    url = settings.redis_url.get_secret_value()
    with _local_guard:
        client = _redis_clients.get(url)
        if client is None:
            client = redis_lib.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _redis_clients[url] = client
        return client


@contextmanager
def refresh_lock(settings: Settings, connection_id: int) -> Iterator[None]:
    """Hold the in-process lock and (when configured) the Redis lock for one connection."""
    local = _local_lock(connection_id)
    if not local.acquire(timeout=WAIT_SECONDS):
        raise RefreshLockTimeout
    try:
        client = _redis(settings)
        if client is None:
            yield
            return
        lock = client.lock(
            f"{settings.queue_name}:connection-refresh:{connection_id}",
            timeout=REDIS_LOCK_SECONDS,
            blocking_timeout=WAIT_SECONDS,
        )
        if not lock.acquire():
            raise RefreshLockTimeout
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - an expired lock was freed by Redis itself
                log.warning("refresh_lock_release_failed", connection_id=connection_id)
    finally:
        local.release()
