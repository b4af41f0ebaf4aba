"""A status's length as Mastodon counts it.

Mastodon counts grapheme clusters, with two exceptions: every URL with an ``http`` or
``https`` scheme counts as ``characters_reserved_per_url`` (23 unless the server says
otherwise), however long it really is, and a mention of a remote account
(``@user@example.org``) counts only its local part (``@user``). The content warning counts
toward the same limit. The server has the last word; this count lets Plexus refuse a post
before uploading its media.
"""

from __future__ import annotations

import re
from typing import Final

from plexus.providers.base import TextCounting, text_length

#: A URL as Mastodon's extractor finds one: a scheme, then anything up to white space.
URL_RE: Final = re.compile(r"(?<![\w/.@])https?://[^\s<>\"]+", re.IGNORECASE)
#: Characters that end a sentence rather than a URL when they come last.
_TRAILING: Final = ".,:;!?'*"
#: ``@user@domain`` preceded by neither a word character nor ``/`` or ``=``.
REMOTE_MENTION_RE: Final = re.compile(r"(?<![=/\w])@(\w+(?:[\w.-]*\w)?)@[\w.-]+\w", re.UNICODE)


def _url_end(url: str) -> str:
    """The URL without punctuation that belongs to the sentence around it."""
    while url and (url[-1] in _TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def status_length(text: str, characters_reserved_per_url: int = 23) -> int:
    """The number of characters Mastodon charges ``text`` against its limit."""
    placeholder = "x" * characters_reserved_per_url
    pieces: list[str] = []
    position = 0
    for match in URL_RE.finditer(text):
        url = _url_end(match.group(0))
        if "://" not in url or url.endswith("://"):
            continue
        pieces.extend((text[position : match.start()], placeholder))
        position = match.start() + len(url)
    pieces.append(text[position:])
    countable = REMOTE_MENTION_RE.sub(r"@\1", "".join(pieces))
    return text_length(countable, TextCounting.GRAPHEMES)
