"""Sign-in, tokens, sessions and the caller's own account (``/api/v1/auth``, ``/api/v1/me``)
and the public signing keys (``/.well-known/jwks.json``).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response, status

from plexus.auth import account, service
from plexus.auth.principal import Principal, PrincipalKind
from plexus.auth.schemas import (
    CsrfResponse,
    Jwks,
    LoggedOutEverywhere,
    LoginRequest,
    MembershipRead,
    MeResponse,
    MfaChallengeResponse,
    MfaRequest,
    PasswordChangedResponse,
    PasswordChangeRequest,
    ReauthRequest,
    ReauthResponse,
    RefreshRequest,
    SessionRead,
    SessionStarted,
    TokenResponse,
)
from plexus.auth.sessions import SESSION_COOKIE, WebLogin, csrf_token_for
from plexus.authz.policy import Authenticated, Public
from plexus.deps import RuntimeDep, SessionDep
from plexus.errors import NotFound

router = APIRouter(tags=["auth"])
wellknown = APIRouter(tags=["auth"])

#: Routes about one's own sign-in stay open to a member who still has to enrol MFA.
Own = Annotated[Principal, Depends(Authenticated(mfa_exempt=True))]
CLEAR_SITE_DATA: Final = '"cookies", "storage"'


def client_info(request: Request) -> service.ClientInfo:
    return service.ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def _set_cookie(response: Response, web: WebLogin) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        web.cookie_value,
        max_age=web.max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def login_response(
    outcome: service.LoginOutcome, response: Response
) -> TokenResponse | MfaChallengeResponse | SessionStarted:
    if outcome.mfa_token is not None:
        return MfaChallengeResponse(
            mfa_token=outcome.mfa_token,
            expires_in=outcome.mfa_expires_in,
            methods=list(outcome.mfa_methods),  # type: ignore[arg-type]
        )
    if outcome.web is not None:
        _set_cookie(response, outcome.web)
        return SessionStarted(
            session_id=outcome.web.session_id,
            csrf_token=outcome.web.csrf_token,
            expires_in=outcome.web.max_age,
        )
    tokens = outcome.tokens
    if tokens is None:  # pragma: no cover - LoginOutcome always carries one of the three
        msg = "a login outcome without a result"
        raise RuntimeError(msg)
    return TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


def reauth_response(web: WebLogin | None, response: Response) -> ReauthResponse:
    """The answer to a re-authentication: a browser session gets its rotated cookie and
    new CSRF token.
    """
    if web is not None:
        _set_cookie(response, web)
        return ReauthResponse(csrf_token=web.csrf_token)
    return ReauthResponse()


@router.post("/auth/login", dependencies=[Depends(Public("login"))])
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, rt: RuntimeDep
) -> TokenResponse | MfaChallengeResponse | SessionStarted:
    """Sign in with e-mail and password. Unknown account, wrong password and locked account
    all answer the same 401.
    """
    previous = service.session_from_cookie(session, rt, request.cookies.get(SESSION_COOKIE))
    outcome = service.login(
        session,
        rt,
        email=body.email,
        password=body.password,
        workspace_id=body.workspace_id,
        use_cookie=body.use_cookie,
        client=client_info(request),
        previous=previous,
    )
    return login_response(outcome, response)


@router.post("/auth/mfa", dependencies=[Depends(Public("mfa"))])
def login_mfa(
    body: MfaRequest, request: Request, response: Response, session: SessionDep, rt: RuntimeDep
) -> TokenResponse | MfaChallengeResponse | SessionStarted:
    """The second step of a sign-in: the ``mfa_token`` from the first and a code."""
    previous = service.session_from_cookie(session, rt, request.cookies.get(SESSION_COOKIE))
    outcome = service.complete_mfa(
        session,
        rt,
        mfa_token=body.mfa_token,
        code=body.code,
        client=client_info(request),
        previous=previous,
    )
    return login_response(outcome, response)


@router.post("/auth/refresh", dependencies=[Depends(Public("refresh"))])
def refresh(
    body: RefreshRequest, request: Request, session: SessionDep, rt: RuntimeDep
) -> TokenResponse:
    """Spend a refresh token for a new pair. A token presented twice ends its whole family."""
    pair = service.refresh(session, rt, body.refresh_token, client_info(request))
    return TokenResponse(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(principal: Own, response: Response, session: SessionDep, rt: RuntimeDep) -> None:
    """End this session: its cookie, refresh tokens and access tokens stop working."""
    account.logout(session, rt, principal)
    if principal.kind is PrincipalKind.SESSION:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
        response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA


@router.post("/auth/logout-all")
def logout_all(
    principal: Own, response: Response, session: SessionDep, rt: RuntimeDep
) -> LoggedOutEverywhere:
    """End every session of the caller, on every device, and every access token."""
    ended = account.logout_everywhere(session, rt, principal)
    if principal.kind is PrincipalKind.SESSION:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
        response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return LoggedOutEverywhere(sessions_ended=ended)


@router.post("/auth/reauth")
def reauth(
    body: ReauthRequest,
    principal: Annotated[Principal, Depends(Authenticated(rate="login", mfa_exempt=True))],
    request: Request,
    response: Response,
    session: SessionDep,
    rt: RuntimeDep,
) -> ReauthResponse:
    """Prove who you are again before a sensitive action (valid for the reauth window)."""
    web = account.reauthenticate(
        session, rt, principal, password=body.password, code=body.code, client=client_info(request)
    )
    return reauth_response(web, response)


@router.get("/auth/csrf")
def csrf(principal: Own, request: Request, rt: RuntimeDep) -> CsrfResponse:
    """The CSRF token of the current browser session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if principal.kind is not PrincipalKind.SESSION or not cookie:
        raise NotFound("Only a browser session has a CSRF token.")
    return CsrfResponse(csrf_token=csrf_token_for(rt, cookie))


