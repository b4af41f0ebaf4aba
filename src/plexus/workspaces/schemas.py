"""Request and response bodies of workspaces, members, invitations and open sign-up.

Requests refuse unknown fields; responses carry exactly these fields and never a hash.
Names and addresses are length-capped here and checked in full by the services (422).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from plexus.authz.permissions import Role

#: The password policy's maximum; a longer password can never be valid.
PASSWORD_MAX = 1024
EMAIL_MAX = 320
NAME_MAX = 120
#: Invitation tokens are 43 characters; anything far longer is not one.
TOKEN_MAX = 128

MfaPolicy = Literal["none", "admins", "all"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Workspaces ------------------------------------------------------------------------------


class WorkspaceRead(Strict):
    id: int
    name: str
    mfa_policy: MfaPolicy
    #: Content is approved by an editor before it is published.
    require_approval: bool
    created_at: datetime


class MyWorkspace(Strict):
    """One of the caller's memberships; ``current`` marks the one this login acts in."""

    id: int
    name: str
    role: Role
    current: bool


class WorkspaceUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    mfa_policy: MfaPolicy | None = None
    require_approval: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> WorkspaceUpdate:
        if self.name is None and self.mfa_policy is None and self.require_approval is None:
            msg = "give at least one of name, mfa_policy, require_approval"
            raise ValueError(msg)
        return self


# Members ---------------------------------------------------------------------------------


class MemberRead(Strict):
    user_id: int
    email: str
    display_name: str
    role: Role
    joined_at: datetime


class MemberUpdate(Strict):
    role: Role = Field(strict=False)


# Invitations -----------------------------------------------------------------------------


class InvitationCreate(Strict):
    email: str = Field(min_length=3, max_length=EMAIL_MAX)
    role: Role = Field(strict=False)
    expires_in_days: int = Field(default=7, ge=1, le=30)


class InvitationRead(Strict):
    id: int
    email: str
    role: Role
    invited_by: int | None
    created_at: datetime
    expires_at: datetime


class InvitationCreated(InvitationRead):
    """The token is in this response only: it is stored as a keyed hash."""

    token: str


class InvitationAccept(Strict):
    token: SecretStr = Field(min_length=16, max_length=TOKEN_MAX)
    display_name: str = Field(min_length=1, max_length=NAME_MAX)
    password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX)


class InvitationAcceptExisting(Strict):
    token: SecretStr = Field(min_length=16, max_length=TOKEN_MAX)


class InvitationAccepted(Strict):
    workspace_id: int
    user_id: int
    role: Role


# Open sign-up ----------------------------------------------------------------------------


class SignupRequest(Strict):
    email: str = Field(min_length=3, max_length=EMAIL_MAX)
    display_name: str = Field(min_length=1, max_length=NAME_MAX)
    password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX)
    workspace_name: str = Field(min_length=1, max_length=NAME_MAX)


class SignupAccepted(Strict):
    status: Literal["accepted"] = "accepted"
    detail: str
