"""Request and response bodies of ``/api/v1/security/ip-blocks`` and ``/ip-allows``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from plexus.security.ipguard import MAX_BLOCK_MINUTES, MAX_REASON_LENGTH

if TYPE_CHECKING:
    from plexus.models.identity import IpRule

#: An address or CIDR network; whether it is a valid one is the service's check (422).
NetworkText = Annotated[str, StringConstraints(min_length=1, max_length=49)]
#: Printable text without control characters (reasons end up in lists, logs and audit).
Reason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    ),
]


class IpBlockCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: An IPv4 or IPv6 address or CIDR network, host bits clear ("203.0.113.0/24").
    network: NetworkText
    reason: Reason
    #: How long the block lasts; None: until an administrator lifts it.
    minutes: int | None = Field(default=None, ge=1, le=MAX_BLOCK_MINUTES)


class IpAllowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    network: NetworkText
    reason: Reason


class IpRuleRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    network: str
    #: "block" or "allow".
    kind: str
    #: "manual" (an administrator) or "auto" (the IP guard).
    source: str
    reason: str
    #: For automatic blocks: how many earlier automatic blocks the network had.
    level: int
    created_at: datetime
    #: None: in force until lifted.
    expires_at: datetime | None
    #: The administrator who made it (None: the system or the command line).
    created_by: int | None
    #: Requests refused under this rule so far.
    blocked_requests: int

    @classmethod
    def of(cls, rule: IpRule, pending: int = 0) -> Self:
        return cls(
            id=rule.id,
            network=rule.network,
            kind=rule.kind,
            source=rule.source,
            reason=rule.reason,
            level=rule.level,
            created_at=rule.created_at,
            expires_at=rule.expires_at,
            created_by=rule.created_by,
            blocked_requests=rule.blocked_requests + pending,
        )


class IpRuleList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[IpRuleRead]
