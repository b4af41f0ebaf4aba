"""Queries on media. ``MediaRepository`` is bound to one workspace: another workspace's
media is not found. ``hash_in_use`` looks across workspaces, because stored bytes are
shared by every row with their hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from plexus.models.media import Media

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


class MediaRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _base(self) -> Select[Media]:
        return select(Media).where(Media.workspace_id == self.workspace_id)

    def add(self, media: Media) -> Media:
        if media.workspace_id != self.workspace_id:
            msg = "media is added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(media)
        self.session.flush()
        return media

    def get(self, media_id: int) -> Media | None:
        return self.session.scalars(self._base().where(Media.id == media_id)).first()

    def by_hash(self, sha256: str) -> Media | None:
        return self.session.scalars(self._base().where(Media.sha256 == sha256)).first()

    def bytes_used(self) -> int:
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


def hash_in_use(session: Session, sha256: str) -> bool:
    """Whether any workspace still has media with these bytes."""
    statement = select(Media.id).where(Media.sha256 == sha256).limit(1)
    return session.scalars(statement).first() is not None
