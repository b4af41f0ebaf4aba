"""Queries of the identity tables used by sign-in, sessions and tokens.

Everything here is keyed by the user (or by a secret's HMAC), never by a workspace
object id a caller chose: the workspace a principal acts in comes from its membership.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from plexus.models.base import utcnow
from plexus.models.identity import (
    AuthSession,
    LoginChallenge,
    Membership,
    RefreshToken,
    User,
    Workspace,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session


class AuthRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # Users and memberships ------------------------------------------------------------

    def user(self, user_id: int) -> User | None:
        return self.session.get(User, user_id)

    def user_by_email(self, email: str) -> User | None:
        return self.session.scalars(select(User).where(User.email == email)).one_or_none()

    def membership(self, user_id: int, workspace_id: int) -> tuple[Membership, Workspace] | None:
        row = self.session.execute(
            select(Membership, Workspace)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.user_id == user_id, Membership.workspace_id == workspace_id)
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    def memberships(self, user_id: int) -> Sequence[tuple[Membership, Workspace]]:
        rows = self.session.execute(
            select(Membership, Workspace)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at, Membership.id)
        ).all()
        return [(m, w) for m, w in rows]

    # Auth sessions ----------------------------------------------------------------------

    def add(self, row: object) -> None:
        self.session.add(row)
        self.session.flush()

    def auth_session(self, session_id: str) -> AuthSession | None:
        return self.session.get(AuthSession, session_id)

    def auth_session_by_secret(self, secret_hash: str) -> AuthSession | None:
        statement = select(AuthSession).where(
            AuthSession.secret_hash == secret_hash, AuthSession.kind == "web"
        )
        return self.session.scalars(statement).one_or_none()

    def live_sessions(self, user_id: int) -> Sequence[AuthSession]:
        now = utcnow()
        statement = (
            select(AuthSession)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.created_at.desc())
        )
        return self.session.scalars(statement).all()

    def revoke_sessions(
        self,
        user_id: int,
        *,
        reason: str,
        workspace_id: int | None = None,
        except_session_id: str | None = None,
    ) -> int:
        statement = update(AuthSession).where(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
        )
        if workspace_id is not None:
            statement = statement.where(AuthSession.workspace_id == workspace_id)
        if except_session_id is not None:
            statement = statement.where(AuthSession.id != except_session_id)
        result = self.session.execute(
            statement.values(revoked_at=utcnow(), revoked_reason=reason).execution_options(
                synchronize_session="fetch"
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # Refresh tokens ---------------------------------------------------------------------

    def refresh_token(self, token_hash: str) -> RefreshToken | None:
        statement = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return self.session.scalars(statement).one_or_none()

    def spend_refresh_token(self, token_id: int, now: datetime) -> bool:
        """Mark the token used; False when it was already used (by a parallel request too)."""
        result = self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    # Login challenges -------------------------------------------------------------------

    def challenge(self, token_hash: str) -> LoginChallenge | None:
        statement = select(LoginChallenge).where(LoginChallenge.token_hash == token_hash)
        return self.session.scalars(statement).one_or_none()

    def take_challenge_attempt(self, challenge_id: int, limit: int) -> int | None:
        """Count one attempt at the challenge; the new count, or None when none is left."""
        result = self.session.execute(
            update(LoginChallenge)
            .where(
                LoginChallenge.id == challenge_id,
                LoginChallenge.used_at.is_(None),
                LoginChallenge.attempts < limit,
            )
            .values(attempts=LoginChallenge.attempts + 1)
            .returning(LoginChallenge.attempts)
            .execution_options(synchronize_session=False)
        )
        count = result.scalar_one_or_none()
        return int(count) if count is not None else None

    def spend_challenge(self, challenge_id: int, now: datetime) -> bool:
        result = self.session.execute(
            update(LoginChallenge)
            .where(LoginChallenge.id == challenge_id, LoginChallenge.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]
