"""Queries of the users table made by the accounts domain. The only module of it that queries.

Users belong to the instance, not to a workspace: every lookup here is by the user's own id
or e-mail, and what a caller may see of another user is decided by the workspace
repository (members of the caller's workspace only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from plexus.models.identity import User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: int) -> User | None:
        return self.session.get(User, user_id)

    def by_email_index(self, index: str) -> User | None:
        """The user whose address has this blind index (see accounts.service.email_index)."""
        statement = select(User).where(User.email_index == index)
        return self.session.scalars(statement).one_or_none()

    def any_user(self) -> bool:
        return bool(self.session.scalar(select(exists().where(User.id.is_not(None)))))

    def add(self, user: User) -> bool:
        """Insert ``user``; False (and nothing inserted) when the e-mail is already taken,
        including by a parallel transaction that committed first.
        """
        try:
            with self.session.begin_nested():
                self.session.add(user)
        except IntegrityError:
            return False
        return True
