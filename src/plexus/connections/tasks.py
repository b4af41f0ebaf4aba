"""Background jobs of the connections domain: refresh tokens ahead of expiry, and check
connections so the dashboard's status is current without anyone asking.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from huey import crontab

from plexus.connections import calls, repository
from plexus.connections.factory import build_provider
from plexus.kit.logging import get_logger
from plexus.models.base import utcnow
from plexus.providers.base import ProviderError
from plexus.runtime import runtime
from plexus.worker import daily_at, enqueue, periodic, task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = get_logger("plexus.connections")


@task()
def refresh_connection(session: Session, connection_id: int) -> None:
    """Refresh one connection's tokens if they are still due (another worker, or a call
    that found them expired, may have done it already: then nothing is sent).
    """
    del session  # the refresh runs its own short transactions (see calls)
    rt = runtime()
    snapshot = calls.load(rt, connection_id)
    if snapshot.status != calls.ACTIVE:
        return
    # The job looks ahead by the margin, so a token is refreshed up to that much before
    # its provider's own lead time (never only when a call already needs it).
    provider = build_provider(rt.settings, snapshot.provider)
    horizon = timedelta(seconds=rt.settings.token_refresh_margin_seconds)
    ahead = provider.refresh_lead(snapshot.link) + horizon
    try:
        calls.refresh(rt, connection_id, snapshot.version, ahead=ahead)
    except ProviderError as error:
        # NeedsReauth has marked the connection; a temporary failure waits for the next
        # round (the token is refreshed well ahead of its expiry).
        log.info(
            "connection_refresh_failed", connection_id=connection_id, error=type(error).__name__
        )


@task()
def check_connection(session: Session, connection_id: int) -> None:
    """Check one connection at its platform and record the outcome."""
    del session
    calls.check_quietly(runtime(), connection_id)


@periodic(crontab(minute="*/5"))
def refresh_due_tokens(session: Session) -> None:
    """Every five minutes: queue a refresh for each token due within the margin."""
    margin = timedelta(seconds=runtime().settings.token_refresh_margin_seconds)
    for connection_id in repository.refresh_due(session, utcnow() + margin):
        enqueue(session, refresh_connection, connection_id)


@periodic(daily_at(4, 41))
def check_connections_daily(session: Session) -> None:
    """Every night: check every active connection (revoked access shows up before a post
    is due).
    """
    for connection_id in repository.active_ids(session):
        enqueue(session, check_connection, connection_id)


@periodic(daily_at(4, 53))
def purge_oauth_flows(session: Session) -> None:
    """Every night: delete authorization flows spent or expired more than a day ago (a
    spent flow keeps only its state's HMAC, for telling a replay from a forgery).
    """
    removed = repository.purge_flows(session, utcnow() - timedelta(days=1))
    log.info("oauth_flows_purged", removed=removed)
