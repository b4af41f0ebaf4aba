"""A post's formatting (``Post.spans``) in each platform's own form.

``TextSpan`` offsets count code points of ``Post.text``; platforms count otherwise:
Telegram's entities count UTF-16 code units, Bluesky's facets UTF-8 bytes, and Discord
reads Markdown in the text itself. The converters here live with the providers (which may
import nothing of Plexus but ``plexus.providers`` and ``plexus.kit``); ``plexus.content``
re-exports them for previews.

Spans come from Plexus's own Markdown renderer, but each converter still checks them
(``clean_spans``): out-of-range, empty and crossing spans are dropped, and so is a link
whose URL is not http, https or mailto. What is left is only ever formatting: no converter
lets text become markup, a mention or a link the author did not write.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from plexus.providers.base import SpanKind, TextSpan

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: The URL schemes a link may carry, anywhere in Plexus.
SAFE_SCHEMES: Final = frozenset({"http", "https", "mailto"})
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
#: A host name (ASCII: IDNs in punycode) or a bracketed IPv6 address; no user info.
_HOST: Final = rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9a-f:.]+\])"
#: An absolute http(s) URL with a host, or a mailto URL with an address; nothing relative.
_SAFE_URL: Final = re.compile(
    rf"https?://{_HOST}(?::[0-9]{{1,5}})?(?:[/?#]\S*)?|mailto:[^\s/?#@]+@[^\s?#]+(?:\?\S*)?",
    re.IGNORECASE,
)
#: Characters a URL may never hold: ASCII controls, white space and the DEL character.
_UNSAFE_CHARS: Final = re.compile(r"[\x00-\x20\x7f]")
#: What Discord's own URL rule takes as a link in message text (its ``url`` rule).
_DISCORD_BARE_URL: Final = re.compile(r"https?://[^\s<]+[^<.,:;\"')\]\s]", re.IGNORECASE)
#: Characters Discord reads as markup anywhere in a line.
_DISCORD_INLINE: Final = frozenset("\\*_~`|[]<")
#: Line starts Discord reads as a block: quote, heading, subtext, lists ("- ", "1. ").
_DISCORD_LINE_START: Final = re.compile(r"(?m)^([ \t]*)(?:([>#+-])|([0-9]+)([.)]))")
_DISCORD_MASS_MENTION: Final = re.compile(r"@(everyone|here)", re.IGNORECASE)
_ZWSP: Final = "\u200b"
#: URL characters kept as they are in a Discord masked link; the rest is percent-encoded.
_URL_SAFE_CHARS: Final = ":/?#[]@!$&'()*+,;=%~-._"

TELEGRAM_TYPES: Final = {
    SpanKind.BOLD: "bold",
    SpanKind.ITALIC: "italic",
    SpanKind.STRIKE: "strikethrough",
    SpanKind.CODE: "code",
    SpanKind.PRE: "pre",
    SpanKind.LINK: "text_link",
}
BLUESKY_LINK_TYPE: Final = "app.bsky.richtext.facet#link"
#: Kinds that only style text: they may contain and sit inside any other kind (Telegram's
#: rule, and Discord's too), except verbatim code.
_STYLES: Final = frozenset({SpanKind.BOLD, SpanKind.ITALIC, SpanKind.STRIKE})
_VERBATIM: Final = frozenset({SpanKind.CODE, SpanKind.PRE})


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http, https or mailto URL without control characters
    or white space; otherwise None. Relative URLs, ``javascript:`` and the like are refused.
    """
    if not url or _UNSAFE_CHARS.search(url) or not _SAFE_URL.fullmatch(url):
        return None
    return url


# --------------------------------------------------------------------------- checking spans


def clean_spans(text: str, spans: Iterable[TextSpan]) -> tuple[TextSpan, ...]:
    """The spans that can be applied to ``text``: inside it, not empty, links with a safe
    URL, none crossing another (the later of two crossing spans is dropped); sorted outer
    first.
    """
    candidates = sorted(
        (
            s
            for s in spans
            if 0 <= s.start < s.end <= len(text)
            and (s.kind is not SpanKind.LINK or safe_url(s.url) is not None)
        ),
        key=lambda s: (s.start, -s.end),
    )
    kept: list[TextSpan] = []
    seen: set[TextSpan] = set()
    open_ends: list[int] = []  # ends of the kept spans enclosing the current position
    for span in candidates:
        while open_ends and open_ends[-1] <= span.start:
            open_ends.pop()
        if span in seen or (open_ends and span.end > open_ends[-1]):
            continue  # a duplicate, or it would cross the span it starts in
        seen.add(span)
        kept.append(span)
        open_ends.append(span.end)
    return tuple(kept)


def _subtract(span: TextSpan, holes: Sequence[TextSpan], ends: Sequence[int]) -> list[TextSpan]:
    """``span`` with the ranges of ``holes`` cut out; ``holes`` are disjoint and sorted,
    ``ends`` their ends.
    """
    pieces: list[TextSpan] = []
    start = span.start
    for hole in itertools.islice(holes, bisect.bisect_right(ends, span.start), None):
        if hole.start >= span.end:
            break
        if hole.start > start:
            pieces.append(replace(span, start=start, end=hole.start))
        start = max(start, hole.end)
    if start < span.end:
        pieces.append(replace(span, start=start, end=span.end))
    return pieces


