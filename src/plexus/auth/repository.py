"""Queries of the identity tables used by sign-in, sessions, tokens and second factors.

Everything here is keyed by the user (or by a secret's HMAC), never by a workspace
object id a caller chose: the workspace a principal acts in comes from its membership.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update

from plexus.models.base import utcnow
from plexus.models.identity import (
    AuthSession,
    LoginChallenge,
    Membership,
    RecoveryCode,
    RefreshToken,
    SigningKey,
    User,
    Workspace,
)
from plexus.models.webauthn import WebAuthnChallenge, WebAuthnCredential

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

    def user_by_email_index(self, index: str) -> User | None:
        """The user whose address has this blind index (accounts.service.email_index)."""
        return self.session.scalars(select(User).where(User.email_index == index)).one_or_none()

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

    # TOTP and recovery codes -----------------------------------------------------------

    def claim_totp_step(self, user_id: int, sealed: bytes, step: int, *, confirming: bool) -> bool:
        """Record ``step`` as the user's last accepted TOTP step, in one conditional UPDATE.

        True only if this call changed the row: refused when that step (or a later one)
        already is, or when the secret is no longer ``sealed``. ``confirming`` requires a
        pending (unconfirmed) secret and turns it on; otherwise a confirmed one is needed.
        """
        values: dict[str, object] = {"totp_last_step": step}
        statement = update(User).where(
            User.id == user_id,
            User.totp_secret == sealed,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        if confirming:
            statement = statement.where(User.totp_confirmed_at.is_(None))
            values["totp_confirmed_at"] = utcnow()
        else:
            statement = statement.where(User.totp_confirmed_at.is_not(None))
        result = self.session.execute(
            statement.values(**values).execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def burn_recovery_code(self, user_id: int, code_hash: str) -> bool:
        """Mark an unused recovery code used, in one conditional UPDATE; False when there
        is no such unused code (a parallel request may have burned it first).
        """
        result = self.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def recovery_codes_left(self, user_id: int) -> int:
        statement = select(func.count(RecoveryCode.id)).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
        return int(self.session.scalar(statement) or 0)

    def delete_recovery_codes(self, user_id: int) -> None:
        """Delete every recovery code of the user, used or not."""
        self.session.execute(
            delete(RecoveryCode)
            .where(RecoveryCode.user_id == user_id)
            .execution_options(synchronize_session=False)
        )

    # WebAuthn credentials and challenges ------------------------------------------------

    def has_webauthn_credential(self, user_id: int) -> bool:
        statement = select(WebAuthnCredential.id).where(WebAuthnCredential.user_id == user_id)
        return self.session.scalar(statement.limit(1)) is not None

    def webauthn_credentials(self, user_id: int) -> list[WebAuthnCredential]:
        """The user's registered credentials, oldest first."""
        statement = (
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.id)
        )
        return list(self.session.scalars(statement))

    def webauthn_credential(self, row_id: int) -> WebAuthnCredential | None:
        return self.session.get(WebAuthnCredential, row_id)

    def user_webauthn_credential(
        self, user_id: int, credential_id: bytes
    ) -> WebAuthnCredential | None:
        """The user's credential with the authenticator's ``credential_id``, if any."""
        statement = select(WebAuthnCredential).where(
            WebAuthnCredential.user_id == user_id,
            WebAuthnCredential.credential_id == credential_id,
        )
        return self.session.scalars(statement).one_or_none()

    def webauthn_credential_registered(self, credential_id: bytes) -> bool:
        """True when any user already registered the authenticator's ``credential_id``."""
        statement = select(func.count(WebAuthnCredential.id)).where(
            WebAuthnCredential.credential_id == credential_id
        )
        return bool(self.session.scalar(statement))

    def record_webauthn_use(self, row_id: int, old_count: int, new_count: int) -> bool:
        """Store the new signature counter, in one conditional UPDATE that only applies
        while the stored counter is still ``old_count``; False when a parallel use won.
        """
        result = self.session.execute(
            update(WebAuthnCredential)
            .where(
                WebAuthnCredential.id == row_id,
                WebAuthnCredential.sign_count == old_count,
            )
            .values(sign_count=new_count, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def clear_webauthn_challenges(self, user_id: int, purpose: str, now: datetime) -> None:
        """Delete the user's pending challenges of ``purpose`` and any that expired."""
        self.session.execute(
            delete(WebAuthnChallenge)
            .where(
                WebAuthnChallenge.user_id == user_id,
                or_(WebAuthnChallenge.purpose == purpose, WebAuthnChallenge.expires_at <= now),
            )
            .execution_options(synchronize_session=False)
        )

    def pending_webauthn_challenge(
        self, user_id: int, purpose: str, login_challenge_id: int | None
    ) -> WebAuthnChallenge | None:
        """The user's pending challenge of a ceremony (bound to ``login_challenge_id``, or
        to none when it is None), expired or not.
        """
        statement = select(WebAuthnChallenge).where(
            WebAuthnChallenge.user_id == user_id,
            WebAuthnChallenge.purpose == purpose,
            WebAuthnChallenge.login_challenge_id.is_(None)
            if login_challenge_id is None
            else WebAuthnChallenge.login_challenge_id == login_challenge_id,
        )
        return self.session.scalars(statement).first()

    def spend_webauthn_challenge(self, pending: WebAuthnChallenge) -> bool:
        """Delete the challenge row and detach it; True only if this call deleted it (a
        parallel request may have spent it first).
        """
        result = self.session.execute(
            delete(WebAuthnChallenge)
            .where(WebAuthnChallenge.id == pending.id)
            .execution_options(synchronize_session=False)
        )
        self.session.expunge(pending)
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    # Signing keys -----------------------------------------------------------------------

    def signing_keys(self) -> Sequence[SigningKey]:
        """Every signing key, newest first (retired ones included)."""
        statement = select(SigningKey).order_by(SigningKey.created_at.desc())
        return self.session.scalars(statement).all()

    def unretired_signing_keys(self) -> Sequence[SigningKey]:
        return self.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))).all()
