"""Workspaces and their members (R2, R22): reading and updating a workspace, changing roles,
removing members, and creating a workspace with its first owner. Never commits.

Every function that takes a principal acts in the principal's workspace only: a workspace
or member id from elsewhere is NotFound (404), never PermissionDenied, so nothing confirms
that it exists. Role rules: nobody grants, changes or removes a role above their own; only
owners touch owners; the last owner can be neither demoted nor removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from plexus.accounts.service import EmailTaken, clean_name, create_user, find_user, normalize_email
from plexus.api_keys.service import revoke_keys_of_user
from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.auth.sessions import bump_token_epoch, end_user_sessions
from plexus.authz.permissions import ROLE_PERMISSIONS, Permission, Role, outranks_or_equals
from plexus.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from plexus.models.base import utcnow
from plexus.models.identity import Membership, Workspace
from plexus.workspaces.repository import DirectoryRepository, WorkspaceRepository

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.models.identity import User
    from plexus.runtime import Runtime

#: "none"; "admins": owners and admins need a second factor; "all": every member does.
MFA_POLICIES: Final = ("none", "admins", "all")
_NO_WORKSPACE: Final = "No such workspace."
_NO_MEMBER: Final = "No such member in this workspace."


class LastOwner(Conflict):
    code, title = "last-owner", "A workspace needs an owner"


@dataclass(frozen=True, slots=True)
class Member:
    membership: Membership
    user: User


@dataclass(frozen=True, slots=True)
class Removal:
    sessions_ended: int
    api_keys_revoked: int
    invitations_revoked: int


def policy_requires_mfa(policy: str, role: Role) -> bool:
    if policy == "all":
        return True
    return policy == "admins" and role in (Role.OWNER, Role.ADMIN)


def check_role_change(actor: Role, current: Role | None, new: Role | None) -> None:
    """Raise PermissionDenied unless ``actor`` may move a member from ``current`` to ``new``
    (``current`` None: a new member; ``new`` None: a removal).
    """
    if Role.OWNER in (current, new) and actor is not Role.OWNER:
        raise PermissionDenied("Only an owner can grant, change or remove the owner role.")
    for role in (current, new):
        if role is not None and not outranks_or_equals(actor, role):
            raise PermissionDenied("Nobody can grant, change or remove a role above their own.")


def _scoped(session: Session, principal: Principal, workspace_id: int) -> WorkspaceRepository:
    """The principal's workspace repository, provided ``workspace_id`` names that workspace."""
    repo = WorkspaceRepository(session, principal.workspace_id)
    if repo.workspace(workspace_id) is None:
        raise NotFound(_NO_WORKSPACE)
    return repo


# The workspace -------------------------------------------------------------------------


def create_workspace(
    session: Session, runtime: Runtime, *, name: str, owner: User, actor: Actor
) -> Workspace:
    """A new workspace with ``owner`` as its first owner; both facts audited in its chain."""
    now = utcnow()
    workspace = Workspace(
        name=clean_name(name, field="workspace_name"), mfa_policy="none", created_at=now
    )
    DirectoryRepository(session).add_workspace(workspace)
    membership = Membership(user_id=owner.id, role=Role.OWNER.value, created_at=now)
    WorkspaceRepository(session, workspace.id).add_membership(membership)
    runtime.audit.record(
        session,
        AuditEventType.WORKSPACE_WORKSPACE_CREATED,
        actor,
        target=Target("workspace", str(workspace.id)),
        workspace_id=workspace.id,
        context={"owner": owner.id},
    )
    runtime.audit.record(
        session,
        AuditEventType.MEMBER_MEMBER_ADDED,
        actor,
        target=Target("user", str(owner.id)),
        workspace_id=workspace.id,
        context={"role": Role.OWNER.value, "via": "workspace_created"},
    )
    return workspace


def my_workspaces(session: Session, principal: Principal) -> Sequence[tuple[Membership, Workspace]]:
    """The caller's own memberships, with their workspaces."""
    return DirectoryRepository(session).memberships_of(principal.user_id)


def get_workspace(session: Session, principal: Principal, workspace_id: int) -> Workspace:
    workspace = WorkspaceRepository(session, principal.workspace_id).workspace(workspace_id)
    if workspace is None:
        raise NotFound(_NO_WORKSPACE)
    return workspace


def update_workspace(  # noqa: PLR0913 - who, which, and the settings
    session: Session,
    runtime: Runtime,
    principal: Principal,
    workspace_id: int,
    *,
    name: str | None = None,
    mfa_policy: str | None = None,
    require_approval: bool | None = None,
) -> Workspace:
    """Rename the workspace and/or set its MFA policy; audited with the old and new values.

    Requiring MFA of a role the caller holds needs the caller to have signed in with a
    second factor first, so nobody locks themselves out of their own workspace.
    """
    workspace = get_workspace(session, principal, workspace_id)
    changes: dict[str, list[str]] = {}
    if name is not None:
        cleaned = clean_name(name, field="name")
        if cleaned != workspace.name:
            changes["name"] = [workspace.name, cleaned]
            workspace.name = cleaned
    if mfa_policy is not None and mfa_policy != workspace.mfa_policy:
        if mfa_policy not in MFA_POLICIES:
            raise ValidationFailed(f"The MFA policy is one of {', '.join(MFA_POLICIES)}.")
        if _weaker(mfa_policy, workspace.mfa_policy) and principal.role is not Role.OWNER:
            raise PermissionDenied("Only an owner can lower the workspace's MFA policy.")
        if policy_requires_mfa(mfa_policy, principal.role) and not principal.mfa:
            raise Conflict(
                "This policy would require a second factor of you: enrol one and sign in "
                "with it before requiring it of others."
            )
        changes["mfa_policy"] = [workspace.mfa_policy, mfa_policy]
        workspace.mfa_policy = mfa_policy
    if require_approval is not None and require_approval != workspace.require_approval:
        changes["require_approval"] = [str(workspace.require_approval), str(require_approval)]
        workspace.require_approval = require_approval
    if changes:
        session.flush()
        runtime.audit.record(
            session,
            AuditEventType.WORKSPACE_SETTINGS_UPDATED,
            principal.actor,
            target=Target("workspace", str(workspace.id)),
            workspace_id=workspace.id,
            context={"changes": changes},
        )
    return workspace


