"""Permissions (``"resource:action"``), roles, and the one table that maps one to the other."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Permission(StrEnum):
    WORKSPACE_READ = "workspace:read"
    WORKSPACE_UPDATE = "workspace:update"
    WORKSPACE_DELETE = "workspace:delete"
    MEMBER_READ = "member:read"
    MEMBER_INVITE = "member:invite"
    MEMBER_UPDATE = "member:update"
    MEMBER_REMOVE = "member:remove"
    API_KEY_READ = "api_key:read"
    API_KEY_CREATE = "api_key:create"
    API_KEY_REVOKE = "api_key:revoke"
    CONTENT_READ = "content:read"
    CONTENT_WRITE = "content:write"
    CONTENT_PUBLISH = "content:publish"
    CONTENT_DELETE = "content:delete"
    MEDIA_READ = "media:read"
    MEDIA_WRITE = "media:write"
    CONNECTION_READ = "connection:read"
    CONNECTION_MANAGE = "connection:manage"
    WEBHOOK_READ = "webhook:read"
    WEBHOOK_MANAGE = "webhook:manage"
    SYNC_READ = "sync:read"
    SYNC_MANAGE = "sync:manage"
    AUDIT_READ = "audit:read"
    SECURITY_READ = "security:read"
    PRIVACY_EXPORT = "privacy:export"
    #: Instance-wide powers, held by instance administrators only (never by a role or key).
    INSTANCE_SECURITY = "instance:security"
    INSTANCE_KEYS = "instance:keys"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    CONTRIBUTOR = "contributor"
    VIEWER = "viewer"


#: Higher outranks lower: nobody grants, changes or removes a role above their own.
ROLE_RANK: Final[dict[Role, int]] = {
    Role.VIEWER: 1,
    Role.CONTRIBUTOR: 2,
    Role.EDITOR: 3,
    Role.ADMIN: 4,
    Role.OWNER: 5,
}

P = Permission
_VIEWER = frozenset(
    {
        P.WORKSPACE_READ,
        P.MEMBER_READ,
        P.CONTENT_READ,
        P.MEDIA_READ,
        P.CONNECTION_READ,
        P.WEBHOOK_READ,
        P.SYNC_READ,
    }
)
_CONTRIBUTOR = _VIEWER | {P.CONTENT_WRITE, P.MEDIA_WRITE}
_EDITOR = _CONTRIBUTOR | {P.CONTENT_PUBLISH, P.CONTENT_DELETE, P.SYNC_MANAGE}
_ADMIN = _EDITOR | {
    P.WORKSPACE_UPDATE,
    P.MEMBER_INVITE,
    P.MEMBER_UPDATE,
    P.MEMBER_REMOVE,
    P.API_KEY_READ,
    P.API_KEY_CREATE,
    P.API_KEY_REVOKE,
    P.CONNECTION_MANAGE,
    P.WEBHOOK_MANAGE,
    P.AUDIT_READ,
    P.SECURITY_READ,
    P.PRIVACY_EXPORT,
}
_OWNER = _ADMIN | {P.WORKSPACE_DELETE}

#: The one place a role's powers are defined (docs/security.md prints it as a matrix).
ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.OWNER: frozenset(_OWNER),
    Role.ADMIN: frozenset(_ADMIN),
    Role.EDITOR: frozenset(_EDITOR),
    Role.CONTRIBUTOR: frozenset(_CONTRIBUTOR),
    Role.VIEWER: _VIEWER,
}

INSTANCE_PERMISSIONS: Final = frozenset({P.INSTANCE_SECURITY, P.INSTANCE_KEYS})


def permissions_for(role: Role, *, instance_admin: bool = False) -> frozenset[Permission]:
    granted = ROLE_PERMISSIONS[role]
    return granted | INSTANCE_PERMISSIONS if instance_admin else granted


def outranks_or_equals(actor: Role, other: Role) -> bool:
    return ROLE_RANK[actor] >= ROLE_RANK[other]
