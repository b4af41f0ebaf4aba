"""Queries on API keys. The only module that touches the ``api_keys`` table.

``ApiKeyRepository`` is bound to one workspace: every query it runs is filtered to that
workspace, so a key of another workspace is simply not found (a 404, never a 403 that
would confirm it exists). ``key_by_hash`` is the one lookup across workspaces: it serves
authentication, before any workspace is known, and is keyed by the HMAC of a presented
key, never by an id a caller chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select

from plexus.models.identity import ApiKey, Membership, User

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Select
    from sqlalchemy.orm import Session


class ApiKeyRepository:
    def __init__(self, session: Session, workspace_id: int) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _base(self) -> Select[ApiKey]:
        return select(ApiKey).where(ApiKey.workspace_id == self.workspace_id)

    def add(self, key: ApiKey) -> ApiKey:
        if key.workspace_id != self.workspace_id:
            msg = "an API key is added to the repository's own workspace only"
            raise ValueError(msg)
        self.session.add(key)
        self.session.flush()
        return key

    def get(self, key_id: int, *, lock: bool = False) -> ApiKey | None:
        """The key ``key_id`` of this workspace; ``lock`` holds its row until commit."""
        statement = self._base().where(ApiKey.id == key_id)
        if lock:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def page(self, *, limit: int, offset: int) -> Sequence[ApiKey]:
        """Keys of the workspace, newest first."""
        statement = self._base().order_by(ApiKey.id.desc()).limit(limit).offset(offset)
        return self.session.scalars(statement).all()

    def count_usable(self, now: datetime) -> int:
        """Keys that are neither revoked, expired nor already replaced by a rotation."""
        statement = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.workspace_id == self.workspace_id,
                ApiKey.revoked_at.is_(None),
                ApiKey.rotated_to_id.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
        return int(self.session.scalar(statement) or 0)

    def unrevoked_of_creator(self, user_id: int) -> Sequence[ApiKey]:
        """Every key ``user_id`` created here that is not revoked yet, locked for update."""
        statement = (
            self._base()
            .where(ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.id)
            .with_for_update()
        )
        return self.session.scalars(statement).all()


def key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The key whose HMAC is ``key_hash``, in any workspace, locked until commit.

    The lock serialises the usage bookkeeping of concurrent requests made with one key,
    so no count is lost; requests made with different keys do not wait for each other.
    """
    statement = select(ApiKey).where(ApiKey.key_hash == key_hash).with_for_update()
    return session.scalars(statement).one_or_none()


def key_by_id(session: Session, key_id: int) -> ApiKey | None:
    """The key ``key_id`` in any workspace, locked until commit.

    Only for re-recording the use of a key that has just authenticated (its id comes from
    our own lookup, never from a caller).
    """
    statement = select(ApiKey).where(ApiKey.id == key_id).with_for_update()
    return session.scalars(statement).one_or_none()


def creator_role(session: Session, user_id: int, workspace_id: int) -> str | None:
    """The creator's current role in the key's workspace.

    None when they are no longer a member there or their account is disabled.
    """
    statement = (
        select(Membership.role)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.user_id == user_id,
            Membership.workspace_id == workspace_id,
            User.is_active.is_(True),
        )
    )
    return session.scalars(statement).one_or_none()
