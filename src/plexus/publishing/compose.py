"""What one connection is sent for one content version: its text rendered the platform's
way (from the same Markdown source), the hashtags, and the media.

Everything here is read from the version's snapshot, so a retry or a reconciliation
composes exactly the post the first attempt sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from plexus.content.render import render_plain, render_rich
from plexus.providers.base import MediaItem, Post

if TYPE_CHECKING:
    from collections.abc import Sequence

    from plexus.models.media import Media
    from plexus.providers.base import Capabilities, TextSpan

_HASHTAG: Final = re.compile(r"(?<![\w&])#(\w+)", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Composed:
    """A post's parts before the media bytes are read."""

    text: str
    spans: tuple[TextSpan, ...]
    media_ids: tuple[int, ...]
    hashtags: tuple[str, ...]


def _source(snapshot: dict[str, Any], override: dict[str, Any]) -> str:
    """The Markdown a connection gets: its override, or the content type's own layout."""
    if override.get("text"):
        return str(override["text"])
    body = str(snapshot.get("body") or "")
    fields = snapshot.get("fields") or {}
    kind = snapshot.get("content_type", "post")
    if kind == "quote":
        quote = f"“{fields.get('quote', '')}” — {fields.get('attribution', '')}"
        return f"{quote}\n\n{body}".strip()
    if kind == "team_member":
        role = f", {fields['role']}" if fields.get("role") else ""
        return f"**{fields.get('name', '')}**{role}\n\n{body}".strip()
    return body


def _with_hashtags(text: str, hashtags: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """``text`` with the item's hashtags it does not already carry appended on a line."""
    present = {tag.casefold() for tag in _HASHTAG.findall(text)}
    missing = [tag for tag in hashtags if tag.casefold() not in present]
    every = tuple(dict.fromkeys([*_HASHTAG.findall(text), *missing]))
    if not missing:
        return text, every
    line = " ".join(f"#{tag}" for tag in missing)
    return (f"{text}\n\n{line}" if text else line), every


def compose(snapshot: dict[str, Any], connection_id: int, capabilities: Capabilities) -> Composed:
    override = (snapshot.get("overrides") or {}).get(str(connection_id)) or {}
    markdown = _source(snapshot, override)
    if capabilities.rich_text:
        rendered = render_rich(markdown)
        text, spans = rendered.text, rendered.spans
    else:
        text, spans = render_plain(markdown), ()
    text, hashtags = _with_hashtags(text, snapshot.get("hashtags") or [])
    media_ids = override.get("media_ids")
    if media_ids is None:
        media_ids = snapshot.get("media_ids") or []
    return Composed(text, tuple(spans), tuple(int(m) for m in media_ids), hashtags)


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One media item of a post, as read from its row (the bytes are read later, with no
    transaction open: the storage may be remote).
    """

    sha256: str
    content_type: str
    alt_text: str | None
    #: A signed link, for platforms that fetch media by URL.
    public_url: str | None

    @classmethod
    def of(cls, row: Media, public_url: str | None) -> MediaRef:
        return cls(row.sha256, row.content_type, row.alt_text, public_url)


def post_of(
    composed: Composed, media: Sequence[tuple[MediaRef, bytes]], idempotency_key: str
) -> Post:
    """The post, with each media item's bytes and (for platforms that fetch by URL) its
    signed link.
    """
    items = tuple(
        MediaItem(
            filename=f"{ref.sha256[:16]}.{ref.content_type.rsplit('/', 1)[-1]}",
            content_type=ref.content_type,
            data=data,
            alt_text=ref.alt_text,
            public_url=ref.public_url,
        )
        for ref, data in media
    )
    return Post(
        text=composed.text, media=items, spans=composed.spans, idempotency_key=idempotency_key
    )
