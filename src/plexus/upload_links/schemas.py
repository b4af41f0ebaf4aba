"""Request and response bodies of ``/api/v1/upload-links`` and ``/api/v1/public/uploads``.

Requests refuse unknown fields. No response carries a token's hash; only the creation
response carries the token itself, once. The public bodies say nothing about the
workspace beyond the label its editor chose.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from plexus.upload_links.service import (
    MAX_LABEL_CHARS,
    MAX_TTL_HOURS,
    MAX_USES,
    LinkState,
    MediaKind,
    SubmissionStatus,
    link_kinds,
    link_state,
    uses_left,
)

if TYPE_CHECKING:
    from plexus.models.content import UploadLink
    from plexus.models.media import Media
    from plexus.upload_links.service import SubmissionView

#: Ids are 64-bit; a larger number is a 422, not a database error.
ID_MAX: Final = 2**63 - 1
#: Controls, format characters (bidirectional overrides, zero-width characters), surrogates
#: and line or paragraph separators: a label is plain, one-line text.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _printable(value: str) -> str:
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in value):
        msg = "may not contain control, format or line-separator characters"
        raise ValueError(msg)
    return value


Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_CHARS),
    AfterValidator(_printable),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Links -----------------------------------------------------------------------------------


class UploadLinkCreate(BaseModel):
    # Not strict as a whole: JSON carries datetimes as strings. Every field is still of
    # one JSON type only (ints are StrictInt, the datetime must be text).
    model_config = ConfigDict(extra="forbid")

    #: The content item the uploads are for (of the caller's workspace).
    content_id: StrictInt = Field(ge=1, le=ID_MAX)
    #: Shown to whoever opens the link: the only thing about the workspace they see.
    label: Label | None = None
    #: How long the link works, in hours; or give ``expires_at`` instead.
    expires_in_hours: StrictInt | None = Field(default=None, ge=1, le=MAX_TTL_HOURS)
    #: When the link stops working (with a time zone; at most 720 hours ahead).
    expires_at: AwareDatetime | None = None
    #: How many uploads the link accepts in all.
    max_uses: StrictInt = Field(ge=1, le=MAX_USES)
    #: What may be uploaded through it.
    allowed_kinds: list[MediaKind] = Field(min_length=1, max_length=2)

    @field_validator("expires_at", mode="before")
    @classmethod
    def _datetime_as_text(cls, value: object) -> object:
        # A bare number would otherwise be read as a Unix time: refuse it (V15.3.5).
        if value is not None and not isinstance(value, str):
            msg = "must be an ISO 8601 date and time with a time zone, as a string"
            raise ValueError(msg)
        return value

    @field_validator("allowed_kinds")
    @classmethod
    def _distinct(cls, value: list[MediaKind]) -> list[MediaKind]:
        if len(set(value)) != len(value):
            msg = "list each kind once"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if (self.expires_in_hours is None) == (self.expires_at is None):
            msg = "give exactly one of expires_in_hours, expires_at"
            raise ValueError(msg)
        return self


class UploadLinkRead(Strict):
    id: int
    content_id: int
    label: str | None
    allowed_kinds: list[MediaKind]
    max_uses: int
    uses: int
    uses_left: int
    #: active, expired, revoked or used_up.
    state: LinkState
    expires_at: datetime
    revoked_at: datetime | None
    created_by: int | None
    created_at: datetime

    @classmethod
    def of(cls, link: UploadLink) -> Self:
        return cls(
            id=link.id,
            content_id=link.content_id,
            label=link.label,
            allowed_kinds=link_kinds(link),
            max_uses=link.max_uses,
            uses=link.uses,
            uses_left=uses_left(link),
            state=link_state(link),
            expires_at=link.expires_at,
            revoked_at=link.revoked_at,
            created_by=link.created_by,
            created_at=link.created_at,
        )


class UploadLinkCreated(UploadLinkRead):
    #: The token. Shown this once: Plexus keeps only a keyed hash of it.
    token: str
    #: The address to hand out (it carries the token).
    url: str


class UploadLinkList(Strict):
    items: list[UploadLinkRead]
    total: int
    limit: int
    offset: int


# The public side ---------------------------------------------------------------------------


class PublicUploadLink(Strict):
    """What anyone holding the link learns: nothing of the workspace but the label."""

    label: str | None
    allowed_kinds: list[MediaKind]
    expires_at: datetime
    uses_left: int


class PublicUploadReceipt(Strict):
    #: Always "received": the upload waits for an editor's review.
    status: Literal["received"]
    uses_left: int


# Submissions -------------------------------------------------------------------------------


class SubmissionMedia(Strict):
    id: int
    kind: MediaKind
    content_type: str
    byte_size: int
    width: int | None
    height: int | None
    duration_seconds: float | None
    original_filename: str | None
    #: ready, or pending_review until the submission is accepted.
    status: str

    @classmethod
    def of(cls, media: Media) -> Self:
        return cls(
            id=media.id,
            kind="video" if media.kind == "video" else "image",
            content_type=media.content_type,
            byte_size=media.byte_size,
            width=media.width,
            height=media.height,
            duration_seconds=media.duration_seconds,
            original_filename=media.original_filename,
            status=media.status,
        )


class SubmissionRead(Strict):
    id: int
    link_id: int
    content_id: int
    #: pending, accepted or rejected.
    status: SubmissionStatus
    submitter_name: str | None
    #: None once a rejection removed the media.
    media: SubmissionMedia | None
    created_at: datetime
    reviewed_by: int | None
    reviewed_at: datetime | None

    @classmethod
    def of(cls, view: SubmissionView) -> Self:
        submission = view.submission
        return cls(
            id=submission.id,
            link_id=submission.link_id,
            content_id=view.content_id,
            status=view.status,
            submitter_name=submission.submitter_name,
            media=SubmissionMedia.of(view.media) if view.media is not None else None,
            created_at=submission.created_at,
            reviewed_by=submission.reviewed_by,
            reviewed_at=submission.reviewed_at,
        )


class SubmissionList(Strict):
    items: list[SubmissionRead]
    total: int
    limit: int
    offset: int
