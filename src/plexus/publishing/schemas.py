"""Request and response bodies of ``/api/v1/publications`` and the content item's
``preflight`` and ``publish`` actions.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from plexus.publishing import states

if TYPE_CHECKING:
    from plexus.models.content import Publication

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
ZoneName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$")
]
State = Literal[
    "scheduled",
    "queued",
    "publishing",
    "published",
    "failed",
    "unconfirmed",
    "parked",
    "cancelled",
    "deleted",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PreflightBody(Strict):
    connection_ids: list[Id] = Field(min_length=1, max_length=50)


class ProblemRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: int | None
    field: str
    message: str
    code: str


class PreflightRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    problems: list[ProblemRead]


class PublishBody(BaseModel):
    """``scheduled_at`` with an offset is that instant; without one it is wall-clock time
    in ``timezone``. Absent: now. ``valid_only`` publishes to the targets that pass
    preflight when others do not (otherwise nothing is sent while any fails).
    """

    model_config = ConfigDict(extra="forbid")

    connection_ids: list[Id] = Field(min_length=1, max_length=50)
    scheduled_at: datetime | None = None
    timezone: ZoneName = "UTC"
    valid_only: bool = False


class RescheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheduled_at: datetime
    timezone: ZoneName = "UTC"


class RetryBody(Strict):
    #: Needed for an unconfirmed publication: "I checked, the post is not there".
    force: bool = False


class ResolveBody(Strict):
    published: bool
    remote_url: AnyHttpUrl | None = None


class PublicationRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    content_id: int
    version: int
    connection_id: int
    provider: str
    state: State
    scheduled_at: datetime
    #: The same instant in the zone it was scheduled in.
    scheduled_at_local: datetime
    timezone: str
    next_attempt_at: datetime | None
    attempts: int
    remote_id: str | None
    remote_url: str | None
    last_error: str | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, publication: Publication) -> PublicationRead:
        from plexus.publishing.service import in_zone

        waiting = publication.state in {*states.CLAIMABLE, states.UNCONFIRMED}
        return cls(
            id=publication.id,
            content_id=publication.content_id,
            version=publication.version,
            connection_id=publication.connection_id,
            provider=publication.provider,
            state=publication.state,
            scheduled_at=publication.scheduled_at,
            scheduled_at_local=in_zone(publication.scheduled_at, publication.timezone),
            timezone=publication.timezone,
            next_attempt_at=publication.next_attempt_at if waiting else None,
            attempts=publication.attempts,
            remote_id=publication.remote_id,
            remote_url=publication.remote_url,
            last_error=publication.last_error,
            published_at=publication.published_at,
            created_at=publication.created_at,
            updated_at=publication.updated_at,
        )


class PublishRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    publications: list[PublicationRead]
    #: With ``valid_only``: the targets left out, and why.
    problems: list[ProblemRead]


class PublicationList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[PublicationRead]
    total: int
    limit: int
    offset: int