def _platform_spans(text: str, spans: Iterable[TextSpan]) -> list[TextSpan]:
    """Spans as Telegram (and Discord) can nest them: code, pre and links never contain
    one another (the outer one is kept), and styles are cut around code and pre.
    """
    cleaned = clean_spans(text, spans)
    hard: list[TextSpan] = []  # disjoint, in order: only the last can contain the next
    # Outer first; of two on the same range, the link wins (its URL is the bigger loss).
    for span in sorted(
        (s for s in cleaned if s.kind not in _STYLES),
        key=lambda s: (s.start, -s.end, s.kind is not SpanKind.LINK),
    ):
        if not hard or span.start >= hard[-1].end:
            hard.append(span)
    verbatim = [s for s in hard if s.kind in _VERBATIM]
    ends = [s.end for s in verbatim]
    styles = [p for s in cleaned if s.kind in _STYLES for p in _subtract(s, verbatim, ends)]
    return sorted([*hard, *styles], key=lambda s: (s.start, -s.end))


class _Offsets:
    """Code point offsets of one text turned into another unit, by a prefix table."""

    def __init__(self, text: str, width: Any) -> None:
        table = [0]
        for char in text:
            table.append(table[-1] + width(char))
        self._table = table

    def __getitem__(self, index: int) -> int:
        return self._table[index]


