"""``/api/v1/security/ip-blocks`` and ``/ip-allows`` (R16).

Instance administrators list, add and lift IP blocks and allow entries; every change is
audited.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Request, Response

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow
from plexus.deps import RuntimeDep, SessionDep
from plexus.security.ipguard import RuleKind
from plexus.security.schemas import IpAllowCreate, IpBlockCreate, IpRuleList, IpRuleRead

#: The largest id the databases hold (a bigger one is a 422, never a database error).
MAX_ID: Final = 2**63 - 1

router = APIRouter(prefix="/security", tags=["security"])

Admin = Annotated[Principal, Depends(Allow(Permission.INSTANCE_SECURITY))]
RuleId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _listing(rt: RuntimeDep, session: SessionDep, kind: RuleKind) -> IpRuleList:
    rules = rt.ip_guard.active_rules(session, kind)
    return IpRuleList(items=[IpRuleRead.of(r, rt.ip_guard.pending_refusals(r.id)) for r in rules])


@router.get("/ip-blocks", response_model=IpRuleList)
def list_ip_blocks(_principal: Admin, session: SessionDep, rt: RuntimeDep) -> IpRuleList:
    """Blocks in force (manual and automatic), newest first, with refused-request counts."""
    return _listing(rt, session, RuleKind.BLOCK)


@router.post("/ip-blocks", response_model=IpRuleRead, status_code=201)
def create_ip_block(
    body: IpBlockCreate, principal: Admin, session: SessionDep, rt: RuntimeDep, request: Request
) -> IpRuleRead:
    """Block an address or network, for ``minutes`` or until lifted.

    422 for an invalid network; 409 when it is already blocked, allow-listed, or holds
    your own address.
    """
    rule = rt.ip_guard.block(
        session,
        network=body.network,
        reason=body.reason,
        minutes=body.minutes,
        actor=principal.actor,
        user_id=principal.user_id,
        requester_ip=request.client.host if request.client else None,
    )
    return IpRuleRead.of(rule)


@router.delete("/ip-blocks/{rule_id}", status_code=204, response_class=Response)
def lift_ip_block(
    rule_id: RuleId, principal: Admin, session: SessionDep, rt: RuntimeDep
) -> Response:
    """Lift a block now (404 unless it is in force)."""
    rt.ip_guard.lift(
        session, rule_id, RuleKind.BLOCK, actor=principal.actor, user_id=principal.user_id
    )
    return Response(status_code=204)


@router.get("/ip-allows", response_model=IpRuleList)
def list_ip_allows(_principal: Admin, session: SessionDep, rt: RuntimeDep) -> IpRuleList:
    """Allow entries in force: addresses never blocked, by hand or automatically."""
    return _listing(rt, session, RuleKind.ALLOW)


@router.post("/ip-allows", response_model=IpRuleRead, status_code=201)
def create_ip_allow(
    body: IpAllowCreate, principal: Admin, session: SessionDep, rt: RuntimeDep
) -> IpRuleRead:
    """Allow-list an address or network; blocks inside it are lifted at once."""
    rule = rt.ip_guard.allow(
        session,
        network=body.network,
        reason=body.reason,
        actor=principal.actor,
        user_id=principal.user_id,
    )
    return IpRuleRead.of(rule)


@router.delete("/ip-allows/{rule_id}", status_code=204, response_class=Response)
def remove_ip_allow(
    rule_id: RuleId, principal: Admin, session: SessionDep, rt: RuntimeDep
) -> Response:
    """Remove an allow entry (404 unless it is in force)."""
    rt.ip_guard.lift(
        session, rule_id, RuleKind.ALLOW, actor=principal.actor, user_id=principal.user_id
    )
    return Response(status_code=204)
