"""Typed audit event names, ``"area:subject:action"``. Later domains add theirs here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

EVENT_NAME_SHAPE: Final = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")


class AuditEventType(StrEnum):
    SYSTEM_SERVICE_STARTED = "system:service:started"
    SYSTEM_SCHEMA_MIGRATED = "system:schema:migrated"
    SYSTEM_VAULT_KEY_ROTATED = "system:vault_key:rotated"
    AUDIT_CHAIN_VERIFIED = "audit:chain:verified"
    AUDIT_CHAIN_BROKEN = "audit:chain:broken"
    # Identity and access
    USER_ACCOUNT_CREATED = "user:account:created"
    WORKSPACE_WORKSPACE_CREATED = "workspace:workspace:created"
    WORKSPACE_SETTINGS_UPDATED = "workspace:settings:updated"
    AUTH_LOGIN_SUCCEEDED = "auth:login:succeeded"
    AUTH_LOGIN_FAILED = "auth:login:failed"
    AUTH_ACCOUNT_LOCKED = "auth:account:locked"
    AUTH_ACCOUNT_UNLOCKED = "auth:account:unlocked"
    AUTH_MFA_SUCCEEDED = "auth:mfa:succeeded"
    AUTH_MFA_FAILED = "auth:mfa:failed"
    AUTH_MFA_ENABLED = "auth:mfa:enabled"
    AUTH_MFA_DISABLED = "auth:mfa:disabled"
    AUTH_RECOVERY_CODE_USED = "auth:recovery_code:used"
    AUTH_RECOVERY_CODES_REGENERATED = "auth:recovery_codes:regenerated"
    AUTH_WEBAUTHN_REGISTERED = "auth:webauthn:registered"
    AUTH_WEBAUTHN_REMOVED = "auth:webauthn:removed"
    AUTH_REAUTH_SUCCEEDED = "auth:reauth:succeeded"
    AUTH_REAUTH_FAILED = "auth:reauth:failed"
    AUTH_TOKEN_REFRESHED = "auth:token:refreshed"  # noqa: S105 - an event name
    AUTH_REFRESH_TOKEN_REUSED = "auth:refresh_token:reused"  # noqa: S105 - an event name
    AUTH_SESSION_ENDED = "auth:session:ended"
    AUTH_SESSIONS_ENDED_ALL = "auth:sessions:ended_all"
    AUTH_PASSWORD_CHANGED = "auth:password:changed"  # noqa: S105 - an event name
    AUTH_CSRF_FAILED = "auth:csrf:failed"
    AUTH_SIGNING_KEY_ROTATED = "auth:signing_key:rotated"
    API_KEY_KEY_CREATED = "api_key:key:created"
    API_KEY_KEY_ROTATED = "api_key:key:rotated"
    API_KEY_KEY_REVOKED = "api_key:key:revoked"
    API_KEY_SCOPE_DENIED = "api_key:scope:denied"
    MEMBER_ROLE_CHANGED = "member:role:changed"
    MEMBER_MEMBER_REMOVED = "member:member:removed"
    MEMBER_MEMBER_ADDED = "member:member:added"
    INVITATION_INVITATION_CREATED = "invitation:invitation:created"
    INVITATION_INVITATION_ACCEPTED = "invitation:invitation:accepted"
    INVITATION_INVITATION_REVOKED = "invitation:invitation:revoked"
    SECURITY_IP_BLOCKED = "security:ip:blocked"
    SECURITY_IP_UNBLOCKED = "security:ip:unblocked"
    SECURITY_IP_ALLOWED = "security:ip:allowed"
    SECURITY_IP_ALLOW_REMOVED = "security:ip:allow_removed"
    SECURITY_RATE_LIMIT_EXCEEDED = "security:rate_limit:exceeded"
    # Platform connections
    CONNECTION_CONNECTION_CREATED = "connection:connection:created"
    CONNECTION_CONNECTION_RECONNECTED = "connection:connection:reconnected"
    CONNECTION_CONNECTION_DISCONNECTED = "connection:connection:disconnected"
    CONNECTION_CONNECTION_CHECKED = "connection:connection:checked"
    CONNECTION_TOKEN_REFRESHED = "connection:token:refreshed"  # noqa: S105 - an event name
    CONNECTION_TOKEN_REVOKED = "connection:token:revoked"  # noqa: S105 - an event name
    CONNECTION_CONNECTION_NEEDS_REAUTH = "connection:connection:needs_reauth"
    CONNECTION_OAUTH_STARTED = "connection:oauth:started"
    CONNECTION_OAUTH_REFUSED = "connection:oauth:refused"
    # Media
    MEDIA_MEDIA_UPLOADED = "media:media:uploaded"
    MEDIA_MEDIA_DELETED = "media:media:deleted"
    # Content
    CONTENT_ITEM_CREATED = "content:item:created"
    CONTENT_ITEM_UPDATED = "content:item:updated"
    CONTENT_ITEM_SUBMITTED = "content:item:submitted"
    CONTENT_ITEM_APPROVED = "content:item:approved"
    CONTENT_ITEM_RETURNED = "content:item:returned"
    CONTENT_ITEM_ARCHIVED = "content:item:archived"
    CONTENT_ITEM_DELETED = "content:item:deleted"
    CONTENT_SETTINGS_UPDATED = "content:settings:updated"
    # Publishing
    PUBLISHING_PUBLICATION_CREATED = "publishing:publication:created"
    PUBLISHING_PUBLICATION_PUBLISHED = "publishing:publication:published"
    PUBLISHING_PUBLICATION_FAILED = "publishing:publication:failed"
    PUBLISHING_PUBLICATION_UNCONFIRMED = "publishing:publication:unconfirmed"
    PUBLISHING_PUBLICATION_RECONCILED = "publishing:publication:reconciled"
    PUBLISHING_PUBLICATION_CANCELLED = "publishing:publication:cancelled"
    PUBLISHING_PUBLICATION_RESCHEDULED = "publishing:publication:rescheduled"
    PUBLISHING_PUBLICATION_RETRIED = "publishing:publication:retried"
    PUBLISHING_PUBLICATION_DELETED = "publishing:publication:deleted"
    # Public upload links
    UPLOAD_LINK_CREATED = "upload:link:created"
    UPLOAD_LINK_REVOKED = "upload:link:revoked"
    UPLOAD_SUBMISSION_RECEIVED = "upload:submission:received"
    UPLOAD_SUBMISSION_ACCEPTED = "upload:submission:accepted"
    UPLOAD_SUBMISSION_REJECTED = "upload:submission:rejected"
    # Outbound webhooks
    WEBHOOK_ENDPOINT_CREATED = "webhook:endpoint:created"
    WEBHOOK_ENDPOINT_UPDATED = "webhook:endpoint:updated"
    WEBHOOK_ENDPOINT_DELETED = "webhook:endpoint:deleted"
    WEBHOOK_ENDPOINT_DISABLED = "webhook:endpoint:disabled"
    WEBHOOK_SECRET_ROTATED = "webhook:secret:rotated"  # noqa: S105 - an event name
    WEBHOOK_DELIVERY_REPLAYED = "webhook:delivery:replayed"


class AuditResult(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a user, an API key, the system itself, or an anonymous client."""

    type: str
    id: str | None = None

    @classmethod
    def system(cls, component: str = "plexus") -> Actor:
        return cls("system", component)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls("anonymous", None)


@dataclass(frozen=True, slots=True)
class Target:
    """What was acted on."""

    type: str
    id: str | None = None
