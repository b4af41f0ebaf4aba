"""Request and response bodies of ``/api/v1/connections`` and ``/api/v1/providers``.

No response ever carries a token, key, secret or webhook URL: only what a connection is
(provider, account, status) and what a provider can do.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from plexus.models.connections import Connection
from plexus.providers.base import Provider

FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
FieldValue = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    provider: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    #: The provider's ``connect_fields`` (GET /api/v1/providers lists them).
    fields: dict[FieldName, FieldValue] = Field(default_factory=dict, max_length=20)
    #: Reconnect this existing connection instead of creating one.
    reconnect_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            msg = "the name must be printable text"
            raise ValueError(msg)
        return value


class ConnectionRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    provider: str
    name: str
    status: Literal["healthy", "expiring", "needs_reauth", "rate_limited"]
    account_id: str
    display_name: str
    account_url: str | None
    params: dict[str, str]
    expires_at: datetime | None
    refreshable: bool
    last_refreshed_at: datetime | None
    last_checked_at: datetime | None
    rate_limited_until: datetime | None
    last_error: str | None
    created_at: datetime

    @classmethod
    def of(cls, connection: Connection, status: str) -> ConnectionRead:
        return cls(
            id=connection.id,
            provider=connection.provider,
            name=connection.name,
            status=status,
            account_id=connection.external_id,
            display_name=connection.display_name,
            account_url=connection.account_url,
            params=json.loads(connection.params or "{}"),
            expires_at=connection.expires_at,
            refreshable=connection.can_refresh,
            last_refreshed_at=connection.last_refreshed_at,
            last_checked_at=connection.last_checked_at,
            rate_limited_until=connection.rate_limited_until,
            last_error=connection.last_error,
            created_at=connection.created_at,
        )


class ConnectionList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ConnectionRead]


class AuthorizationRequired(BaseModel):
    """The user must visit ``authorization_url`` to finish connecting (OAuth2)."""

    model_config = ConfigDict(extra="forbid")
    authorization_url: str
    expires_at: datetime


class ConnectFieldRead(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    label: str
    secret: bool
    required: bool
    help: str


class ProviderRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    display_name: str
    auth_kind: str
    configured: bool
    scopes: list[str]
    connect_fields: list[ConnectFieldRead]
    capabilities: dict[str, Any]

    @classmethod
    def of(cls, provider: Provider) -> ProviderRead:
        cls_ = type(provider)
        return cls(
            name=cls_.name,
            display_name=cls_.display_name,
            auth_kind=cls_.auth_kind.value,
            configured=provider.is_configured(),
            scopes=list(cls_.oauth.scopes) if cls_.oauth else [],
            connect_fields=[
                ConnectFieldRead(
                    name=f.name, label=f.label, secret=f.secret, required=f.required, help=f.help
                )
                for f in cls_.connect_fields
            ],
            capabilities=cls_.capabilities.as_dict(),
        )


class ProviderList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ProviderRead]
