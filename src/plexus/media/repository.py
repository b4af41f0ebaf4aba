"""Queries on media. ``MediaRepository`` is bound to one workspace: another workspace's
media is not found. ``hash_in_use`` looks across workspaces, because stored bytes are
shared by every row with their hash.

Media that arrived through a public upload link is ``pending_review`` until an editor
accepts it: the ordinary reads (``get``, ``page``) see ready media only, so pending media
cannot be listed, read, downloaded or attached through the media API. The review path
reads it with ``get_any``; deduplication (``by_hash``) and the quota (``bytes_used``) see
every row, whatever its status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy import func, select, text

from plexus.models.media import Media

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from sqlalchemy import Select
    from sqlalchemy.orm import Session

#: The statuses of ``Media.status``.
READY: Final = "ready"
PENDING_REVIEW: Final = "pending_review"


class MediaRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _all(self) -> Select[Media]:
        """Every media row of the workspace, pending review or not."""
        return select(Media).where(Media.workspace_id == self.workspace_id)

    def _base(self) -> Select[Media]:
        """What the media API shows: the workspace's ready media."""
        return self._all().where(Media.status == READY)

    def add(self, media: Media) -> Media:
        if media.workspace_id != self.workspace_id:
            msg = "media is added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(media)
        self.session.flush()
        return media

    def get(self, media_id: int) -> Media | None:
        return self.session.scalars(self._base().where(Media.id == media_id)).first()

    def get_any(self, media_id: int) -> Media | None:
        """Ready or pending review: for the review of public uploads only."""
        return self.session.scalars(self._all().where(Media.id == media_id)).first()

    def many_any(self, media_ids: Collection[int]) -> Sequence[Media]:
        """Ready or pending review, by id: for the review queue only."""
        if not media_ids:
            return []
        return self.session.scalars(self._all().where(Media.id.in_(list(media_ids)))).all()

    def by_hash(self, sha256: str) -> Media | None:
        """The workspace's media with these bytes, whatever its status (one per hash)."""
        return self.session.scalars(self._all().where(Media.sha256 == sha256)).first()

    def bytes_used(self) -> int:
        """Bytes of every row, pending review included: the quota counts them all."""
        statement = select(func.coalesce(func.sum(Media.byte_size), 0)).where(
            Media.workspace_id == self.workspace_id
        )
        return int(self.session.scalar(statement) or 0)

    def page(self, *, limit: int, offset: int) -> Sequence[Media]:
        statement = (
            self._base()
            .order_by(Media.created_at.desc(), Media.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return self.session.scalars(statement).all()

    def delete(self, media: Media) -> None:
        self.session.delete(media)
        self.session.flush()


def lock_hash(session: Session, sha256: str) -> None:
    """Hold the lock on the stored bytes of ``sha256`` until the transaction ends.

    Storing bytes and committing their row, and checking that no row uses them and
    deleting them, each happen under it, so neither can come between the other's steps.
    PostgreSQL: a transaction-level advisory lock keyed by the hash's first 8 bytes (the
    one-key space, apart from the two-key locks of connection refreshes; two hashes
    sharing 8 bytes only wait for each other). SQLite: every transaction begins with
    ``BEGIN IMMEDIATE`` and holds the database's write lock, which serialises them all
    (one host, every process), so beginning the transaction is taking the lock.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def hash_in_use(session: Session, sha256: str) -> bool:
    """Whether any workspace still has media with these bytes."""
    statement = select(Media.id).where(Media.sha256 == sha256).limit(1)
    return session.scalars(statement).first() is not None


def ready_by_id(session: Session, media_id: int) -> Media | None:
    """Ready media by id in any workspace: only for a link whose signature names it."""
    statement = select(Media).where(Media.id == media_id, Media.status == READY)
    return session.scalars(statement).first()
