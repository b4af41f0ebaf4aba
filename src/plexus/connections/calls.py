"""Calling a platform on a connection: fresh tokens, one refresh in flight, and what a
failure means for the connection.

No database transaction is ever held open across a call to a platform (a slow platform
would otherwise hold SQLite's write lock, or PostgreSQL row locks, for its whole timeout).
So these functions run their own short units of work: read the connection, refresh its
tokens if they are due (committed at once, before anything else happens, so a rotated
refresh token is never lost), call the platform, then record the outcome. Endpoints end
their own transaction before calling in here; tasks call in directly.

The single-flight refresh: under the refresh locks (see ``locks``) the row is re-read; if
another caller refreshed meanwhile (the credentials' version moved, or they are no longer
due) its tokens are reused and the platform is not asked again. The new tokens are stored
only if the row still holds the grant that was refreshed (a reconnect meanwhile wins).
"""

from __future__ import annotations

import fcntl
import json
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final, TypeVar

from sqlalchemy import text

from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.connections import repository
from plexus.connections.factory import build_provider
from plexus.connections.locks import refresh_lock
from plexus.db import unit_of_work
from plexus.errors import (
    ConnectionNeedsReauth,
    NotFound,
    PlatformRejected,
    PlatformUnavailable,
    PlexusError,
    ProviderNotAvailable,
)
from plexus.kit.logging import get_logger
from plexus.models.base import utcnow
from plexus.notifications.service import notify_workspace_admins
from plexus.providers.base import (
    Account,
    Credentials,
    Link,
    OAuthClient,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    ProviderUnavailable,
)
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.service import raise_security_event
from plexus.vault_columns import CONNECTION_CREDENTIALS, OAUTH_CLIENT_SECRET

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.orm import Session

    from plexus.models.connections import Connection
    from plexus.runtime import Runtime

T = TypeVar("T")

ACTIVE: Final = "active"
NEEDS_REAUTH: Final = "needs_reauth"
NOTIFY_KIND: Final = "connection_needs_reauth"
#: Tokens living shorter than this are refreshed when used, not by the background job.
BACKGROUND_MIN_LIFETIME: Final = timedelta(minutes=30)

log = get_logger("plexus.connections")


#: The longest account link stored (the column's size).
MAX_ACCOUNT_URL: Final = 1000


def account_url(account: Account) -> str | None:
    """The account's link, or None when the platform sent one too long to be a real link
    (never cut: a cut URL would point somewhere else).
    """
    if account.url is None or len(account.url) > MAX_ACCOUNT_URL:
        return None
    return account.url


def credentials_context(connection_id: int) -> str:
    return CONNECTION_CREDENTIALS.context(connection_id)


def client_secret_context(registration_id: int) -> str:
    return OAUTH_CLIENT_SECRET.context(registration_id)


def open_credentials(rt: Runtime, connection: Connection) -> Credentials:
    raw = rt.secretbox.open(connection.credentials_sealed, credentials_context(connection.id))
    return Credentials.from_json(raw)


def store_credentials(rt: Runtime, connection: Connection, credentials: Credentials) -> None:
    """Seal ``credentials`` into the row (its id must exist) and bump its version."""
    connection.credentials_sealed = rt.secretbox.seal(
        credentials.to_json(), credentials_context(connection.id)
    )
    connection.expires_at = credentials.expires_at
    provider = build_provider(rt.settings, connection.provider)
    link = Link(credentials, Account(connection.external_id, connection.display_name))
    connection.can_refresh = provider.can_refresh(link)
    connection.refresh_due_at = None
    lifetime = credentials.lifetime
    if (
        connection.can_refresh
        and credentials.expires_at is not None
        and (lifetime is None or lifetime >= BACKGROUND_MIN_LIFETIME)
    ):
        connection.refresh_due_at = credentials.expires_at - provider.refresh_lead(link)
    connection.credentials_version = (connection.credentials_version or 0) + 1


def registered_client(session: Session, rt: Runtime, registration_id: int) -> OAuthClient | None:
    registration = repository.oauth_client_by_id(session, registration_id)
    if registration is None:
        return None
    secret = None
    if registration.client_secret_sealed is not None:
        secret = rt.secretbox.open(
            registration.client_secret_sealed, client_secret_context(registration.id)
        ).decode()
    return OAuthClient(registration.client_id, secret)


