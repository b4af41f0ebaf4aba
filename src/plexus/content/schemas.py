"""Request and response bodies of ``/api/v1/content``.

Text comes back as it was written (JSON strings are data, not markup); every HTML field
(``body_html``) is rendered from the Markdown through the allow-list sanitiser.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from plexus.kit.text import no_nul
from plexus.models.content import (
    MAX_AUTHOR_CHARS,
    MAX_BODY_CHARS,
    MAX_EXCERPT_CHARS,
    MAX_TITLE_CHARS,
)

if TYPE_CHECKING:
    from plexus.models.content import ContentItem, ContentVersion

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Title = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS, strip_whitespace=True)
]
Body = Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS), AfterValidator(no_nul)]
Excerpt = Annotated[str, StringConstraints(max_length=MAX_EXCERPT_CHARS), AfterValidator(no_nul)]
Author = Annotated[str, StringConstraints(max_length=MAX_AUTHOR_CHARS, strip_whitespace=True)]
#: Letters, digits, spaces, ``-`` and ``_``: never a quote or backslash (see the repository).
Tag = Annotated[str, StringConstraints(pattern=r"^[\w][\w \-]{0,49}$")]
#: Without the ``#``; letters, digits and ``_`` as every platform accepts them.
Hashtag = Annotated[str, StringConstraints(pattern=r"^\w{1,100}$")]
ContentType = Literal["post", "team_member", "quote"]
Status = Literal["draft", "in_review", "approved", "scheduled", "published", "archived"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Override(Strict):
    """What one connection gets instead of the common text and media."""

    text: Body | None = None
    media_ids: list[Id] | None = Field(default=None, max_length=20)


def _printable_line(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        msg = "must be printable text on one line"
        raise ValueError(msg)
    return value


class ContentCreate(Strict):
    content_type: ContentType = "post"
    title: Title
    body: Body = ""
    excerpt: Excerpt | None = None
    author: Author | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=30)
    hashtags: list[Hashtag] = Field(default_factory=list, max_length=60)
    media_ids: list[Id] = Field(default_factory=list, max_length=20)
    fields: dict[str, Any] = Field(default_factory=dict, max_length=20)
    #: Keyed by connection id (as a string: JSON object keys are strings).
    overrides: dict[Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,18}$")], Override] = (
        Field(default_factory=dict, max_length=50)
    )

    @field_validator("title", "author")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _printable_line(value)


class ContentUpdate(Strict):
    """Only the fields given change. ``expected_version``, when given, must be the item's
    current version (a concurrent edit answers 409 instead of being overwritten).
    """

    expected_version: Id | None = None
    title: Title | None = None
    body: Body | None = None
    excerpt: Excerpt | None = None
    author: Author | None = None
    tags: list[Tag] | None = Field(default=None, max_length=30)
    hashtags: list[Hashtag] | None = Field(default=None, max_length=60)
    media_ids: list[Id] | None = Field(default=None, max_length=20)
    fields: dict[str, Any] | None = Field(default=None, max_length=20)
    overrides: (
        dict[Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,18}$")], Override] | None
    ) = Field(default=None, max_length=50)

    @field_validator("title", "author")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _printable_line(value)


class ReturnBody(Strict):
    comment: Annotated[str, StringConstraints(max_length=1000)] | None = None


@lru_cache(maxsize=128)
def _body_html(body: str) -> str:
    """The sanitised rendering, kept for the bodies shown most recently: a list of long
    items is not rendered again on every page view.
    """
    from plexus.content.render import render_html

    return render_html(body)


def _loads(raw: str | None, default: Any) -> Any:
    return json.loads(raw) if raw else default


class ContentRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    content_type: str
    title: str
    body: str
    #: The body rendered from Markdown and sanitised: safe to put in a page as it is.
    body_html: str
    excerpt: str | None
    author: str | None
    tags: list[str]
    hashtags: list[str]
    media_ids: list[int]
    fields: dict[str, Any]
    overrides: dict[str, Any]
    status: Status
    version: int
    approved_version: int | None
    created_by: int | None
    updated_by: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: ContentItem) -> ContentRead:
        return cls(
            id=item.id,
            content_type=item.content_type,
            title=item.title,
            body=item.body,
            body_html=_body_html(item.body),
            excerpt=item.excerpt,
            author=item.author,
            tags=_loads(item.tags, []),
            hashtags=_loads(item.hashtags, []),
            media_ids=_loads(item.media_ids, []),
            fields=_loads(item.fields, {}),
            overrides=_loads(item.overrides, {}),
            status=item.status,
            version=item.version,
            approved_version=item.approved_version,
            created_by=item.created_by,
            updated_by=item.updated_by,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


class ContentList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ContentRead]
    total: int
    limit: int
    offset: int


class VersionRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    created_by: int | None
    created_at: datetime
    content: dict[str, Any]

    @classmethod
    def of(cls, row: ContentVersion) -> VersionRead:
        return cls(
            version=row.version,
            created_by=row.created_by,
            created_at=row.created_at,
            content=json.loads(row.snapshot),
        )


class VersionList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[VersionRead]
