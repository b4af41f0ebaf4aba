"""Queries on content. ``ContentRepository`` is bound to one workspace: another
workspace's items are not found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from plexus.models.content import ContentItem, ContentVersion, Publication

#: Publication states that are not finished (``plexus.publishing.states.ACTIVE``; repeated
#: here because publishing depends on content, not the other way round).
UNFINISHED = ("scheduled", "queued", "publishing", "unconfirmed", "parked")

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


class ContentRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _base(self) -> Select[ContentItem]:
        return select(ContentItem).where(ContentItem.workspace_id == self.workspace_id)

    def add(self, item: ContentItem) -> ContentItem:
        if item.workspace_id != self.workspace_id:
            msg = "content is added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(item)
        self.session.flush()
        return item

    def get(self, content_id: int, *, lock: bool = False) -> ContentItem | None:
        statement = self._base().where(ContentItem.id == content_id)
        if lock:
            statement = statement.with_for_update()
        return self.session.scalars(statement).first()

    def page(
        self,
        *,
        limit: int,
        offset: int,
        status: str | None = None,
        content_type: str | None = None,
        tag: str | None = None,
    ) -> tuple[Sequence[ContentItem], int]:
        statement = self._base()
        if status is not None:
            statement = statement.where(ContentItem.status == status)
        if content_type is not None:
            statement = statement.where(ContentItem.content_type == content_type)
        if tag is not None:
            # Tags are a JSON list of strings validated to hold no quote or backslash,
            # so the quoted form of a tag appears in the text only as that element.
            statement = statement.where(ContentItem.tags.contains(f'"{tag}"'))
        total = self.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        rows = self.session.scalars(
            statement.order_by(ContentItem.updated_at.desc(), ContentItem.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return rows, int(total)

    def has_unfinished_publications(self, content_id: int) -> bool:
        """Whether a publication of the item is scheduled, queued, being sent, parked or
        unconfirmed (deleting the item would lose track of a post that may go out).
        """
        statement = (
            select(Publication.id)
            .where(
                Publication.workspace_id == self.workspace_id,
                Publication.content_id == content_id,
                Publication.state.in_(UNFINISHED),
            )
            .limit(1)
        )
        return self.session.scalars(statement).first() is not None

    def delete(self, item: ContentItem) -> None:
        self.session.delete(item)
        self.session.flush()

    # ---- versions

    def add_version(self, version: ContentVersion) -> None:
        self.session.add(version)
        self.session.flush()

    def version(self, content_id: int, number: int) -> ContentVersion | None:
        statement = (
            select(ContentVersion)
            .join(ContentItem, ContentItem.id == ContentVersion.content_id)
            .where(
                ContentItem.workspace_id == self.workspace_id,
                ContentVersion.content_id == content_id,
                ContentVersion.version == number,
            )
        )
        return self.session.scalars(statement).first()

    def versions(self, content_id: int, *, limit: int, offset: int) -> Sequence[ContentVersion]:
        statement = (
            select(ContentVersion)
            .join(ContentItem, ContentItem.id == ContentVersion.content_id)
            .where(
                ContentItem.workspace_id == self.workspace_id,
                ContentVersion.content_id == content_id,
            )
            .order_by(ContentVersion.version.desc())
            .limit(limit)
            .offset(offset)
        )
        return self.session.scalars(statement).all()
