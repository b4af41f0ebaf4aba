"""Content types: a post, a team member's profile, a quote. Each is the same item (title,
Markdown body, media, tags...) with its own extra ``fields``, validated here; there is no
separate code path per type.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
)

from plexus.kit.text import no_nul

Line = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(no_nul),
]
Paragraph = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000, strip_whitespace=True),
    AfterValidator(no_nul),
]
MediaId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PostFields(_Fields):
    """A post has no fields beyond the common ones."""


class TeamMemberFields(_Fields):
    name: Line
    role: Line | None = None
    #: A portrait among the item's media.
    photo_media_id: MediaId | None = None
    links: list[Annotated[HttpUrl, Field()]] = Field(default_factory=list, max_length=10)


class QuoteFields(_Fields):
    quote: Paragraph
    attribution: Line
    source_url: HttpUrl | None = None


CONTENT_TYPES: Final[dict[str, type[_Fields]]] = {
    "post": PostFields,
    "team_member": TeamMemberFields,
    "quote": QuoteFields,
}


class FieldsInvalid(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("the fields do not fit the content type")
        self.errors = errors


def validate_fields(content_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields cleaned for ``content_type`` (JSON-ready); FieldsInvalid lists why not."""
    model = CONTENT_TYPES.get(content_type)
    if model is None:
        raise FieldsInvalid(
            [{"field": "content_type", "message": f"one of {', '.join(CONTENT_TYPES)}"}]
        )
    try:
        cleaned = model.model_validate(fields, strict=False)
    except ValidationError as error:
        raise FieldsInvalid(
            [
                {
                    "field": "fields." + ".".join(str(p) for p in item["loc"]),
                    "message": item["msg"],
                }
                for item in error.errors(include_url=False, include_input=False)
            ]
        ) from None
    result: dict[str, Any] = cleaned.model_dump(mode="json", exclude_none=True)
    return result
