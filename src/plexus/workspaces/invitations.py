"""Invitations (R2, ASVS V6.4.1, V2.3.4): single-use, expiring tokens that add a member.

A token carries 256 random bits and is shown once, to the inviter; the database keeps only
its HMAC (``runtime.tokens.digest("invitation", token)``). Accepting it is one conditional
UPDATE (still pending at this instant → accepted), so of any number of parallel
acceptances exactly one succeeds. An unknown, expired, used or revoked token gets one and
the same answer. Never commits.

The invited address is stored sealed (associated data ``invitations:email:<id>``) with its
blind index, the same one accounts use, so "already a member?" and "already invited?" are
answered without decrypting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from plexus.accounts.service import (
    create_user,
    email_index,
    find_user,
    get_user,
    normalize_email,
)
from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.authz.permissions import Role
from plexus.errors import BadRequest, Conflict, NotFound, ValidationFailed
from plexus.kit.tokens import random_token
from plexus.models.base import utcnow
from plexus.models.identity import Invitation, Membership
from plexus.vault_columns import INVITATION_EMAIL
from plexus.workspaces.repository import DirectoryRepository, WorkspaceRepository
from plexus.workspaces.service import check_role_change

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal
    from plexus.runtime import Runtime

INVITATION_PURPOSE: Final = "invitation"
DEFAULT_TTL: Final = timedelta(days=7)
MAX_TTL: Final = timedelta(days=30)
#: 32 bytes = 256 bits from the OS CSPRNG (ASVS asks for at least 128).
TOKEN_BYTES: Final = 32


class InvalidInvitation(BadRequest):
    """The one answer for an unknown, expired, used or revoked invitation token."""

    code, title = "invalid-invitation", "Invalid invitation"


class AccountExists(Conflict):
    code, title = "account-exists", "Sign in to accept"


#: A new invitation's sealed address before its INSERT gives it the id the seal names.
_NOT_YET_SEALED: Final = b""
_INVALID: Final = "This invitation is not valid: it may have expired, been used or been revoked."


@dataclass(frozen=True, slots=True)
class Accepted:
    workspace_id: int
    user_id: int
    role: Role


def invitation_email(runtime: Runtime, invitation: Invitation) -> str:
    """The invited address, opened from its sealed column."""
    context = INVITATION_EMAIL.context(invitation.id)
    return runtime.secretbox.open(invitation.email_sealed, context).decode("utf-8")


def create_invitation(  # noqa: PLR0913 - who, and the invitation's parts
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    email: str,
    role: Role,
    ttl: timedelta = DEFAULT_TTL,
) -> tuple[Invitation, str]:
    """Invite ``email`` into the caller's workspace with ``role`` (at most the caller's own).

    Returns the invitation and its token, which is never available again.
    """
    check_role_change(principal.role, None, role)
    if not timedelta(hours=1) <= ttl <= MAX_TTL:
        raise ValidationFailed("An invitation lasts between one hour and 30 days.")
    address = normalize_email(email)
    index = email_index(runtime, address)
    repo = WorkspaceRepository(session, principal.workspace_id)
    now = utcnow()
    if repo.is_member_email(index):
        raise Conflict("This address already belongs to a member of this workspace.")
    if repo.pending_invitation_for(index, now) is not None:
        raise Conflict("This address already has a pending invitation; revoke it first.")
    token = random_token(TOKEN_BYTES)
    invitation = Invitation(
        email_index=index,
        email_sealed=_NOT_YET_SEALED,
        role=role.value,
        token_hash=runtime.tokens.digest(INVITATION_PURPOSE, token),
        invited_by=principal.user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    repo.add_invitation(invitation)
    invitation.email_sealed = runtime.secretbox.seal(
        address.encode("utf-8"), INVITATION_EMAIL.context(invitation.id)
    )
    session.flush()
    runtime.audit.record(
        session,
        AuditEventType.INVITATION_INVITATION_CREATED,
        principal.actor,
        target=Target("invitation", str(invitation.id)),
        workspace_id=principal.workspace_id,
        context={"role": role.value, "expires_at": invitation.expires_at.isoformat()},
    )
    return invitation, token


def pending_invitations(session: Session, principal: Principal) -> Sequence[Invitation]:
    return WorkspaceRepository(session, principal.workspace_id).pending_invitations(utcnow())


def revoke_invitation(
    session: Session, runtime: Runtime, principal: Principal, invitation_id: int
) -> None:
    """Revoke a pending invitation of the caller's workspace (404 for any other)."""
    repo = WorkspaceRepository(session, principal.workspace_id)
    invitation = repo.invitation(invitation_id)
    if invitation is None:
        raise NotFound("No such invitation.")
    check_role_change(principal.role, None, Role(invitation.role))
    if not repo.revoke_invitation(invitation.id, utcnow()):
        raise Conflict("This invitation was already accepted or revoked.")
    runtime.audit.record(
        session,
        AuditEventType.INVITATION_INVITATION_REVOKED,
        principal.actor,
        target=Target("invitation", str(invitation.id)),
        workspace_id=principal.workspace_id,
        context={"role": invitation.role},
    )


