"""Request and response bodies of ``/api/v1/media``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from plexus.kit.text import no_nul
from plexus.models.media import MAX_ALT_TEXT_CHARS

if TYPE_CHECKING:
    from plexus.models.media import Media


class MediaRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    kind: Literal["image", "video"]
    content_type: str
    byte_size: int
    sha256: str
    width: int | None
    height: int | None
    duration_seconds: float | None
    original_filename: str | None
    alt_text: str | None
    created_at: datetime

    @classmethod
    def of(cls, media: Media) -> MediaRead:
        return cls(
            id=media.id,
            kind="video" if media.kind == "video" else "image",
            content_type=media.content_type,
            byte_size=media.byte_size,
            sha256=media.sha256,
            width=media.width,
            height=media.height,
            duration_seconds=media.duration_seconds,
            original_filename=media.original_filename,
            alt_text=media.alt_text,
            created_at=media.created_at,
        )


class MediaList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[MediaRead]


class MediaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: The description read out to people who cannot see the image; null removes it.
    alt_text: Annotated[str, AfterValidator(no_nul)] | None = Field(max_length=MAX_ALT_TEXT_CHARS)
