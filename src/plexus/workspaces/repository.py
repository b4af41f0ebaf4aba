"""Queries of workspaces, memberships and invitations. The only module that touches them.

``WorkspaceRepository`` is bound to one workspace, the caller's, and filters every query by
it: an id from another workspace finds nothing, so the caller gets a 404 and never learns
that the object exists. The few lookups that cannot know the workspace in advance (the
caller's own memberships, an invitation found by its secret token) live in
``DirectoryRepository`` and are keyed by the caller's user id or by the token's HMAC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from plexus.authz.permissions import Role
from plexus.models.identity import Invitation, Membership, User, Workspace

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session


def _pending(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Neither accepted nor revoked, and not yet expired."""
    return (
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > now,
    )


class WorkspaceRepository:
    """Everything about one workspace; ``workspace_id`` is the caller's workspace."""

    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    # The workspace --------------------------------------------------------------------

    def workspace(self, workspace_id: int) -> Workspace | None:
        """The workspace ``workspace_id`` when it is the caller's own; otherwise None."""
        if workspace_id != self.workspace_id:
            return None
        return self.session.get(Workspace, self.workspace_id)

    # Members --------------------------------------------------------------------------

    def members(self) -> Sequence[tuple[Membership, User]]:
        rows = self.session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == self.workspace_id)
            .order_by(Membership.created_at, Membership.id)
        ).all()
        return [(membership, user) for membership, user in rows]

    def member(self, user_id: int) -> tuple[Membership, User] | None:
        row = self.session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == self.workspace_id, Membership.user_id == user_id)
            .execution_options(populate_existing=True)
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    def is_member_email(self, email_index: str) -> bool:
        """Whether the address with this blind index belongs to a member."""
        found = self.session.scalar(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == self.workspace_id, User.email_index == email_index)
        )
        return found is not None

    def lock_owners(self) -> Sequence[Membership]:
        """The owner memberships, locked until the transaction ends.

        Taken before any role change or removal, so two owners demoting each other at the
        same moment cannot leave the workspace with none: the second waits, then counts
        again. (PostgreSQL: row locks; SQLite: BEGIN IMMEDIATE already serialises writers.)
        """
        statement = (
            select(Membership)
            .where(
                Membership.workspace_id == self.workspace_id,
                Membership.role == Role.OWNER.value,
            )
            .order_by(Membership.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(statement).all()

    def add_membership(self, membership: Membership) -> None:
        membership.workspace_id = self.workspace_id
        self.session.add(membership)
        self.session.flush()

    def delete_membership(self, membership: Membership) -> None:
        self.session.delete(membership)
        self.session.flush()

    # Invitations ----------------------------------------------------------------------

    def add_invitation(self, invitation: Invitation) -> None:
        invitation.workspace_id = self.workspace_id
        self.session.add(invitation)
        self.session.flush()

    def pending_invitations(self, now: datetime) -> Sequence[Invitation]:
        statement = (
            select(Invitation)
            .where(Invitation.workspace_id == self.workspace_id, *_pending(now))
            .order_by(Invitation.created_at, Invitation.id)
        )
        return self.session.scalars(statement).all()

    def pending_invitation_for(self, email_index: str, now: datetime) -> Invitation | None:
        """A pending invitation to the address with this blind index."""
        statement = select(Invitation).where(
            Invitation.workspace_id == self.workspace_id,
            Invitation.email_index == email_index,
            *_pending(now),
        )
        return self.session.scalars(statement).first()

    def invitation(self, invitation_id: int) -> Invitation | None:
        statement = select(Invitation).where(
            Invitation.workspace_id == self.workspace_id, Invitation.id == invitation_id
        )
        return self.session.scalars(statement).one_or_none()

    def revoke_invitation(self, invitation_id: int, now: datetime) -> bool:
        """Revoke a still-pending invitation; False when it was accepted or revoked first."""
        result = self.session.execute(
            update(Invitation)
            .where(
                Invitation.workspace_id == self.workspace_id,
                Invitation.id == invitation_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def revoke_invitations_from(
        self, user_id: int, now: datetime, roles: Collection[str] | None = None
    ) -> int:
        """Revoke the pending invitations ``user_id`` sent in this workspace (only those for
        ``roles`` when given).
        """
        conditions = [
            Invitation.workspace_id == self.workspace_id,
            Invitation.invited_by == user_id,
            *_pending(now),
        ]
        if roles is not None:
            conditions.append(Invitation.role.in_(list(roles)))
        result = self.session.execute(
            update(Invitation)
            .where(*conditions)
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


class DirectoryRepository:
    """Lookups keyed by the caller's own user id, or by an invitation token's HMAC."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_workspace(self, workspace: Workspace) -> None:
        self.session.add(workspace)
        self.session.flush()

    def memberships_of(self, user_id: int) -> Sequence[tuple[Membership, Workspace]]:
        rows = self.session.execute(
            select(Membership, Workspace)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at, Membership.id)
        ).all()
        return [(membership, workspace) for membership, workspace in rows]

    def invitation_by_token(self, token_hash: str) -> Invitation | None:
        statement = select(Invitation).where(Invitation.token_hash == token_hash)
        return self.session.scalars(statement).one_or_none()

    def claim_invitation(self, invitation_id: int, now: datetime) -> bool:
        """Mark the invitation accepted if, at this instant, it is still pending.

        One conditional UPDATE: of any number of parallel acceptances exactly one changes
        the row (PostgreSQL re-checks the condition after the row lock; SQLite serialises
        writers), so an invitation is used once.
        """
        result = self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id, *_pending(now))
            .values(accepted_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def is_member(self, user_id: int, workspace_id: int) -> bool:
        found = self.session.scalar(
            select(Membership.id).where(
                Membership.user_id == user_id, Membership.workspace_id == workspace_id
            )
        )
        return found is not None
