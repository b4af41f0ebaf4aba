"""Request and response bodies of sign-in, tokens, sessions and the caller's account."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Passwords are checked exactly as given, up to the policy's 1024 characters; a longer
#: one can never be valid, so it is refused before any hashing work.
PASSWORD_MAX = 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginRequest(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    workspace_id: int | None = Field(default=None, ge=1)
    #: Start a browser session (cookie) instead of returning tokens.
    use_cookie: bool = False


class MfaRequest(Strict):
    mfa_token: str = Field(min_length=16, max_length=128)
    code: str = Field(min_length=6, max_length=32)


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=16, max_length=128)


class ReauthRequest(Strict):
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    code: str | None = Field(default=None, min_length=6, max_length=32)


class PasswordChangeRequest(Strict):
    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class TokenResponse(Strict):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    expires_in: int


class MfaChallengeResponse(Strict):
    mfa_required: Literal[True] = True
    mfa_token: str
    expires_in: int
    #: How the challenge can be answered: "totp" and "recovery_code" at /auth/mfa,
    #: "webauthn" at /auth/mfa/webauthn/options then /auth/mfa/webauthn.
    methods: list[Literal["totp", "recovery_code", "webauthn"]]


class SessionStarted(Strict):
    """A browser session began: the cookie carries the session; the body, its CSRF token."""

    session_id: str
    csrf_token: str
    expires_in: int


class CsrfResponse(Strict):
    csrf_token: str


class ReauthResponse(Strict):
    reauthenticated: Literal[True] = True
    #: New CSRF token when the browser session was rotated.
    csrf_token: str | None = None


class PasswordChangedResponse(Strict):
    sessions_ended: int
    #: A fresh access token for the session that made the change (token sessions).
    access_token: str | None = None
    expires_in: int | None = None
    csrf_token: str | None = None


class LoggedOutEverywhere(Strict):
    sessions_ended: int


class MembershipRead(Strict):
    workspace_id: int
    workspace_name: str
    role: str


class MeResponse(Strict):
    id: int
    email: str
    display_name: str
    mfa_enabled: bool
    workspace_id: int
    role: str
    permissions: list[str]
    authenticated_by: str
    mfa_used: bool
    memberships: list[MembershipRead]


class SessionRead(Strict):
    id: str
    kind: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class JwksKey(Strict):
    kty: str
    crv: str
    alg: str
    use: str
    kid: str
    x: str


class Jwks(Strict):
    keys: list[JwksKey]
