"""Who is calling: the authenticated principal every protected route receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from plexus.audit.events import Actor
from plexus.models.base import utcnow

if TYPE_CHECKING:
    from plexus.authz.permissions import Permission, Role


class PrincipalKind(StrEnum):
    #: A JWT access token (API clients, the CLI, scripts).
    TOKEN = "token"  # noqa: S105 - a kind of credential, not one
    #: A browser session cookie.
    SESSION = "session"
    #: An API key (service-to-service).
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    user_id: int
    workspace_id: int
    role: Role
    #: What this principal may do now: the role's permissions (an API key: its scopes
    #: intersected with its creator's current role).
    permissions: frozenset[Permission]
    #: Whether a second factor was used for this login.
    mfa: bool
    #: Whether the workspace's policy demands a second factor of this member.
    mfa_required: bool
    is_instance_admin: bool = False
    #: The auth session (web session or refresh family) behind a token or cookie.
    session_id: str | None = None
    api_key_id: int | None = None
    #: When the user last proved who they are (login or re-authentication).
    auth_time: datetime | None = None

    @property
    def actor(self) -> Actor:
        if self.kind is PrincipalKind.API_KEY:
            return Actor("api_key", str(self.api_key_id))
        return Actor("user", str(self.user_id))

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions

    def recently_authenticated(self, window_seconds: int) -> bool:
        """True when the user proved who they are within the last ``window_seconds``.

        API keys never are: sensitive actions need a person present.
        """
        if self.kind is PrincipalKind.API_KEY or self.auth_time is None:
            return False
        return utcnow() - self.auth_time <= timedelta(seconds=window_seconds)

    @property
    def log_label(self) -> str:
        """How the access log names this principal (never a secret)."""
        if self.kind is PrincipalKind.API_KEY:
            return f"api_key:{self.api_key_id}"
        return f"user:{self.user_id}"
