"""Queries on connections, OAuth flows and per-instance OAuth clients.

``ConnectionRepository`` is bound to one workspace: another workspace's connection is not
found. The module-level functions are the few look-ups that run before a workspace is
known or outside any request: by an id from our own job queue (background refresh), by
the HMAC of a presented ``state`` (the OAuth callback), and by instance (shared clients).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update

from plexus.models.connections import Connection, OAuthClientRegistration, OAuthFlow

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


class ConnectionRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _base(self) -> Select[Connection]:
        return select(Connection).where(Connection.workspace_id == self.workspace_id)

    def add(self, connection: Connection) -> Connection:
        if connection.workspace_id != self.workspace_id:
            msg = "a connection is added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(connection)
        self.session.flush()
        return connection

    def get(self, connection_id: int) -> Connection | None:
        return self.session.scalars(self._base().where(Connection.id == connection_id)).first()

    def by_account(self, provider: str, external_id: str) -> Connection | None:
        statement = self._base().where(
            Connection.provider == provider, Connection.external_id == external_id
        )
        return self.session.scalars(statement).first()

    def count(self) -> int:
        statement = (
            select(func.count())
            .select_from(Connection)
            .where(Connection.workspace_id == self.workspace_id)
        )
        return int(self.session.scalar(statement) or 0)

    def page(self, *, limit: int, offset: int) -> Sequence[Connection]:
        statement = self._base().order_by(Connection.id).limit(limit).offset(offset)
        return self.session.scalars(statement).all()

    def delete(self, connection: Connection) -> None:
        self.session.delete(connection)
        self.session.flush()


def connection_by_id(
    session: Session, connection_id: int, *, lock: bool = False
) -> Connection | None:
    """A connection by id in any workspace (jobs carry ids we enqueued ourselves).

    ``lock`` re-reads the row under ``SELECT … FOR UPDATE`` (PostgreSQL holds it until the
    transaction ends; SQLite's write transaction already excludes other writers).
    """
    statement = select(Connection).where(Connection.id == connection_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return session.scalars(statement).first()


def refresh_due(session: Session, before: datetime, limit: int = 500) -> Sequence[int]:
    """Active connections whose token is due for a background refresh before ``before``."""
    statement = (
        select(Connection.id)
        .where(
            Connection.status == "active",
            Connection.refresh_due_at.is_not(None),
            Connection.refresh_due_at < before,
        )
        .order_by(Connection.refresh_due_at)
        .limit(limit)
    )
    return session.scalars(statement).all()


def active_ids(session: Session, limit: int = 10_000) -> Sequence[int]:
    statement = select(Connection.id).where(Connection.status == "active").order_by(Connection.id)
    return session.scalars(statement.limit(limit)).all()


def add_flow(session: Session, flow: OAuthFlow) -> OAuthFlow:
    session.add(flow)
    session.flush()
    return flow


def flow_by_state_hash(session: Session, state_hash: str) -> OAuthFlow | None:
    return session.scalars(select(OAuthFlow).where(OAuthFlow.state_hash == state_hash)).first()


def spend_flow(session: Session, flow_id: int, now: datetime) -> bool:
    """Mark the flow used, atomically: True for exactly one caller, while it is unexpired."""
    result = session.execute(
        update(OAuthFlow)
        .where(OAuthFlow.id == flow_id, OAuthFlow.used_at.is_(None), OAuthFlow.expires_at > now)
        .values(used_at=now)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def purge_flows(session: Session, used_or_expired_before: datetime) -> int:
    """Delete flows spent or expired before the given moment (they hold nothing needed)."""
    result = session.execute(
        delete(OAuthFlow).where(
            or_(
                OAuthFlow.used_at < used_or_expired_before,
                OAuthFlow.expires_at < used_or_expired_before,
            )
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def oauth_client(
    session: Session, provider: str, registration_key: str, redirect_uri: str
) -> OAuthClientRegistration | None:
    statement = select(OAuthClientRegistration).where(
        OAuthClientRegistration.provider == provider,
        OAuthClientRegistration.registration_key == registration_key,
        OAuthClientRegistration.redirect_uri == redirect_uri,
    )
    return session.scalars(statement).first()


def oauth_client_by_id(session: Session, client_id: int) -> OAuthClientRegistration | None:
    return session.get(OAuthClientRegistration, client_id)


def add_oauth_client(
    session: Session, registration: OAuthClientRegistration
) -> OAuthClientRegistration:
    session.add(registration)
    session.flush()
    return registration
