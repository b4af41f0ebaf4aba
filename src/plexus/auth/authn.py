"""Finding out who is calling: an access token, an API key, or a browser session cookie.

``authenticate_request`` is called by the route policies (``plexus.authz.policy``) only.
Every path re-reads the user, the membership and the session from the database, so a
role change, a removal or a logout applies to the very next request.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from plexus.audit.events import Actor, AuditEventType, AuditResult
from plexus.auth.principal import Principal, PrincipalKind
from plexus.auth.repository import AuthRepository
from plexus.auth.sessions import (
    SESSION_COOKIE,
    SESSION_PURPOSE,
    amr_of,
    csrf_token_for,
    has_second_factor,
    is_live,
    touch,
)
from plexus.auth.tokens import decode_access_token
from plexus.authz.permissions import Role, permissions_for
from plexus.errors import CsrfFailed, PermissionDenied, Unauthorized
from plexus.security.ipguard import FailureKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from starlette.requests import Request

    from plexus.models.identity import AuthSession, Membership, User, Workspace
    from plexus.runtime import Runtime

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER: Final = "x-csrf-token"
API_KEY_PREFIX: Final = "plx_"
_NO_CREDENTIALS: Final = "Sign in, or send an access token or API key."


def _unauthorized(detail: str = "The credentials are invalid or expired.") -> Unauthorized:
    return Unauthorized(detail, headers={"WWW-Authenticate": "Bearer"})


def mfa_required_for(workspace: Workspace, role: Role) -> bool:
    if workspace.mfa_policy == "all":
        return True
    return workspace.mfa_policy == "admins" and role in (Role.OWNER, Role.ADMIN)


def build_principal(  # noqa: PLR0913, PLR0917 - a principal's sources
    kind: PrincipalKind,
    user: User,
    membership: Membership,
    workspace: Workspace,
    auth_session: AuthSession,
    methods: tuple[str, ...],
) -> Principal:
    role = Role(membership.role)
    return Principal(
        kind=kind,
        user_id=user.id,
        workspace_id=workspace.id,
        role=role,
        permissions=permissions_for(role, instance_admin=user.is_instance_admin),
        mfa=has_second_factor(methods),
        mfa_required=mfa_required_for(workspace, role),
        is_instance_admin=user.is_instance_admin,
        session_id=auth_session.id,
        auth_time=auth_session.auth_time,
    )


def authenticate_request(
    request: Request, session: Session, *, allow_api_keys: bool, csrf_form_token: str | None
) -> Principal:
    """The principal behind ``request``; raises Unauthorized (401) or CsrfFailed (403)."""
    runtime: Runtime = request.app.state.runtime
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        token = credentials.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Send credentials as 'Authorization: Bearer <token>'.")
        if token.startswith(API_KEY_PREFIX):
            if not allow_api_keys:
                raise PermissionDenied("API keys cannot be used here; sign in as a person.")
            from plexus.api_keys.service import authenticate as authenticate_api_key

            client_ip = request.client.host if request.client else None
            return authenticate_api_key(session, runtime, token, client_ip)
        return _from_access_token(session, runtime, token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return _from_cookie(request, session, runtime, cookie, csrf_form_token)
    raise _unauthorized(_NO_CREDENTIALS)


def _from_access_token(session: Session, runtime: Runtime, token: str) -> Principal:
    claims = decode_access_token(runtime.keyring, session, runtime.settings, token)
    repo = AuthRepository(session)
    user = repo.user(claims.user_id)
    if user is None or not user.is_active or user.token_epoch != claims.epoch:
        raise _unauthorized()
    auth_session = repo.auth_session(claims.session_id)
    if (
        auth_session is None
        or auth_session.kind != "token"
        or auth_session.user_id != user.id
        or auth_session.workspace_id != claims.workspace_id
        or not is_live(runtime, auth_session)
    ):
        raise _unauthorized()
    found = repo.membership(user.id, claims.workspace_id)
    if found is None:
        raise _unauthorized()
    membership, workspace = found
    # The login's methods as the server knows them now (a factor enrolled since the token
    # was issued counts at once); the token's own ``amr`` claim is informational.
    return build_principal(
        PrincipalKind.TOKEN, user, membership, workspace, auth_session, amr_of(auth_session)
    )


def _from_cookie(
    request: Request,
    session: Session,
    runtime: Runtime,
    cookie: str,
    csrf_form_token: str | None,
) -> Principal:
    repo = AuthRepository(session)
    auth_session = repo.auth_session_by_secret(runtime.tokens.digest(SESSION_PURPOSE, cookie))
    if auth_session is None or not is_live(runtime, auth_session):
        raise _unauthorized("The session has ended; sign in again.")
    if request.method not in SAFE_METHODS:
        _check_csrf(request, session, runtime, cookie, csrf_form_token)
    user = repo.user(auth_session.user_id)
    found = repo.membership(auth_session.user_id, auth_session.workspace_id)
    if user is None or not user.is_active or found is None:
        raise _unauthorized("The session has ended; sign in again.")
    touch(auth_session)
    membership, workspace = found
    return build_principal(
        PrincipalKind.SESSION, user, membership, workspace, auth_session, amr_of(auth_session)
    )


def _same_origin(request: Request, runtime: Runtime, origin: str) -> bool:
    allowed = set(runtime.settings.cors_origins)
    if runtime.settings.public_url:
        parts = urlsplit(runtime.settings.public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    host = request.headers.get("host")
    if host:
        allowed.add(f"{request.url.scheme}://{host}")
    return origin in allowed


def _check_csrf(
    request: Request, session: Session, runtime: Runtime, cookie: str, form_token: str | None
) -> None:
    """A cookie-authenticated state change needs our Origin (when sent) and the session's
    synchronizer token, from the X-CSRF-Token header (HTMX) or the form's csrf_token.
    """
    origin = request.headers.get("origin")
    if origin is not None and not _same_origin(request, runtime, origin):
        raise _csrf_refused(request, session, runtime, "This request came from another site.")
    presented = request.headers.get(CSRF_HEADER) or form_token
    expected = csrf_token_for(runtime, cookie)
    # Bytes, so a token with non-ASCII characters is a mismatch, not an error.
    if not presented or not hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode()
    ):
        raise _csrf_refused(
            request, session, runtime, "A state-changing request needs this session's CSRF token."
        )


def _csrf_refused(request: Request, session: Session, runtime: Runtime, detail: str) -> CsrfFailed:
    client_ip = request.client.host if request.client else None
    runtime.audit.record(
        session,
        AuditEventType.AUTH_CSRF_FAILED,
        Actor.anonymous(),
        result=AuditResult.DENIED,
        context={"method": request.method, "reason": detail},
        ip=client_ip,
    )
    runtime.ip_guard.note_failure(session, client_ip, FailureKind.CSRF)
    return CsrfFailed(detail, keep_changes=True)