def _utf16_width(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1  # noqa: PLR2004 - the last code point of the BMP


def _utf8_width(char: str) -> int:
    return len(char.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------- Telegram


def telegram_entities(text: str, spans: Iterable[TextSpan]) -> list[dict[str, Any]]:
    """Telegram Bot API ``MessageEntity`` objects for ``spans``: ``offset`` and ``length``
    in UTF-16 code units, nested only as Telegram allows (styles are cut around code and
    pre; code, pre and links never contain one another).
    """
    units = _Offsets(text, _utf16_width)
    entities: list[dict[str, Any]] = []
    for span in _platform_spans(text, spans):
        offset = units[span.start]
        entity: dict[str, Any] = {
            "type": TELEGRAM_TYPES[span.kind],
            "offset": offset,
            "length": units[span.end] - offset,
        }
        if span.kind is SpanKind.LINK:
            entity["url"] = span.url
        entities.append(entity)
    return entities


# --------------------------------------------------------------------------- Bluesky


def bluesky_link_facets(text: str, spans: Iterable[TextSpan]) -> list[dict[str, Any]]:
    """``app.bsky.richtext.facet`` link facets for the LINK spans, in UTF-8 byte offsets
    (``byteStart`` inclusive, ``byteEnd`` exclusive), sorted and never overlapping.
    """
    offsets = _Offsets(text, _utf8_width)
    links = [s for s in clean_spans(text, spans) if s.kind is SpanKind.LINK]
    facets: list[dict[str, Any]] = []
    taken_until = -1
    for span in links:
        if span.start < taken_until:
            continue
        taken_until = span.end
        facets.append(
            {
                "index": {"byteStart": offsets[span.start], "byteEnd": offsets[span.end]},
                "features": [{"$type": BLUESKY_LINK_TYPE, "uri": span.url}],
            }
        )
    return facets


def merge_facets(
    preferred: Sequence[dict[str, Any]], detected: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``preferred`` facets (from the author's links) with every ``detected`` facet that
    overlaps none of them, sorted by ``byteStart``.
    """

    def bounds(facet: dict[str, Any]) -> tuple[int, int]:
        index = facet["index"]
        return int(index["byteStart"]), int(index["byteEnd"])

    def overlaps(facet: dict[str, Any]) -> bool:
        start, end = bounds(facet)
        return any(start < taken_end and taken_start < end for taken_start, taken_end in taken)

    taken = [bounds(f) for f in preferred]
    kept = [f for f in detected if not overlaps(f)]
    return sorted([*preferred, *kept], key=bounds)


def nfc_with_spans(text: str, spans: Iterable[TextSpan]) -> tuple[str, tuple[TextSpan, ...]]:
    """``text`` in Unicode NFC (as Bluesky stores it) with ``spans`` moved to match: each
    piece between span boundaries is normalised on its own, so no boundary moves inside a
    character.
    """
    cleaned = clean_spans(text, spans)
    cuts = sorted({0, len(text), *(s.start for s in cleaned), *(s.end for s in cleaned)})
    moved: dict[int, int] = {0: 0}
    pieces: list[str] = []
    length = 0
    for begin, end in itertools.pairwise(cuts):
        piece = unicodedata.normalize("NFC", text[begin:end])
        pieces.append(piece)
        length += len(piece)
        moved[end] = length
    shifted = tuple(replace(s, start=moved[s.start], end=moved[s.end]) for s in cleaned)
    return "".join(pieces), tuple(s for s in shifted if s.start < s.end)


# --------------------------------------------------------------------------- Discord


def _discord_escape(text: str, *, line_start: bool) -> str:
    """``text`` with everything Discord would read as markup escaped, bare URLs left as
    Discord's URL rule takes them, and ``@everyone`` / ``@here`` broken by a zero-width
    space. ``line_start``: whether ``text`` begins a line of the message.
    """
    out: list[str] = []
    position = 0
    for match in _DISCORD_BARE_URL.finditer(text):
        out.append(_escape_plain(text[position : match.start()]))
        out.append(_no_mass_mention(match.group(0)))
        position = match.end()
    out.append(_escape_plain(text[position:]))
    escaped = "".join(out)
    # A line start inside ``text`` always begins a line; its very start only if told so.
    marker = "" if line_start else "\x00"
    escaped = _DISCORD_LINE_START.sub(_escape_line_start, marker + escaped)
    return escaped.removeprefix(marker)


def _escape_line_start(match: re.Match[str]) -> str:
    indent, block, number, dot = match.groups()
    if block:
        return f"{indent}\\{block}"
    # Digits cannot be escaped; the dot (or parenthesis) after them can.
    return f"{indent}{number}\\{dot}"


def _escape_plain(text: str) -> str:
    return _no_mass_mention("".join(f"\\{c}" if c in _DISCORD_INLINE else c for c in text))


def _no_mass_mention(text: str) -> str:
    return _DISCORD_MASS_MENTION.sub(lambda m: f"@{_ZWSP}{m.group(1)}", text)


def _discord_url(url: str) -> str:
    return quote(url, safe=_URL_SAFE_CHARS)


def _looks_like_url(label: str) -> bool:
    lowered = label.strip().lower()
    return "://" in lowered or lowered.startswith(("www.", "mailto:"))


@dataclass
class _Node:
    span: TextSpan | None
    start: int
    end: int
    children: list[_Node] = field(default_factory=list)


def _tree(text: str, spans: Sequence[TextSpan]) -> _Node:
    root = _Node(None, 0, len(text))
    stack = [root]
    for span in spans:  # sorted outer first, none crossing
        while stack[-1] is not root and stack[-1].end <= span.start:
            stack.pop()
        node = _Node(span, span.start, span.end)
        stack[-1].children.append(node)
        stack.append(node)
    return root


def _trim_style(text: str, span: TextSpan) -> TextSpan | None:
    """A style span without its leading and trailing white space (Discord will not open
    ``*`` before a space), or None when nothing is left.
    """
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return replace(span, start=start, end=end) if start < end else None


def _inline_code(content: str) -> str:
    if "`" not in content:
        return f"`{content}`"
    # Discord takes ``code`` between double backticks; a run of two inside breaks it, so
    # a zero-width space goes between them.
    content = content.replace("``", f"`{_ZWSP}`")
    return f"`` {content} ``"


def _code_block(content: str) -> str:
    return "```\n" + content.replace("```", f"``{_ZWSP}`") + "\n```"


_DISCORD_STYLE_MARKS: Final = {SpanKind.BOLD: "**", SpanKind.ITALIC: "*", SpanKind.STRIKE: "~~"}


def _render_discord(text: str, node: _Node) -> str:
    span = node.span
    content = text[node.start : node.end]
    if span is not None and span.kind is SpanKind.CODE:
        return _inline_code(content)
    if span is not None and span.kind is SpanKind.PRE:
        return _code_block(content)
    parts: list[str] = []
    position = node.start
    for child in [*node.children, None]:
        end = node.end if child is None else child.start
        at_line_start = position == 0 or text[position - 1] == "\n"
        parts.append(_discord_escape(text[position:end], line_start=at_line_start))
        if child is not None:
            parts.append(_render_discord(text, child))
            position = child.end
    inner = "".join(parts)
    if span is None:
        return inner
    if span.kind in _DISCORD_STYLE_MARKS:
        mark = _DISCORD_STYLE_MARKS[span.kind]
        return f"{mark}{inner}{mark}"
    return _discord_link(content, inner, span.url or "")


def _discord_link(label: str, inner: str, url: str) -> str:
    target = _discord_url(url)
    if label == url:
        return f"<{target}>"
    if _looks_like_url(label):
        # Discord hides masked links whose text is another URL; show both instead.
        return f"{inner} (<{target}>)"
    return f"[{inner}](<{target}>)"


def discord_markdown(text: str, spans: Iterable[TextSpan]) -> str:
    """``text`` as Discord Markdown with ``spans`` applied: bold ``**``, italic ``*``,
    strike ``~~``, code in backticks, pre as a fenced block, links as masked links
    ``[label](<url>)`` (a bare ``<url>`` when the label is the URL). Everything else is
    escaped so that it shows as written, and ``@everyone`` / ``@here`` cannot ping.
    """
    kept: list[TextSpan] = []
    for span in _platform_spans(text, spans):
        trimmed = _trim_style(text, span) if span.kind in _STYLES else span
        if trimmed is not None:
            kept.append(trimmed)
    kept = list(clean_spans(text, kept))
    return _render_discord(text, _tree(text, kept))
