"""Rich-text facets for ``app.bsky.feed.post``: links, mentions and hashtags.

Bluesky does not parse post text; the client marks ranges of it with facets
(https://docs.bsky.app/docs/advanced-guides/post-richtext). A facet's ``index`` counts
**UTF-8 bytes** of the text (``byteStart`` inclusive, ``byteEnd`` exclusive), not
characters, so an emoji before a link moves the link by four bytes per emoji.

What we recognise, deliberately conservative so that we never mark something the author
did not mean:

- links: ``http://`` and ``https://`` URLs (bare domains stay text), without trailing
  sentence punctuation and without an unbalanced closing parenthesis;
- mentions: ``@handle`` at the start or after white space or ``(`` (so e-mail addresses
  are not mentions), when the handle resolves to a DID; unresolved ones stay text;
- hashtags: ``#tag`` at the start or after white space, without trailing punctuation,
  not only digits (``#1`` is not a tag), at most 64 graphemes (the lexicon's limit),
  stored without the ``#``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import grapheme

from plexus.providers.bluesky.identity import is_handle

if TYPE_CHECKING:
    from collections.abc import Callable

LINK_TYPE: Final = "app.bsky.richtext.facet#link"
MENTION_TYPE: Final = "app.bsky.richtext.facet#mention"
TAG_TYPE: Final = "app.bsky.richtext.facet#tag"
MAX_TAG_GRAPHEMES: Final = 64

_URL = re.compile(r"(?<![\w@/.])https?://[^\s<>\"'`]+", re.IGNORECASE)
_MENTION = re.compile(r"(?:^|(?<=[\s(]))@([a-zA-Z0-9][a-zA-Z0-9.-]*)")
_TAG = re.compile(r"(?:^|(?<=\s))[#\uFF03]([^\s#\uFF03]+)")
_TRAILING = ".,;:!?"
#: Characters that never belong to a hashtag (invisible joiners, the soft hyphen).
_NOT_IN_TAG = frozenset("\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2")


@dataclass(frozen=True, slots=True)
class Facet:
    start: int  # character index in the text
    end: int
    feature: dict[str, str]


def _strip_url(url: str) -> str:
    while url and url[-1] in _TRAILING:
        url = url[:-1]
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1]
    return url


def _links(text: str) -> list[Facet]:
    found = []
    for match in _URL.finditer(text):
        url = _strip_url(match.group(0))
        parts = urlsplit(url)
        if not parts.hostname:
            continue
        found.append(Facet(match.start(), match.start() + len(url), {"uri": url}))
    return found


def _mentions(text: str, resolve: Callable[[str], str | None]) -> list[Facet]:
    found = []
    for match in _MENTION.finditer(text):
        handle = match.group(1).rstrip(".-")
        if not is_handle(handle):
            continue
        did = resolve(handle.lower())
        if did is None:
            continue
        start = match.start()
        found.append(Facet(start, start + 1 + len(handle), {"did": did}))
    return found


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _tags(text: str) -> list[Facet]:
    found = []
    for match in _TAG.finditer(text):
        tag = match.group(1)
        if tag.startswith("\ufe0f"):  # "#️⃣" is the keycap emoji, not a tag
            continue
        cut = next((i for i, c in enumerate(tag) if c in _NOT_IN_TAG), len(tag))
        tag = tag[:cut]
        while tag and _is_punctuation(tag[-1]):
            tag = tag[:-1]
        if not tag or tag.isdigit() or grapheme.length(tag) > MAX_TAG_GRAPHEMES:
            continue
        if all(c.isdigit() or _is_punctuation(c) for c in tag):
            continue
        start = match.start()
        found.append(Facet(start, start + 1 + len(tag), {"tag": tag}))
    return found


def detect_facets(text: str, resolve_handle: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """The facets of ``text`` in the lexicon's form, sorted and never overlapping."""
    candidates = [
        *((f, LINK_TYPE) for f in _links(text)),
        *((f, TAG_TYPE) for f in _tags(text)),
        *((f, MENTION_TYPE) for f in _mentions(text, resolve_handle)),
    ]
    candidates.sort(key=lambda pair: (pair[0].start, -pair[0].end))
    facets: list[dict[str, Any]] = []
    taken_until = -1
    for facet, kind in candidates:
        if facet.start < taken_until:
            continue  # inside an earlier facet (a "#" in a URL, say)
        taken_until = facet.end
        facets.append(
            {
                "index": {
                    "byteStart": len(text[: facet.start].encode("utf-8")),
                    "byteEnd": len(text[: facet.end].encode("utf-8")),
                },
                "features": [{"$type": kind, **facet.feature}],
            }
        )
    return facets
