"""Workspaces, members, invitations (``/api/v1/workspaces``, ``/api/v1/invitations``) and
open sign-up (``/api/v1/auth/signup``). Each route declares its policy and calls a service.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, status

from plexus.accounts.service import email_of
from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission, Role
from plexus.authz.policy import Allow, Authenticated, Public
from plexus.deps import RuntimeDep, SessionDep
from plexus.models.identity import Invitation, Workspace
from plexus.runtime import Runtime
from plexus.workspaces import invitations, service
from plexus.workspaces.schemas import (
    InvitationAccept,
    InvitationAccepted,
    InvitationAcceptExisting,
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    MemberRead,
    MemberUpdate,
    MyWorkspace,
    SignupAccepted,
    SignupRequest,
    WorkspaceRead,
    WorkspaceUpdate,
)

router = APIRouter(tags=["workspaces"])

#: Ids are 64-bit; a larger number is a 422, not a database error.
ID_MAX: Final = 2**63 - 1
WorkspaceId = Annotated[int, Path(ge=1, le=ID_MAX)]
UserId = Annotated[int, Path(ge=1, le=ID_MAX)]
InvitationId = Annotated[int, Path(ge=1, le=ID_MAX)]
SIGNUP_NEUTRAL: Final = (
    "If this address can be used, the account and its workspace now exist: sign in to "
    "continue. If it already had an account, sign in with that one."
)


def _workspace(row: Workspace) -> WorkspaceRead:
    return WorkspaceRead.model_validate(row, from_attributes=True)


def _member(member: service.Member, runtime: Runtime) -> MemberRead:
    return MemberRead(
        user_id=member.user.id,
        email=email_of(runtime, member.user),
        display_name=member.user.display_name,
        role=Role(member.membership.role),
        joined_at=member.membership.created_at,
    )


def _invitation(row: Invitation, runtime: Runtime) -> InvitationRead:
    return InvitationRead(
        id=row.id,
        email=invitations.invitation_email(runtime, row),
        role=Role(row.role),
        invited_by=row.invited_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


# Workspaces ------------------------------------------------------------------------------


@router.get("/workspaces")
def list_workspaces(
    session: SessionDep, principal: Annotated[Principal, Depends(Authenticated())]
) -> list[MyWorkspace]:
    """The workspaces the caller belongs to."""
    return [
        MyWorkspace(
            id=workspace.id,
            name=workspace.name,
            role=Role(membership.role),
            current=workspace.id == principal.workspace_id,
        )
        for membership, workspace in service.my_workspaces(session, principal)
    ]


@router.get("/workspaces/{workspace_id}")
def read_workspace(
    workspace_id: WorkspaceId,
    session: SessionDep,
    principal: Annotated[Principal, Depends(Allow(Permission.WORKSPACE_READ))],
) -> WorkspaceRead:
    return _workspace(service.get_workspace(session, principal, workspace_id))


@router.patch("/workspaces/{workspace_id}")
def update_workspace(
    workspace_id: WorkspaceId,
    body: WorkspaceUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.WORKSPACE_UPDATE, reauth=True))],
) -> WorkspaceRead:
    """Rename the workspace, set its MFA policy or whether content needs approval (needs a
    recent sign-in).
    """
    workspace = service.update_workspace(
        session,
        runtime,
        principal,
        workspace_id,
        name=body.name,
        mfa_policy=body.mfa_policy,
        require_approval=body.require_approval,
    )
    return _workspace(workspace)


# Members ---------------------------------------------------------------------------------


@router.get("/workspaces/{workspace_id}/members")
def list_members(
    workspace_id: WorkspaceId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_READ))],
) -> list[MemberRead]:
    members = service.list_members(session, principal, workspace_id)
    return [_member(m, runtime) for m in members]


@router.get("/workspaces/{workspace_id}/members/{user_id}")
def read_member(
    workspace_id: WorkspaceId,
    user_id: UserId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_READ))],
) -> MemberRead:
    return _member(service.get_member(session, principal, workspace_id, user_id), runtime)


@router.patch("/workspaces/{workspace_id}/members/{user_id}")
def change_member_role(
    workspace_id: WorkspaceId,
    user_id: UserId,
    body: MemberUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_UPDATE))],
) -> MemberRead:
    """Change a member's role; their current access tokens stop working at once."""
    member = service.change_role(session, runtime, principal, workspace_id, user_id, body.role)
    return _member(member, runtime)