def _weaker(new: str, old: str) -> bool:
    """True when policy ``new`` demands a second factor of fewer roles than ``old``."""
    return MFA_POLICIES.index(new) < MFA_POLICIES.index(old)


# Members -------------------------------------------------------------------------------


def list_members(session: Session, principal: Principal, workspace_id: int) -> list[Member]:
    repo = _scoped(session, principal, workspace_id)
    return [Member(membership, user) for membership, user in repo.members()]


def get_member(session: Session, principal: Principal, workspace_id: int, user_id: int) -> Member:
    found = _scoped(session, principal, workspace_id).member(user_id)
    if found is None:
        raise NotFound(_NO_MEMBER)
    return Member(*found)


def change_role(  # noqa: PLR0913, PLR0917 - who, where, whom, what
    session: Session,
    runtime: Runtime,
    principal: Principal,
    workspace_id: int,
    user_id: int,
    role: Role,
) -> Member:
    """Give a member another role. Their access tokens die at once (token epoch), so the
    next request they make is refused and a new sign-in carries only the new role.
    """
    repo = _scoped(session, principal, workspace_id)
    owners = repo.lock_owners()
    found = repo.member(user_id)
    if found is None:
        raise NotFound(_NO_MEMBER)
    membership, user = found
    current = Role(membership.role)
    if current is role:
        return Member(membership, user)
    check_role_change(principal.role, current, role)
    if current is Role.OWNER and len(owners) <= 1:
        raise LastOwner("Make another member an owner before changing the last owner's role.")
    membership.role = role.value
    session.flush()
    bump_token_epoch(session, user)
    # Invitations they sent for roles they no longer may grant (all of them when they may
    # no longer invite) would hand back, through another account, what was taken away.
    outranking = [r.value for r in Role if not outranks_or_equals(role, r)]
    may_invite = Permission.MEMBER_INVITE in ROLE_PERMISSIONS[role]
    revoked = repo.revoke_invitations_from(
        user.id, utcnow(), roles=outranking if may_invite else None
    )
    runtime.audit.record(
        session,
        AuditEventType.MEMBER_ROLE_CHANGED,
        principal.actor,
        target=Target("user", str(user.id)),
        workspace_id=principal.workspace_id,
        context={"from": current.value, "to": role.value, "invitations_revoked": revoked},
    )
    return Member(membership, user)


def remove_member(
    session: Session, runtime: Runtime, principal: Principal, workspace_id: int, user_id: int
) -> Removal:
    """Remove a member and every credential they hold here, in this one transaction: their
    browser sessions and refresh families in this workspace end, every access token of
    theirs dies (token epoch), the API keys they created here and the invitations they sent
    that are still pending are revoked (R22).
    """
    repo = _scoped(session, principal, workspace_id)
    owners = repo.lock_owners()
    found = repo.member(user_id)
    if found is None:
        raise NotFound(_NO_MEMBER)
    membership, user = found
    current = Role(membership.role)
    check_role_change(principal.role, current, None)
    if current is Role.OWNER and len(owners) <= 1:
        raise LastOwner("Make another member an owner before removing the last owner.")
    repo.delete_membership(membership)
    ended = end_user_sessions(
        session, user.id, reason="member_removed", workspace_id=principal.workspace_id
    )
    bump_token_epoch(session, user)
    keys = revoke_keys_of_user(session, user.id, principal.workspace_id, actor=principal.actor)
    invitations = repo.revoke_invitations_from(user.id, utcnow())
    removal = Removal(ended, keys, invitations)
    runtime.audit.record(
        session,
        AuditEventType.MEMBER_MEMBER_REMOVED,
        principal.actor,
        target=Target("user", str(user.id)),
        workspace_id=principal.workspace_id,
        context={
            "role": current.value,
            "sessions_ended": ended,
            "api_keys_revoked": keys,
            "invitations_revoked": invitations,
        },
    )
    return removal


# Open sign-up --------------------------------------------------------------------------


def sign_up(  # noqa: PLR0913 - the fields of the sign-up form
    session: Session,
    runtime: Runtime,
    *,
    email: str,
    display_name: str,
    password: str,
    workspace_name: str,
) -> None:
    """Create an account and its own workspace, when open sign-up is on.

    The caller answers the same whether or not the address already had an account: in that
    case nothing is created and the attempt is audited (``user:account:created``, failure),
    after the same password hashing work, so neither the answer nor its timing tells.
    """
    if not runtime.settings.signup_open:
        raise NotFound
    clean_name(workspace_name, field="workspace_name")
    try:
        user = create_user(
            session, runtime, email=email, display_name=display_name, password=password
        )
    except EmailTaken:
        existing = find_user(session, runtime, normalize_email(email))
        runtime.audit.record(
            session,
            AuditEventType.USER_ACCOUNT_CREATED,
            Actor.anonymous(),
            target=Target("user", str(existing.id)) if existing is not None else None,
            result=AuditResult.FAILURE,
            context={"via": "signup", "reason": "email_taken"},
        )
        return
    create_workspace(
        session, runtime, name=workspace_name, owner=user, actor=Actor("user", str(user.id))
    )
