"""The signed-in user's own account (R1, R6, R22): logout, sessions, re-authentication,
password change, and the operator's unlock. Never commits; failures that must leave a
record are raised with ``keep_changes=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plexus.accounts.service import email_index, email_of
from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.auth import mfa, webauthn
from plexus.auth.repository import AuthRepository
from plexus.auth.service import ClientInfo, check_password, normalise_email
from plexus.auth.sessions import (
    WebLogin,
    access_token_for,
    bump_token_epoch,
    end_session,
    end_user_sessions,
    mark_reauthenticated,
    rotate_web_session,
)
from plexus.errors import InvalidCredentials, NotFound, Unauthorized
from plexus.models.base import utcnow
from plexus.security.events import SecurityEventKind, Severity
from plexus.security.service import raise_security_event

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.models.identity import AuthSession, User
    from plexus.runtime import Runtime


def current_auth_session(session: Session, principal: Principal) -> AuthSession:
    if principal.session_id is None:
        raise NotFound("This credential has no session.")
    auth_session = AuthRepository(session).auth_session(principal.session_id)
    if auth_session is None:
        raise NotFound("This credential has no session.")
    return auth_session


def logout(session: Session, runtime: Runtime, principal: Principal) -> None:
    auth_session = current_auth_session(session, principal)
    end_session(auth_session, "logout")
    runtime.audit.record(
        session,
        AuditEventType.AUTH_SESSION_ENDED,
        principal.actor,
        target=Target("session", auth_session.id),
        workspace_id=principal.workspace_id,
        context={"reason": "logout"},
    )


def logout_everywhere(session: Session, runtime: Runtime, principal: Principal) -> int:
    user = _user_of(session, principal)
    ended = end_user_sessions(session, user.id, reason="logout-all")
    bump_token_epoch(session, user)
    runtime.audit.record(
        session,
        AuditEventType.AUTH_SESSIONS_ENDED_ALL,
        principal.actor,
        target=Target("user", str(user.id)),
        workspace_id=principal.workspace_id,
        context={"sessions": ended},
    )
    return ended


def end_own_session(
    session: Session, runtime: Runtime, principal: Principal, session_id: str
) -> None:
    auth_session = AuthRepository(session).auth_session(session_id)
    if auth_session is None or auth_session.user_id != principal.user_id:
        raise NotFound("No such session.")
    end_session(auth_session, "ended-by-user")
    runtime.audit.record(
        session,
        AuditEventType.AUTH_SESSION_ENDED,
        principal.actor,
        target=Target("session", auth_session.id),
        workspace_id=principal.workspace_id,
        context={"reason": "ended-by-user"},
    )


def _user_of(session: Session, principal: Principal) -> User:
    user = AuthRepository(session).user(principal.user_id)
    if user is None:
        raise Unauthorized("The account no longer exists.")
    return user


def reauthenticate(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    password: str,
    code: str | None,
    client: ClientInfo,
) -> WebLogin | None:
    """Prove identity again for sensitive actions: the password, and the second factor
    when the user has one. Returns new cookie secrets for a browser session (rotated).
    """

    def second_factor(user: User) -> str | None:
        return mfa.verify_second_factor(session, runtime, user, code) if code else None

    return _reauthenticate(
        session,
        runtime,
        principal,
        password=password,
        client=client,
        second_factor=second_factor,
        required=False,
        refusal="A current code from your authenticator is needed.",
    )


def reauthenticate_with_key(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    password: str,
    credential: dict[str, Any],
    client: ClientInfo,
) -> WebLogin | None:
    """``reauthenticate`` with a security key or passkey instead of a code: the password
    and an assertion answering the caller's pending re-authentication challenge, which
    is spent first, whatever follows. ``amr`` of the proof: ("pwd", "hwk").
    """
    expected = webauthn.take_reauth_challenge(session, principal.user_id)

    def second_factor(user: User) -> str | None:
        return webauthn.verify_assertion(
            session, runtime, user, credential, expected, client=client
        )

    return _reauthenticate(
        session,
        runtime,
        principal,
        password=password,
        client=client,
        second_factor=second_factor,
        required=True,
        refusal="The security key's response did not verify; ask for new options.",
    )


def _reauthenticate(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    password: str,
    client: ClientInfo,
    second_factor: Callable[[User], str | None],
    required: bool,
    refusal: str,
) -> WebLogin | None:
    """Check the password (a failure counts toward the lockout), then ``second_factor``
    when ``required`` or the user has MFA; mark the session re-authenticated; audit both
    outcomes.
    """
    user = _user_of(session, principal)
    auth_session = current_auth_session(session, principal)
    try:
        check_password(session, runtime, user, password, client)
    except InvalidCredentials:
        runtime.audit.record(
            session,
            AuditEventType.AUTH_REAUTH_FAILED,
            principal.actor,
            result=AuditResult.FAILURE,
            workspace_id=principal.workspace_id,
        )
        raise
    methods: tuple[str, ...] = ("pwd",)
    if required or mfa.user_has_mfa(user):
        method = second_factor(user)
        if method is None:
            runtime.audit.record(
                session,
                AuditEventType.AUTH_REAUTH_FAILED,
                principal.actor,
                result=AuditResult.FAILURE,
                workspace_id=principal.workspace_id,
                context={"reason": "second factor"},
            )
            raise InvalidCredentials(refusal, keep_changes=True)
        methods = ("pwd", method)
    mark_reauthenticated(auth_session, methods)
    runtime.audit.record(
        session,
        AuditEventType.AUTH_REAUTH_SUCCEEDED,
        principal.actor,
        workspace_id=principal.workspace_id,
    )
    if auth_session.kind == "web":
        return rotate_web_session(session, runtime, auth_session)
    return None


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    access_token: str | None
    expires_in: int
    web: WebLogin | None
    sessions_ended: int


def change_password(  # noqa: PLR0913 - keyword-only parts of the request
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
    client: ClientInfo,
) -> PasswordChanged:
    """Needs the current password; ends every other session and token of the user."""
    from plexus.auth.password_policy import check_password as check_policy

    user = _user_of(session, principal)
    check_password(session, runtime, user, current_password, client)
    check_policy(
        new_password,
        email=email_of(runtime, user),
        display_name=user.display_name,
        settings=runtime.settings,
        field="new_password",
    )
    user.password_hash = runtime.passwords.hash(new_password)
    user.password_changed_at = utcnow()
    auth_session = current_auth_session(session, principal)
    ended = end_user_sessions(
        session, user.id, reason="password-changed", except_session_id=auth_session.id
    )
    bump_token_epoch(session, user)
    mark_reauthenticated(auth_session, ())
    runtime.audit.record(
        session,
        AuditEventType.AUTH_PASSWORD_CHANGED,
        principal.actor,
        target=Target("user", str(user.id)),
        workspace_id=principal.workspace_id,
        context={"sessions_ended": ended},
    )
    raise_security_event(
        session,
        SecurityEventKind.PASSWORD_CHANGED,
        Severity.LOW,
        workspace_id=principal.workspace_id,
        user_id=user.id,
        details={"sessions_ended": ended},
    )
    if auth_session.kind == "web":
        return PasswordChanged(None, 0, rotate_web_session(session, runtime, auth_session), ended)
    access, expires_in = access_token_for(session, runtime, user, auth_session)
    return PasswordChanged(access, expires_in, None, ended)


@dataclass(frozen=True, slots=True)
class AccountView:
    user: User
    #: The address, opened from its sealed column.
    email: str
    memberships: list[tuple[int, str, str]]
    mfa_enabled: bool


def account_view(session: Session, runtime: Runtime, principal: Principal) -> AccountView:
    user = _user_of(session, principal)
    rows = AuthRepository(session).memberships(user.id)
    memberships = [(m.workspace_id, w.name, m.role) for m, w in rows]
    return AccountView(user, email_of(runtime, user), memberships, mfa.user_has_mfa(user))


def own_sessions(session: Session, principal: Principal) -> list[AuthSession]:
    return list(AuthRepository(session).live_sessions(principal.user_id))


def unlock_account(session: Session, runtime: Runtime, email: str, actor: Actor) -> bool:
    """Lift a lockout at once (R4: admin unlock). False when no such account exists."""
    normalised = normalise_email(email)
    repo = AuthRepository(session)
    user = repo.user_by_email_index(email_index(runtime, normalised)) if normalised else None
    if user is None:
        return False
    user.failed_logins = 0
    user.locked_until = None
    runtime.audit.record(
        session,
        AuditEventType.AUTH_ACCOUNT_UNLOCKED,
        actor,
        target=Target("user", str(user.id)),
    )
    return True