def link_of(session: Session, rt: Runtime, connection: Connection) -> Link:
    """The decrypted view a provider gets of ``connection``."""
    client = None
    if connection.oauth_client_id is not None:
        client = registered_client(session, rt, connection.oauth_client_id)
    return Link(
        credentials=open_credentials(rt, connection),
        account=Account(
            external_id=connection.external_id,
            display_name=connection.display_name,
            url=connection.account_url,
            settings=json.loads(connection.account_settings or "{}"),
        ),
        params=json.loads(connection.params or "{}"),
        client=client,
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A connection as read in one short transaction."""

    id: int
    workspace_id: int
    provider: str
    status: str
    version: int
    link: Link


def _snapshot(session: Session, rt: Runtime, connection: Connection) -> Snapshot:
    return Snapshot(
        id=connection.id,
        workspace_id=connection.workspace_id,
        provider=connection.provider,
        status=connection.status,
        version=connection.credentials_version,
        link=link_of(session, rt, connection),
    )


def load(rt: Runtime, connection_id: int) -> Snapshot:
    with unit_of_work(rt.sessions) as session:
        connection = repository.connection_by_id(session, connection_id)
        if connection is None:
            raise NotFound("There is no such connection.")
        return _snapshot(session, rt, connection)


# --------------------------------------------------------------------------- outcomes


def translate(error: ProviderError, provider: str) -> PlexusError:
    """The problem a client sees for a provider error (never with a secret in it)."""
    if isinstance(error, ProviderRetryable):
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
        detail = f"{provider} is not answering normally; try again later."
        if error.rate_limited:
            detail = f"{provider} is limiting requests; try again later."
        return PlatformUnavailable(detail, headers=headers, keep_changes=True)
    if isinstance(error, ProviderNeedsReauth | ProviderTokenExpired):
        return ConnectionNeedsReauth(
            f"{provider} no longer accepts this connection's credentials: connect it again.",
            keep_changes=True,
        )
    if isinstance(error, ProviderRejected):
        return PlatformRejected(f"{provider} refused: {error.reason}", keep_changes=True)
    if isinstance(error, ProviderUnavailable):
        return ProviderNotAvailable(error.message, keep_changes=True)
    return PlatformUnavailable(f"{provider} failed.", keep_changes=True)


def mark_needs_reauth(rt: Runtime, connection_id: int, reason: str) -> None:
    """Record that only a person can fix this connection: once (no loop, no flood)."""
    with unit_of_work(rt.sessions) as session:
        connection = repository.connection_by_id(session, connection_id, lock=True)
        if connection is None or connection.status == NEEDS_REAUTH:
            return
        connection.status = NEEDS_REAUTH
        connection.last_error = reason[:300]
        rt.audit.record(
            session,
            AuditEventType.CONNECTION_CONNECTION_NEEDS_REAUTH,
            Actor.system("connections"),
            target=Target("connection", str(connection.id)),
            result=AuditResult.FAILURE,
            context={"provider": connection.provider, "reason": reason[:300]},
            workspace_id=connection.workspace_id,
        )
        raise_security_event(
            session,
            SecurityEventKind.CONNECTION_REAUTH_REQUIRED,
            Severity.LOW,
            workspace_id=connection.workspace_id,
            details={"connection_id": connection.id, "provider": connection.provider},
        )
        notify_workspace_admins(
            session,
            connection.workspace_id,
            kind=NOTIFY_KIND,
            subject=f"connection:{connection.id}",
            title=f"Reconnect {connection.name}",
            body=(
                f"{connection.provider} no longer accepts the credentials of the connection "
                f"“{connection.name}” ({connection.display_name}). Nothing will be sent "
                "through it until someone connects it again."
            ),
        )


def _note_rate_limit(rt: Runtime, connection_id: int, error: ProviderRetryable) -> None:
    with unit_of_work(rt.sessions) as session:
        connection = repository.connection_by_id(session, connection_id)
        if connection is None:
            return
        delay = error.retry_after if error.retry_after is not None else 60.0
        connection.rate_limited_until = utcnow() + timedelta(seconds=delay)
        connection.last_error = error.message[:300]


def note_success(rt: Runtime, connection_id: int, account: Account | None = None) -> None:
    with unit_of_work(rt.sessions) as session:
        connection = repository.connection_by_id(session, connection_id)
        if connection is None:
            return
        connection.last_checked_at = utcnow()
        connection.last_error = None
        connection.rate_limited_until = None
        if account is not None:
            connection.display_name = account.display_name[:300]
            connection.account_url = account_url(account)
            connection.account_settings = json.dumps(dict(account.settings), sort_keys=True)


# --------------------------------------------------------------------------- refresh


@contextmanager
def _host_lock(rt: Runtime, connection_id: int) -> Iterator[None]:
    """A file lock: every process of one host (SQLite is one host's database)."""
    folder = rt.settings.data_dir / "locks"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"connection-{connection_id}.lock"
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: The first key of Plexus's PostgreSQL advisory locks on connection refreshes.
_ADVISORY_CLASS: Final = 0x504C5852  # "PLXR"


@contextmanager
def _database_lock(rt: Runtime, connection_id: int) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock: every process on the database. It is held
    by a connection that is *not* in a transaction while the platform answers, so no row
    lock or open transaction waits on the platform.
    """
    with rt.engine.connect() as connection:
        connection.execute(
            text("SELECT pg_advisory_lock(:c, :k)"), {"c": _ADVISORY_CLASS, "k": connection_id}
        )
        connection.commit()
        try:
            yield
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(:c, :k)"),
                {"c": _ADVISORY_CLASS, "k": connection_id},
            )
            connection.commit()


def _is_postgres(rt: Runtime) -> bool:
    return rt.engine.dialect.name == "postgresql"


def _refresh_due(
    provider: Provider,
    snapshot: Snapshot,
    seen_version: int,
    *,
    force: bool,
    ahead: timedelta | None,
) -> bool:
    if snapshot.version != seen_version:
        return False  # someone refreshed after we read: reuse theirs
    if force:
        return True
    return provider.needs_refresh(snapshot.link, ahead)


def _save_refreshed(
    session: Session, rt: Runtime, connection: Connection, credentials: Credentials
) -> None:
    store_credentials(rt, connection, credentials)
    connection.last_refreshed_at = utcnow()
    connection.last_error = None
    rt.audit.record(
        session,
        AuditEventType.CONNECTION_TOKEN_REFRESHED,
        Actor.system("connections"),
        target=Target("connection", str(connection.id)),
        context={"provider": connection.provider, "version": connection.credentials_version},
        workspace_id=connection.workspace_id,
    )


def refresh(
    rt: Runtime,
    connection_id: int,
    seen_version: int,
    *,
    force: bool = False,
    ahead: timedelta | None = None,
) -> Snapshot:
    """Refresh the connection's tokens unless someone else already did (or, unless
    ``force``, they are not due within ``ahead``, by default the provider's lead time).
    The new tokens are committed before this returns. Raises ProviderNeedsReauth (after
    marking the connection) when the platform refuses the refresh token.
    """
    try:
        return _refresh_locked(rt, connection_id, seen_version, force=force, ahead=ahead)
    except ProviderNeedsReauth as error:
        mark_needs_reauth(rt, connection_id, error.message)
        raise


def _refresh_locked(
    rt: Runtime, connection_id: int, seen_version: int, *, force: bool, ahead: timedelta | None
) -> Snapshot:
    with ExitStack() as stack:
        # Threads (and Redis: machines), then every process on the database or host. Short
        # transactions read and write; none is open while the platform answers.
        stack.enter_context(refresh_lock(rt.settings, connection_id))
        if _is_postgres(rt):
            stack.enter_context(_database_lock(rt, connection_id))
        else:
            stack.enter_context(_host_lock(rt, connection_id))
        current = load(rt, connection_id)
        if current.status != ACTIVE:
            raise ProviderNeedsReauth("the connection must be connected again")
        provider = build_provider(rt.settings, current.provider)
        if not _refresh_due(provider, current, seen_version, force=force, ahead=ahead):
            return current
        fresh = provider.refresh(current.link)
        with unit_of_work(rt.sessions) as session:
            connection = repository.connection_by_id(session, connection_id, lock=True)
            if connection is None or not _same_grant(connection, current):
                # Disconnected or reconnected while the platform answered: these tokens
                # belong to no stored grant any more. Drop them; the caller may retry.
                log.warning("refreshed_tokens_discarded", connection_id=connection_id)
                msg = "the connection changed while its token was refreshed; try again"
                raise ProviderRetryable(msg)
            _save_refreshed(session, rt, connection, fresh)
            session.flush()
            return _snapshot(session, rt, connection)
    msg = "unreachable"  # pragma: no cover - the with block always returns or raises
    raise AssertionError(msg)


def _same_grant(connection: Connection, before: Snapshot) -> bool:
    """The row still holds the grant that was refreshed: same workspace, provider, account
    and credentials version (a reconnect or a reused id would differ).
    """
    return (
        connection.workspace_id == before.workspace_id
        and connection.provider == before.provider
        and connection.external_id == before.link.account.external_id
        and connection.credentials_version == before.version
        and connection.status == ACTIVE
    )


# --------------------------------------------------------------------------- calls


def with_connection(rt: Runtime, connection_id: int, action: Callable[[Provider, Link], T]) -> T:
    """Run ``action(provider, link)`` on the connection with fresh credentials.

    An expired access token is refreshed once (single-flight) and the action retried once.
    Raises the provider's error after recording what it means (needs reauth, throttled).
    """
    snapshot = load(rt, connection_id)
    if snapshot.status != ACTIVE:
        raise ProviderNeedsReauth("the connection must be connected again")
    provider = build_provider(rt.settings, snapshot.provider)
    link = snapshot.link
    if provider.needs_refresh(link):
        snapshot = refresh(rt, connection_id, snapshot.version)
        link = snapshot.link
    try:
        try:
            return action(provider, link)
        except ProviderTokenExpired as expired:
            if not provider.can_refresh(link):
                raise ProviderNeedsReauth(expired.message) from None
            snapshot = refresh(rt, connection_id, snapshot.version, force=True)
            try:
                return action(provider, snapshot.link)
            except ProviderTokenExpired as again:
                raise ProviderNeedsReauth(again.message) from None
    except ProviderNeedsReauth as error:
        mark_needs_reauth(rt, connection_id, error.message)
        raise
    except ProviderRetryable as error:
        if error.rate_limited:
            _note_rate_limit(rt, connection_id, error)
        raise


def check(rt: Runtime, connection_id: int) -> Account:
    """Ask the platform whether the connection still works; record the answer."""
    account = with_connection(rt, connection_id, lambda p, link: p.check_connection(link))
    note_success(rt, connection_id, account)
    with unit_of_work(rt.sessions) as session:
        connection = repository.connection_by_id(session, connection_id)
        if connection is not None:
            rt.audit.record(
                session,
                AuditEventType.CONNECTION_CONNECTION_CHECKED,
                Actor.system("connections"),
                target=Target("connection", str(connection_id)),
                context={"provider": connection.provider},
                workspace_id=connection.workspace_id,
            )
    return account


def check_quietly(rt: Runtime, connection_id: int) -> str:
    """``check`` for background jobs: never raises a provider error; returns the outcome."""
    try:
        check(rt, connection_id)
    except ProviderError as error:
        with unit_of_work(rt.sessions) as session:
            connection = repository.connection_by_id(session, connection_id)
            if connection is not None:
                connection.last_checked_at = utcnow()
                connection.last_error = error.message[:300]
        log.info("connection_check_failed", connection_id=connection_id, error=type(error).__name__)
        return type(error).__name__
    return "ok"


#: What a disconnect did at the platform (recorded in the audit log).
REVOKED: Final = "revoked"
NOT_OFFERED: Final = "not_offered"
ALREADY_INVALID: Final = "already_invalid"


def revoke(rt: Runtime, connection_id: int) -> str:
    """Revoke the connection's credentials at the platform; returns ``revoked``,
    ``not_offered`` (the platform has no revocation for them) or ``already_invalid`` (it
    no longer honours them). An expired access token the platform needs for revocation is
    refreshed first, under the refresh lock, and the revocation tried once more. Raises
    ProviderRetryable when the platform cannot be reached and ProviderRejected when it
    refuses the revocation.
    """
    snapshot = load(rt, connection_id)
    provider = build_provider(rt.settings, snapshot.provider)
    if not provider.can_revoke(snapshot.link):
        return NOT_OFFERED
    try:
        try:
            provider.revoke(snapshot.link)
        except ProviderTokenExpired:
            if not provider.can_refresh(snapshot.link):
                return ALREADY_INVALID
            fresh = refresh(rt, connection_id, snapshot.version, force=True)
            provider.revoke(fresh.link)
    except (ProviderNeedsReauth, ProviderTokenExpired):
        log.info("revoke_credentials_already_dead", connection_id=connection_id)
        return ALREADY_INVALID
    return REVOKED
