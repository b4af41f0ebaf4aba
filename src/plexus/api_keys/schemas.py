"""Request and response bodies of ``/api/v1/api-keys``.

No response carries a key's hash; only the creation and rotation responses carry the key
itself, once.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Final, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

from plexus.api_keys.rules import MAX_ALLOWED_NETWORKS, MAX_GRACE_MINUTES
from plexus.api_keys.service import (
    KeyStatus,
    RotatedKey,
    key_networks,
    key_scopes,
    key_status,
)
from plexus.authz.permissions import Permission
from plexus.models.base import utcnow

if TYPE_CHECKING:
    from plexus.models.identity import ApiKey

#: Unicode categories a name may not contain: controls, format characters (bidirectional
#: overrides, zero-width characters: text that displays as something else), surrogates,
#: and line or paragraph separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _printable(value: str) -> str:
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in value):
        msg = "may not contain control, format or line-separator characters"
        raise ValueError(msg)
    return value


#: Names end up in lists, logs and the audit trail, so they are plain, one-line text.
KeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
    AfterValidator(_printable),
]
NetworkText = Annotated[str, StringConstraints(min_length=1, max_length=49)]


class ApiKeyCreate(BaseModel):
    # Not strict as a whole: JSON carries enums and datetimes as strings. Every field is
    # still of one JSON type only (see _datetime_as_text; str and list never coerce).
    model_config = ConfigDict(extra="forbid")

    name: KeyName
    #: Permissions the key may use: a subset of what you hold; instance powers never.
    scopes: list[Permission] = Field(min_length=1, max_length=len(Permission))
    #: When the key stops working (with a time zone; at most 366 days ahead). None: never.
    expires_at: AwareDatetime | None = None
    #: Addresses or CIDR networks the key may be used from. Empty: anywhere.
    allowed_networks: list[NetworkText] = Field(
        default_factory=list, max_length=MAX_ALLOWED_NETWORKS
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _datetime_as_text(cls, value: object) -> object:
        # A bare number would otherwise be read as a Unix time: refuse it (V15.3.5).
        if value is not None and not isinstance(value, str):
            msg = "must be an ISO 8601 date and time with a time zone, as a string"
            raise ValueError(msg)
        return value


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How long the old key keeps working, in minutes (0: it stops at once).
    grace_minutes: StrictInt = Field(default=60, ge=0, le=MAX_GRACE_MINUTES)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    name: str
    env: str
    #: The first characters of the key, to recognise it by ("plx_live_3fA9xQ").
    display_prefix: str
    scopes: list[Permission]
    allowed_networks: list[str]
    status: KeyStatus
    created_by: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    #: The key that replaced this one in a rotation.
    rotated_to_id: int | None
    last_used_at: datetime | None
    last_used_ip: str | None

    @classmethod
    def of(cls, key: ApiKey) -> Self:
        return cls(
            id=key.id,
            name=key.name,
            env=key.env,
            display_prefix=key.display_prefix,
            scopes=key_scopes(key),
            allowed_networks=key_networks(key),
            status=key_status(key, utcnow()),
            created_by=key.created_by,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            rotated_to_id=key.rotated_to_id,
            last_used_at=key.last_used_at,
            last_used_ip=key.last_used_ip,
        )


class ApiKeyList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ApiKeyRead]


class ApiKeyIssued(ApiKeyRead):
    #: The key itself. Shown this once: store it now; Plexus keeps only a keyed hash.
    key: str

    @classmethod
    def issued(cls, key: ApiKey, plaintext: str) -> Self:
        return cls(**ApiKeyRead.of(key).model_dump(), key=plaintext)


class ApiKeyRotated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The new key (shown once).
    new_key: ApiKeyIssued
    #: The key it replaces, valid until its ``expires_at`` (the end of the grace period).
    previous_key: ApiKeyRead

    @classmethod
    def of(cls, rotated: RotatedKey) -> Self:
        return cls(
            new_key=ApiKeyIssued.issued(rotated.issued.record, rotated.issued.plaintext),
            previous_key=ApiKeyRead.of(rotated.previous),
        )