def _refuse(
    session: Session, runtime: Runtime, invitation: Invitation | None, actor: Actor, reason: str
) -> InvalidInvitation:
    """Audit a refused acceptance (kept although the request fails) and return the error."""
    runtime.audit.record(
        session,
        AuditEventType.INVITATION_INVITATION_ACCEPTED,
        actor,
        target=Target("invitation", str(invitation.id)) if invitation is not None else None,
        result=AuditResult.FAILURE,
        workspace_id=invitation.workspace_id if invitation is not None else None,
        context={"reason": reason},
    )
    return InvalidInvitation(_INVALID, keep_changes=True)


def _usable(session: Session, runtime: Runtime, token: str, actor: Actor) -> Invitation:
    invitation = DirectoryRepository(session).invitation_by_token(
        runtime.tokens.digest(INVITATION_PURPOSE, token)
    )
    if invitation is None:
        raise _refuse(session, runtime, None, actor, "unknown")
    if invitation.revoked_at is not None:
        raise _refuse(session, runtime, invitation, actor, "revoked")
    if invitation.accepted_at is not None:
        raise _refuse(session, runtime, invitation, actor, "used")
    if invitation.expires_at <= utcnow():
        raise _refuse(session, runtime, invitation, actor, "expired")
    return invitation


def _claim(session: Session, runtime: Runtime, invitation: Invitation, actor: Actor) -> None:
    if not DirectoryRepository(session).claim_invitation(invitation.id, utcnow()):
        # Accepted (or revoked) by a parallel request between the lookup and now.
        raise _refuse(session, runtime, invitation, actor, "used")


def _join(
    session: Session, runtime: Runtime, invitation: Invitation, user_id: int, actor: Actor
) -> Accepted:
    role = Role(invitation.role)
    WorkspaceRepository(session, invitation.workspace_id).add_membership(
        Membership(user_id=user_id, role=role.value, created_at=utcnow())
    )
    invitation.accepted_by = user_id
    session.flush()
    for event, target in (
        (AuditEventType.INVITATION_INVITATION_ACCEPTED, Target("invitation", str(invitation.id))),
        (AuditEventType.MEMBER_MEMBER_ADDED, Target("user", str(user_id))),
    ):
        runtime.audit.record(
            session,
            event,
            actor,
            target=target,
            workspace_id=invitation.workspace_id,
            context={"role": role.value, "via": "invitation", "invitation": invitation.id},
        )
    return Accepted(invitation.workspace_id, user_id, role)


def accept_as_new_user(
    session: Session, runtime: Runtime, *, token: str, display_name: str, password: str
) -> Accepted:
    """Create the invited account (the password policy applies) and its membership.

    When the invited address already has an account the answer is AccountExists (409):
    that person signs in and calls ``accept_as_existing_user`` instead.
    """
    invitation = _usable(session, runtime, token, Actor.anonymous())
    # Claimed first: a parallel acceptance that committed meanwhile must make this one an
    # invalid invitation, not an "account exists". A refusal below undoes the claim.
    _claim(session, runtime, invitation, Actor.anonymous())
    address = invitation_email(runtime, invitation)
    if find_user(session, runtime, address) is not None:
        raise AccountExists(
            "An account with the invited address exists: sign in as it and accept the "
            "invitation at /api/v1/invitations/accept-existing."
        )
    user = create_user(
        session, runtime, email=address, display_name=display_name, password=password
    )
    return _join(session, runtime, invitation, user.id, Actor("user", str(user.id)))


def accept_as_existing_user(
    session: Session, runtime: Runtime, principal: Principal, *, token: str
) -> Accepted:
    """Join the inviting workspace as the signed-in account the invitation was sent to.

    A token sent to another address gets the same answer as an invalid one.
    """
    actor = principal.actor
    invitation = _usable(session, runtime, token, actor)
    user = get_user(session, principal.user_id)
    if user is None or user.email_index != invitation.email_index:
        raise _refuse(session, runtime, invitation, actor, "other_account")
    _claim(session, runtime, invitation, actor)
    if DirectoryRepository(session).is_member(user.id, invitation.workspace_id):
        # Raised without keep_changes, so the claim above is undone with the request.
        raise Conflict("You are already a member of this workspace.")
    return _join(session, runtime, invitation, user.id, actor)
