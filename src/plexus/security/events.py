"""Security events: signals for the people who watch over the instance (R26 reads them)."""

from __future__ import annotations

from enum import StrEnum


class SecurityEventKind(StrEnum):
    ACCOUNT_LOCKED = "account_locked"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - an event name
    CREDENTIAL_STUFFING = "credential_stuffing"
    IP_BLOCKED = "ip_blocked"
    CSRF_FAILURE = "csrf_failure"
    MFA_FAILURES = "mfa_failures"
    API_KEY_NEW_NETWORK = "api_key_new_network"
    API_KEY_BURST = "api_key_burst"
    API_KEY_SCOPE_PROBING = "api_key_scope_probing"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    MFA_DISABLED = "mfa_disabled"
    #: A WebAuthn authenticator reported a lower signature counter: it may have been cloned.
    WEBAUTHN_SIGN_COUNT_REGRESSED = "webauthn_sign_count_regressed"
    #: An OAuth callback with a missing, forged, replayed, expired, foreign or
    #: cross-provider ``state`` (CSRF or mix-up attempt, or a stale browser tab).
    OAUTH_STATE_INVALID = "oauth_state_invalid"
    #: A platform refused a connection's refresh token: it needs reconnecting.
    CONNECTION_REAUTH_REQUIRED = "connection_reauth_required"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
