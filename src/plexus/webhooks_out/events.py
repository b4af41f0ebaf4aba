"""Which audit events become webhook events, under which names, and what they carry.

A webhook event is derived from an audit event of a workspace (one hook in
``AuditService.record``). Its payload holds ids and the non-secret fields listed in
``PAYLOAD_FIELDS`` only: never a secret, never a content body (a receiver that needs the
text fetches it through the API with its own key).
"""

from __future__ import annotations

from typing import Final

from plexus.audit.events import AuditEventType as A

TEST_EVENT: Final = "webhook.test"

#: Audit event → webhook event name.
FROM_AUDIT: Final[dict[str, str]] = {
    A.CONTENT_ITEM_CREATED: "content.created",
    A.CONTENT_ITEM_UPDATED: "content.updated",
    A.CONTENT_ITEM_SUBMITTED: "content.submitted",
    A.CONTENT_ITEM_APPROVED: "content.approved",
    A.CONTENT_ITEM_RETURNED: "content.returned",
    A.CONTENT_ITEM_ARCHIVED: "content.archived",
    A.CONTENT_ITEM_DELETED: "content.deleted",
    A.PUBLISHING_PUBLICATION_CREATED: "publication.created",
    A.PUBLISHING_PUBLICATION_PUBLISHED: "publication.published",
    A.PUBLISHING_PUBLICATION_FAILED: "publication.failed",
    A.PUBLISHING_PUBLICATION_UNCONFIRMED: "publication.unconfirmed",
    A.PUBLISHING_PUBLICATION_CANCELLED: "publication.cancelled",
    A.PUBLISHING_PUBLICATION_DELETED: "publication.deleted",
    A.CONNECTION_CONNECTION_CREATED: "connection.created",
    A.CONNECTION_CONNECTION_RECONNECTED: "connection.reconnected",
    A.CONNECTION_CONNECTION_DISCONNECTED: "connection.disconnected",
    A.CONNECTION_CONNECTION_NEEDS_REAUTH: "connection.needs_reauth",
    A.API_KEY_KEY_CREATED: "security.api_key_created",
    A.API_KEY_KEY_REVOKED: "security.api_key_revoked",
    A.MEMBER_MEMBER_ADDED: "security.member_added",
    A.MEMBER_MEMBER_REMOVED: "security.member_removed",
    A.MEMBER_ROLE_CHANGED: "security.member_role_changed",
    A.SECURITY_IP_BLOCKED: "security.ip_blocked",
    A.WEBHOOK_ENDPOINT_CREATED: "security.webhook_created",
    A.WEBHOOK_ENDPOINT_DELETED: "security.webhook_deleted",
    A.WEBHOOK_SECRET_ROTATED: "security.webhook_secret_rotated",
}

GROUPS: Final = ("content", "publication", "connection", "security")
#: Every name an endpoint may subscribe to: each event, or a whole group (``security.*``).
SUBSCRIBABLE: Final = frozenset({*FROM_AUDIT.values(), *(f"{group}.*" for group in GROUPS)})

#: Audit context fields copied into ``data`` (ids, states, public URLs; nothing secret).
PAYLOAD_FIELDS: Final = frozenset(
    {
        "content_id",
        "connection_id",
        "publication_id",
        "provider",
        "version",
        "state",
        "remote_id",
        "remote_url",
        "role",
        "status",
    }
)


def subscribed(subscriptions: list[str], event_type: str) -> bool:
    """True if an endpoint subscribed to ``subscriptions`` receives ``event_type``."""
    group = event_type.split(".", 1)[0]
    return event_type in subscriptions or f"{group}.*" in subscriptions