@router.get("/me")
def me(
    principal: Annotated[Principal, Depends(Authenticated(allow_api_keys=True, mfa_exempt=True))],
    session: SessionDep,
    rt: RuntimeDep,
) -> MeResponse:
    """Who the caller is, in which workspace, with which permissions."""
    view = account.account_view(session, rt, principal)
    return MeResponse(
        id=view.user.id,
        email=view.email,
        display_name=view.user.display_name,
        mfa_enabled=view.mfa_enabled,
        workspace_id=principal.workspace_id,
        role=str(principal.role),
        permissions=sorted(str(p) for p in principal.permissions),
        authenticated_by=str(principal.kind),
        mfa_used=principal.mfa,
        memberships=[
            MembershipRead(workspace_id=w, workspace_name=name, role=role)
            for w, name, role in view.memberships
        ],
    )


@router.get("/me/sessions")
def my_sessions(principal: Own, session: SessionDep) -> list[SessionRead]:
    """The caller's live sessions (browsers and API logins)."""
    return [
        SessionRead(
            id=s.id,
            kind=s.kind,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == principal.session_id,
        )
        for s in account.own_sessions(session, principal)
    ]


@router.delete("/me/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
def end_my_session(session_id: str, principal: Own, session: SessionDep, rt: RuntimeDep) -> None:
    """End one of the caller's sessions (another device, say)."""
    account.end_own_session(session, rt, principal, session_id)


@router.post("/me/password")
def change_password(
    body: PasswordChangeRequest,
    principal: Annotated[Principal, Depends(Authenticated(rate="password"))],
    request: Request,
    response: Response,
    session: SessionDep,
    rt: RuntimeDep,
) -> PasswordChangedResponse:
    """Change the password (the current one is required); every other session ends."""
    changed = account.change_password(
        session,
        rt,
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
        client=client_info(request),
    )
    if changed.web is not None:
        _set_cookie(response, changed.web)
        return PasswordChangedResponse(
            sessions_ended=changed.sessions_ended, csrf_token=changed.web.csrf_token
        )
    return PasswordChangedResponse(
        sessions_ended=changed.sessions_ended,
        access_token=changed.access_token,
        expires_in=changed.expires_in,
    )


@wellknown.get("/.well-known/jwks.json", dependencies=[Depends(Public())])
def jwks(session: SessionDep, rt: RuntimeDep) -> Jwks:
    """The public keys that verify Plexus access tokens."""
    return Jwks.model_validate(rt.keyring.jwks(session))
