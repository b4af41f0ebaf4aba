"""Security keys and passkeys (WebAuthn) as a second factor: the caller's own keys under
``/api/v1/me/mfa/webauthn``, the sign-in step under ``/api/v1/auth/mfa/webauthn``, and
re-authentication with a key under ``/api/v1/auth/reauth/webauthn``.

Registering and removing a key needs a recent re-authentication; registering stays open
to a member whose workspace demands MFA they do not have yet.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at run time.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from plexus.auth import account, webauthn
from plexus.auth.endpoints import client_info, login_response, reauth_response
from plexus.auth.principal import Principal
from plexus.auth.schemas import (
    PASSWORD_MAX,
    MfaChallengeResponse,
    ReauthResponse,
    SessionStarted,
    TokenResponse,
)
from plexus.auth.service import session_from_cookie
from plexus.auth.sessions import SESSION_COOKIE
from plexus.authz.policy import Authenticated, Public
from plexus.deps import RuntimeDep, SessionDep
from plexus.models.webauthn import WebAuthnCredential

router = APIRouter(tags=["mfa"])

#: Listing one's own keys, needed to enrol; no second factor required yet.
Viewer = Annotated[Principal, Depends(Authenticated(mfa_exempt=True))]
#: Registering: a fresh proof of identity, no second factor yet.
Enroller = Annotated[Principal, Depends(Authenticated(reauth=True, mfa_exempt=True))]
#: Removing a live second factor: a fresh proof of identity.
Owner = Annotated[Principal, Depends(Authenticated(reauth=True))]
#: A row id: positive and within a signed 64-bit integer, so no database overflows.
CredentialId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterRequest(_Strict):
    #: The ``PublicKeyCredential`` from ``navigator.credentials.create``, as JSON
    #: (``toJSON()``: base64url strings for the binary fields).
    credential: dict[str, Any]
    #: How the user will recognise the key in the list.
    name: str = Field(min_length=1, max_length=64, pattern=r"\S")


class LoginOptionsRequest(_Strict):
    mfa_token: str = Field(min_length=16, max_length=128)


class LoginRequest(_Strict):
    mfa_token: str = Field(min_length=16, max_length=128)
    #: The ``PublicKeyCredential`` from ``navigator.credentials.get``, as JSON.
    credential: dict[str, Any]


class ReauthRequest(_Strict):
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    #: The ``PublicKeyCredential`` from ``navigator.credentials.get``, as JSON.
    credential: dict[str, Any]


class CredentialRead(_Strict):
    id: int
    name: str
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None


def _read(credential: WebAuthnCredential) -> CredentialRead:
    return CredentialRead(
        id=credential.id,
        name=credential.name,
        transports=webauthn.transports_of(credential),
        created_at=credential.created_at,
        last_used_at=credential.last_used_at,
    )


@router.post("/me/mfa/webauthn/register/options")
def registration_options(
    principal: Enroller, session: SessionDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Start registering a security key: options for ``navigator.credentials.create``.

    The challenge in them is good for one response within five minutes.
    """
    return webauthn.registration_options(session, rt, principal)


@router.post("/me/mfa/webauthn/register", status_code=status.HTTP_201_CREATED)
def register(
    body: RegisterRequest, principal: Enroller, session: SessionDep, rt: RuntimeDep
) -> CredentialRead:
    """Finish registering: the authenticator's response to the pending challenge."""
    return _read(webauthn.register(session, rt, principal, body.credential, body.name))


@router.get("/me/mfa/webauthn")
def list_credentials(principal: Viewer, session: SessionDep) -> list[CredentialRead]:
    """The caller's security keys and passkeys (never their key material)."""
    return [_read(c) for c in webauthn.list_credentials(session, principal)]


@router.delete("/me/mfa/webauthn/{credential_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove(
    credential_id: CredentialId,
    principal: Owner,
    session: SessionDep,
    rt: RuntimeDep,
) -> None:
    """Remove one of the caller's security keys; it stops working at once."""
    webauthn.remove(session, rt, principal, credential_id)


@router.post("/auth/mfa/webauthn/options", dependencies=[Depends(Public("mfa"))])
def login_options(body: LoginOptionsRequest, session: SessionDep, rt: RuntimeDep) -> dict[str, Any]:
    """The second step of a sign-in with a security key, part one: options for
    ``navigator.credentials.get`` for the ``mfa_token`` of the password step.
    """
    return webauthn.login_options(session, rt, body.mfa_token)


@router.post("/auth/mfa/webauthn", dependencies=[Depends(Public("mfa"))])
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, rt: RuntimeDep
) -> TokenResponse | MfaChallengeResponse | SessionStarted:
    """The second step of a sign-in with a security key, part two: its assertion. Answers
    exactly as ``POST /api/v1/auth/mfa`` does.
    """
    previous = session_from_cookie(session, rt, request.cookies.get(SESSION_COOKIE))
    outcome = webauthn.complete_login(
        session,
        rt,
        mfa_token=body.mfa_token,
        credential=body.credential,
        client=client_info(request),
        previous=previous,
    )
    return login_response(outcome, response)


@router.post("/auth/reauth/webauthn/options")
def reauth_options(
    principal: Annotated[Principal, Depends(Authenticated(rate="login", mfa_exempt=True))],
    session: SessionDep,
    rt: RuntimeDep,
) -> dict[str, Any]:
    """Re-authentication with a security key, part one: options for
    ``navigator.credentials.get`` over the caller's own keys.
    """
    return webauthn.reauth_options(session, rt, principal)


@router.post("/auth/reauth/webauthn")
def reauth(  # noqa: PLR0913, PLR0917 - FastAPI injects each part of the request
    body: ReauthRequest,
    principal: Annotated[Principal, Depends(Authenticated(rate="login", mfa_exempt=True))],
    request: Request,
    response: Response,
    session: SessionDep,
    rt: RuntimeDep,
) -> ReauthResponse:
    """Re-authentication with a security key, part two: the password and the assertion.
    Answers exactly as ``POST /api/v1/auth/reauth`` does.
    """
    web = account.reauthenticate_with_key(
        session,
        rt,
        principal,
        password=body.password,
        credential=body.credential,
        client=client_info(request),
    )
    return reauth_response(web, response)
