"""All ORM models, one module per table family. Importing this package registers them all."""

from plexus.models.audit import AuditChainHead, AuditEvent
from plexus.models.base import Base
from plexus.models.connections import Connection, Notification, OAuthClientRegistration, OAuthFlow
from plexus.models.content import (
    ContentItem,
    ContentVersion,
    Publication,
    UploadLink,
    UploadSubmission,
)
from plexus.models.identity import (
    ApiKey,
    AuthSession,
    Invitation,
    IpRule,
    LoginChallenge,
    Membership,
    RecoveryCode,
    RefreshToken,
    SecurityEvent,
    SigningKey,
    User,
    Workspace,
)
from plexus.models.media import Media
from plexus.models.webauthn import WebAuthnChallenge, WebAuthnCredential
from plexus.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "ApiKey",
    "AuditChainHead",
    "AuditEvent",
    "AuthSession",
    "Base",
    "Connection",
    "ContentItem",
    "ContentVersion",
    "Invitation",
    "IpRule",
    "LoginChallenge",
    "Media",
    "Membership",
    "Notification",
    "OAuthClientRegistration",
    "OAuthFlow",
    "Publication",
    "RecoveryCode",
    "RefreshToken",
    "SecurityEvent",
    "SigningKey",
    "UploadLink",
    "UploadSubmission",
    "User",
    "WebAuthnChallenge",
    "WebAuthnCredential",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "Workspace",
]
