"""Queries on upload links and their submissions. The only module that touches them.

``UploadLinkRepository`` is bound to one workspace, the caller's, and filters every query
by it: another workspace's link or submission is not found. The public side cannot know
the workspace in advance, so its two queries (``link_by_token_hash``, ``claim_use``) are
keyed by the token's HMAC and by the link that HMAC found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from plexus.models.content import UploadLink, UploadSubmission

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session


class UploadLinkRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    # Links -------------------------------------------------------------------------------

    def add_link(self, link: UploadLink) -> UploadLink:
        if link.workspace_id != self.workspace_id:
            msg = "links are added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(link)
        self.session.flush()
        return link

    def link(self, link_id: int) -> UploadLink | None:
        return self.session.scalars(
            select(UploadLink).where(
                UploadLink.workspace_id == self.workspace_id, UploadLink.id == link_id
            )
        ).first()

    def links(
        self, *, content_id: int | None, limit: int, offset: int
    ) -> tuple[Sequence[UploadLink], int]:
        statement = select(UploadLink).where(UploadLink.workspace_id == self.workspace_id)
        if content_id is not None:
            statement = statement.where(UploadLink.content_id == content_id)
        total = self.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        rows = self.session.scalars(
            statement.order_by(UploadLink.created_at.desc(), UploadLink.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return rows, int(total)

    def revoke(self, link_id: int, now: datetime) -> bool:
        """Revoke the link unless it already was; False when it was."""
        result = self.session.execute(
            update(UploadLink)
            .where(
                UploadLink.workspace_id == self.workspace_id,
                UploadLink.id == link_id,
                UploadLink.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    # Submissions -------------------------------------------------------------------------

    def add_submission(self, submission: UploadSubmission) -> UploadSubmission:
        if submission.workspace_id != self.workspace_id:
            msg = "submissions are added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(submission)
        self.session.flush()
        return submission

    def submission(self, submission_id: int) -> tuple[UploadSubmission, UploadLink] | None:
        """The submission and the link it came through."""
        row = self.session.execute(
            select(UploadSubmission, UploadLink)
            .join(UploadLink, UploadLink.id == UploadSubmission.link_id)
            .where(
                UploadSubmission.workspace_id == self.workspace_id,
                UploadSubmission.id == submission_id,
            )
            .execution_options(populate_existing=True)
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    def submissions(
        self, *, status: str | None, link_id: int | None, limit: int, offset: int
    ) -> tuple[Sequence[tuple[UploadSubmission, UploadLink]], int]:
        """Submissions with their links, oldest first (a queue is worked from its head)."""
        statement = (
            select(UploadSubmission, UploadLink)
            .join(UploadLink, UploadLink.id == UploadSubmission.link_id)
            .where(UploadSubmission.workspace_id == self.workspace_id)
        )
        if status is not None:
            statement = statement.where(UploadSubmission.status == status)
        if link_id is not None:
            statement = statement.where(UploadSubmission.link_id == link_id)
        total = self.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        rows = self.session.execute(
            statement.order_by(UploadSubmission.created_at, UploadSubmission.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return [(row[0], row[1]) for row in rows], int(total)

    def decide(self, submission_id: int, status: str, reviewer: int, now: datetime) -> bool:
        """Move a pending submission to ``status``; False when it was no longer pending.

        One conditional UPDATE: of an accept and a reject racing, exactly one wins.
        """
        result = self.session.execute(
            update(UploadSubmission)
            .where(
                UploadSubmission.workspace_id == self.workspace_id,
                UploadSubmission.id == submission_id,
                UploadSubmission.status == "pending",
            )
            .values(status=status, reviewed_by=reviewer, reviewed_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def others_pending_for(self, media_id: int, submission_id: int) -> bool:
        """Whether another pending submission points at the same media."""
        found = self.session.scalar(
            select(UploadSubmission.id)
            .where(
                UploadSubmission.workspace_id == self.workspace_id,
                UploadSubmission.media_id == media_id,
                UploadSubmission.id != submission_id,
                UploadSubmission.status == "pending",
            )
            .limit(1)
        )
        return found is not None

    def delete_submission(self, submission: UploadSubmission) -> None:
        self.session.delete(submission)
        self.session.flush()


def link_by_token_hash(session: Session, token_hash: str) -> UploadLink | None:
    """The link whose token has this HMAC, in any workspace (the token names it)."""
    return session.scalars(select(UploadLink).where(UploadLink.token_hash == token_hash)).first()


def link_by_id(session: Session, link_id: int) -> UploadLink | None:
    """The link the public side already found by its token, read again."""
    return session.scalars(
        select(UploadLink).where(UploadLink.id == link_id).execution_options(populate_existing=True)
    ).first()


def claim_use(session: Session, link_id: int, now: datetime) -> int | None:
    """Spend one use of the link if, at this instant, it is still usable; the uses left
    after it, or None when it was not usable.

    One conditional UPDATE (``uses < max_uses``, not revoked, not expired): PostgreSQL
    re-checks the condition after the row lock and SQLite serialises writers, so however
    many uploads race, at most ``max_uses`` succeed.
    """
    left = session.scalar(
        update(UploadLink)
        .where(
            UploadLink.id == link_id,
            UploadLink.uses < UploadLink.max_uses,
            UploadLink.revoked_at.is_(None),
            UploadLink.expires_at > now,
        )
        .values(uses=UploadLink.uses + 1)
        .returning(UploadLink.max_uses - UploadLink.uses)
        .execution_options(synchronize_session=False)
    )
    return int(left) if left is not None else None
