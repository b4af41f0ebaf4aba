"""Queries on publications.

``PublicationRepository`` is bound to one workspace (the API's view). The module-level
functions are the worker's: they take a publication id the queue handed over and work
on it wherever it belongs; each state change is a conditional UPDATE on the state the
caller saw, so two workers can never both move one publication.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from plexus.models.connections import Connection
from plexus.models.content import Publication
from plexus.publishing import states

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


class PublicationRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _base(self) -> Select[Publication]:
        return select(Publication).where(Publication.workspace_id == self.workspace_id)

    def add(self, publication: Publication) -> Publication:
        if publication.workspace_id != self.workspace_id:
            msg = "publications are added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(publication)
        self.session.flush()
        return publication

    def get(self, publication_id: int, *, lock: bool = False) -> Publication | None:
        statement = self._base().where(Publication.id == publication_id)
        if lock:
            statement = statement.with_for_update()
        return self.session.scalars(statement).first()

    def active_for(self, content_id: int, connection_ids: Collection[int]) -> set[int]:
        """The connections that already have an unfinished publication of the content."""
        statement = select(Publication.connection_id).where(
            Publication.workspace_id == self.workspace_id,
            Publication.content_id == content_id,
            Publication.connection_id.in_(list(connection_ids)),
            Publication.state.in_(states.ACTIVE),
        )
        return set(self.session.scalars(statement).all())

    def page(  # noqa: PLR0913 - the page and its filters
        self,
        *,
        limit: int,
        offset: int,
        state: str | None = None,
        connection_id: int | None = None,
        content_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[Sequence[Publication], int]:
        statement = self._base()
        if state is not None:
            statement = statement.where(Publication.state == state)
        if connection_id is not None:
            statement = statement.where(Publication.connection_id == connection_id)
        if content_id is not None:
            statement = statement.where(Publication.content_id == content_id)
        if start is not None:
            statement = statement.where(Publication.scheduled_at >= start)
        if end is not None:
            statement = statement.where(Publication.scheduled_at < end)
        total = self.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        rows = self.session.scalars(
            statement.order_by(Publication.scheduled_at.desc(), Publication.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return rows, int(total)


# --------------------------------------------------------------------------- the worker's


def by_id(session: Session, publication_id: int) -> Publication | None:
    return session.get(Publication, publication_id)


def move(
    session: Session,
    publication_id: int,
    *,
    expected: Collection[str],
    held_by: str | None = None,
    **values: object,
) -> bool:
    """Set ``values`` if the publication is still in one of the ``expected`` states (and,
    when given, still held under the claim token ``held_by``); whether it was.
    """
    statement = update(Publication).where(
        Publication.id == publication_id, Publication.state.in_(list(expected))
    )
    if held_by is not None:
        statement = statement.where(Publication.claim_token == held_by)
    result = session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE


def serialise_claims(session: Session, connection_id: int) -> bool:
    """Take the connection's row (PostgreSQL: a row lock; SQLite: the write lock) for the
    rest of the transaction, so claims on one connection count its limits one at a time.
    False when the connection is gone.
    """
    result = session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(publish_claims=Connection.publish_claims + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE


def sent_since(
    session: Session,
    since: datetime,
    *,
    connection_id: int | None = None,
    provider: str | None = None,
) -> tuple[int, datetime | None]:
    """How many publications were sent (claimed and not since returned to the queue) since
    ``since`` on the connection (or through the provider), and the earliest of those claims.
    """
    statement = select(func.count(), func.min(Publication.claimed_at)).where(
        Publication.state.in_(states.SENT), Publication.claimed_at >= since
    )
    if connection_id is not None:
        statement = statement.where(Publication.connection_id == connection_id)
    if provider is not None:
        statement = statement.where(Publication.provider == provider)
    count, earliest = session.execute(statement).one()
    return int(count or 0), earliest


def due(session: Session, now: datetime, *, limit: int) -> Sequence[int]:
    """Claimable publications whose time has come, oldest first."""
    statement = (
        select(Publication.id)
        .where(Publication.state.in_(states.CLAIMABLE), Publication.next_attempt_at <= now)
        .order_by(Publication.next_attempt_at, Publication.id)
        .limit(limit)
    )
    return session.scalars(statement).all()


def stuck(session: Session, now: datetime, *, limit: int) -> Sequence[int]:
    """Publications held by a worker past their lease (the worker died or hung)."""
    statement = (
        select(Publication.id)
        .where(Publication.state == states.PUBLISHING, Publication.lease_until < now)
        .limit(limit)
    )
    return session.scalars(statement).all()


def to_reconcile(session: Session, now: datetime, *, limit: int) -> Sequence[int]:
    statement = (
        select(Publication.id)
        .where(Publication.state == states.UNCONFIRMED, Publication.next_attempt_at <= now)
        .order_by(Publication.next_attempt_at)
        .limit(limit)
    )
    return session.scalars(statement).all()


def parked_on_active_connections(session: Session, *, limit: int) -> Sequence[int]:
    statement = (
        select(Publication.id)
        .join(Connection, Connection.id == Publication.connection_id)
        .where(Publication.state == states.PARKED, Connection.status == "active")
        .limit(limit)
    )
    return session.scalars(statement).all()


def connection_row(session: Session, connection_id: int) -> Connection | None:
    return session.get(Connection, connection_id)