@router.delete("/workspaces/{workspace_id}/members/{user_id}", status_code=204)
def remove_member(
    workspace_id: WorkspaceId,
    user_id: UserId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_REMOVE))],
) -> None:
    """Remove a member; their sessions, tokens and API keys here die in the same request."""
    service.remove_member(session, runtime, principal, workspace_id, user_id)


# Invitations -----------------------------------------------------------------------------


@router.post("/invitations", status_code=status.HTTP_201_CREATED)
def create_invitation(
    body: InvitationCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_INVITE, rate="invitation"))],
) -> InvitationCreated:
    """Invite an address into the caller's workspace. The token is shown only here."""
    row, token = invitations.create_invitation(
        session,
        runtime,
        principal,
        email=body.email,
        role=body.role,
        ttl=timedelta(days=body.expires_in_days),
    )
    return InvitationCreated(**_invitation(row, runtime).model_dump(), token=token)


@router.get("/invitations")
def list_invitations(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_INVITE))],
) -> list[InvitationRead]:
    """The caller's workspace's invitations that are still pending."""
    pending = invitations.pending_invitations(session, principal)
    return [_invitation(row, runtime) for row in pending]


@router.delete("/invitations/{invitation_id}", status_code=204)
def revoke_invitation(
    invitation_id: InvitationId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Allow(Permission.MEMBER_INVITE))],
) -> None:
    invitations.revoke_invitation(session, runtime, principal, invitation_id)


@router.post(
    "/invitations/accept",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(Public(rate="invitation"))],
)
def accept_invitation(
    body: InvitationAccept, session: SessionDep, runtime: RuntimeDep
) -> InvitationAccepted:
    """Create the invited account and join the workspace (then sign in as usual)."""
    accepted = invitations.accept_as_new_user(
        session,
        runtime,
        token=body.token.get_secret_value(),
        display_name=body.display_name,
        password=body.password.get_secret_value(),
    )
    return InvitationAccepted(
        workspace_id=accepted.workspace_id, user_id=accepted.user_id, role=accepted.role
    )


@router.post("/invitations/accept-existing", status_code=status.HTTP_201_CREATED)
def accept_invitation_existing(
    body: InvitationAcceptExisting,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Authenticated(rate="invitation"))],
) -> InvitationAccepted:
    """Join the inviting workspace as the signed-in account the invitation was sent to."""
    accepted = invitations.accept_as_existing_user(
        session, runtime, principal, token=body.token.get_secret_value()
    )
    return InvitationAccepted(
        workspace_id=accepted.workspace_id, user_id=accepted.user_id, role=accepted.role
    )


# Open sign-up ----------------------------------------------------------------------------


@router.post(
    "/auth/signup",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(Public(rate="login"))],
    responses={404: {"description": "Open sign-up is off (the default)."}},
)
def signup(body: SignupRequest, session: SessionDep, runtime: RuntimeDep) -> SignupAccepted:
    """Create an account and its workspace when open sign-up is on (``PLEXUS_SIGNUP_OPEN``).

    The answer is the same whether or not the address already had an account.
    """
    service.sign_up(
        session,
        runtime,
        email=body.email,
        display_name=body.display_name,
        password=body.password.get_secret_value(),
        workspace_name=body.workspace_name,
    )
    return SignupAccepted(detail=SIGNUP_NEUTRAL)
