"""Markdown, rendered safely for the web and as each platform takes it (R11, ASVS 1.3.1,
1.3.5).

A post is written once in Markdown (CommonMark plus ``~~strike~~``) and rendered here:

- ``render_html``: HTML for Plexus's own pages, inert for any input. Raw HTML is off in the
  parser, images become links, links keep only http, https and mailto URLs, and the
  result still goes through nh3's allow-list sanitiser, so a parser bug alone cannot let
  markup through.
- ``render_rich``: plain text plus formatting spans (bold, links ...) for platforms that
  take formatting beside the text (Telegram entities, Bluesky facets, Discord Markdown).
- ``render_plain``: the same text with every link's address written out, for platforms
  that show text as it is.
- ``mastodon_html``: what Mastodon shows for the plain text (paragraphs, line breaks and
  linked URLs), for previews.

The span converters (``discord_markdown``, ``telegram_entities``,
``bluesky_link_facets``) live in ``plexus.providers.spans`` so that providers can use
them; they are re-exported here.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

from plexus.providers.base import SpanKind, TextSpan
from plexus.providers.mastodon.text import URL_RE
from plexus.providers.spans import (
    SAFE_SCHEMES,
    bluesky_link_facets,
    discord_markdown,
    safe_url,
    telegram_entities,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ALLOWED_TAGS",
    "RenderedText",
    "bluesky_link_facets",
    "discord_markdown",
    "mastodon_html",
    "preview",
    "render_html",
    "render_plain",
    "render_rich",
    "safe_url",
    "telegram_entities",
]

#: The only elements ``render_html`` ever outputs.
ALLOWED_TAGS: Final = frozenset(
    {
        "p",
        "br",
        "strong",
        "em",
        "del",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
    }
)
MASTODON_TAGS: Final = frozenset({"p", "br", "a"})
LINK_REL: Final = "noopener noreferrer nofollow"
#: Elements removed with everything inside them, should one ever reach the sanitiser.
_DROPPED_WITH_CONTENT: Final = frozenset({"script", "style", "template", "noscript"})
#: Where Mastodon finds a URL in a status: its own extractor's pattern, shared with the
#: provider's length count.
_MASTODON_URL: Final = URL_RE
_URL_TRAILING: Final = ".,:;!?'*"
BULLET: Final = "• "
RULE: Final = "———"

_SANITISER: Final = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(_DROPPED_WITH_CONTENT),
    attributes={"a": {"href", "title"}},
    url_schemes=set(SAFE_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    strip_comments=True,
)
_MASTODON_SANITISER: Final = nh3.Cleaner(
    tags=set(MASTODON_TAGS),
    clean_content_tags=set(_DROPPED_WITH_CONTENT),
    attributes={"a": {"href"}},
    url_schemes={"http", "https"},
    url_relative="deny",
    link_rel=LINK_REL,
    strip_comments=True,
)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("strikethrough")
    # Every destination is parsed as a link, so that an unsafe one can be reduced to its
    # label below (markdown-it's own check would leave "[x](javascript:…)" as literal
    # text); nothing unsafe survives ``_neutralise``.
    md.validateLink = lambda url: True  # type: ignore[method-assign]  # noqa: ARG005 - every URL is judged later
    return md


_MD: Final = _parser()


def _link_open(href: str, title: str | None) -> Token:
    token = Token("link_open", "a", 1)
    token.attrs = {"href": href}
    if title:
        token.attrs["title"] = title
    return token


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _neutralise(children: Sequence[Token]) -> list[Token]:
    """An inline token list with unsafe links reduced to their label, and images turned
    into a link to the image (labelled with its alt text), or the alt text alone.
    """
    out: list[Token] = []
    dropped: list[bool] = []  # for each open link: whether its tokens were dropped
    for token in children:
        if token.type == "link_open":
            unsafe = safe_url(str(token.attrGet("href") or "")) is None
            dropped.append(unsafe)
            if not unsafe:
                out.append(token)
        elif token.type == "link_close":
            if not (dropped and dropped.pop()):
                if out and out[-1].type == "link_open":  # "[](url)": the URL is the label
                    out.append(_text(str(out[-1].attrGet("href"))))
                out.append(token)
        elif token.type == "image":
            out.extend(_image(token))
        elif token.type in ("s_open", "s_close"):
            token.tag = "del"  # markdown-it writes <s>; <del> is what the allow-list keeps
            out.append(token)
        else:
            out.append(token)
    return out


def _image(token: Token) -> list[Token]:
    src = safe_url(str(token.attrGet("src") or ""))
    label = _neutralise(token.children or [])
    if src is None:
        return label
    if not label:
        label = [_text(src)]
    title = token.attrGet("title")
    return [_link_open(src, str(title) if title else None), *label, Token("link_close", "a", -1)]


def _tokens(markdown: str) -> list[Token]:
    # A lone surrogate (which JSON can carry) cannot be encoded; it becomes "?".
    markdown = markdown.encode("utf-8", "replace").decode("utf-8")
    tokens = _MD.parse(markdown)
    for token in tokens:
        if token.type == "inline" and token.children is not None:
            token.children = _neutralise(token.children)
    return tokens


def render_html(markdown: str) -> str:
    """``markdown`` as sanitised HTML (R11, ASVS 1.3.5): only ``ALLOWED_TAGS``, only
    ``href`` and ``title`` on links, only http, https and mailto URLs, every link with
    ``rel="noopener noreferrer nofollow"``; inert whatever the input.
    """
    rendered = _MD.renderer.render(_tokens(markdown), _MD.options, {})
    return _SANITISER.clean(rendered)


# --------------------------------------------------------------------------- text and spans


@dataclass(frozen=True)
class RenderedText:
    """Plain text and the formatting of its ranges (code point offsets into ``text``)."""

    text: str
    spans: tuple[TextSpan, ...]


_INLINE_KINDS: Final = {"strong": SpanKind.BOLD, "em": SpanKind.ITALIC, "s": SpanKind.STRIKE}


class _Writer:
    """Builds the text, writing a line prefix ("> ", list indentation) after each line
    break as soon as the next line has content, and records spans.
    """

    def __init__(self, *, plain: bool) -> None:
        self.plain = plain
        self._parts: list[str] = []
        self.position = 0
        self._prefixes: list[str] = []
        self._line_start = True
        self._open: list[tuple[SpanKind, int, str | None]] = []
        self.spans: list[TextSpan] = []

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def _emit(self, text: str) -> None:
        self._parts.append(text)
        self.position += len(text)

    def _flush_prefix(self, *, blank: bool = False) -> None:
        if self._line_start:
            self._line_start = False
            prefix = "".join(self._prefixes)
            self._emit(prefix.rstrip() if blank else prefix)

    def write(self, text: str) -> None:
        for index, line in enumerate(text.split("\n")):
            if index:
                self._flush_prefix(blank=True)
                self._emit("\n")
                self._line_start = True
            if line:
                self._flush_prefix()
                self._emit(line)

    def push_prefix(self, prefix: str, *, mark_this_line: bool = False) -> None:
        """Write ``prefix`` before every later line (and, with ``mark_this_line``, on the
        current line too when it has begun: a quote opening after a list marker).
        """
        if mark_this_line and not self._line_start:
            self._emit(prefix)
        self._prefixes.append(prefix)

    def pop_prefix(self) -> None:
        self._prefixes.pop()

    def open(self, kind: SpanKind, url: str | None = None) -> int:
        """Start a span here (after any pending line prefix); returns where it starts."""
        self._flush_prefix()
        self._open.append((kind, self.position, url))
        return self.position

    def close(self) -> None:
        kind, start, url = self._open.pop()
        if self.position > start and not (self.plain and kind is not SpanKind.LINK):
            self.spans.append(TextSpan(kind, start, self.position, url))


def _inline(writer: _Writer, node: SyntaxTreeNode) -> None:
    for child in node.children:
        kind = child.type
        if kind in ("text", "html_inline"):
            writer.write(child.content)
        elif kind in ("softbreak", "hardbreak"):
            writer.write("\n")
        elif kind == "code_inline":
            writer.open(SpanKind.CODE)
            writer.write(child.content)
            writer.close()
        elif kind in _INLINE_KINDS:
            writer.open(_INLINE_KINDS[kind])
            _inline(writer, child)
            writer.close()
        elif kind == "link":
            _link(writer, child)
        else:
            _inline(writer, child)


def _link(writer: _Writer, node: SyntaxTreeNode) -> None:
    url = str(node.attrs.get("href") or "")
    start = writer.open(SpanKind.LINK, url)
    _inline(writer, node)  # never empty: ``_neutralise`` gives "[](url)" its URL as label
    label = writer.text[start:]
    writer.close()
    if writer.plain and label not in (url, url.removeprefix("mailto:")):
        writer.write(f" ({url})")


def _item_marker(parent: SyntaxTreeNode, index: int) -> str:
    if parent.type == "ordered_list":
        start = parent.attrs.get("start", 1)
        return f"{int(start) + index}. "
    return BULLET


def _blocks(writer: _Writer, nodes: Sequence[SyntaxTreeNode], separator: str) -> None:
    for index, node in enumerate(nodes):
        if index:
            writer.write(separator)
        _block(writer, node)


def _block(writer: _Writer, node: SyntaxTreeNode) -> None:
    kind = node.type
    if kind == "inline":
        _inline(writer, node)
    elif kind in ("paragraph", "heading"):
        _blocks(writer, node.children, "\n")
    elif kind in ("code_block", "fence"):
        writer.open(SpanKind.PRE)
        writer.write(node.content.removesuffix("\n"))
        writer.close()
    elif kind == "blockquote":
        writer.push_prefix("> ", mark_this_line=True)
        _blocks(writer, node.children, "\n\n")
        writer.pop_prefix()
    elif kind in ("bullet_list", "ordered_list"):
        for index, item in enumerate(node.children):
            if index:
                writer.write("\n")
            marker = _item_marker(node, index)
            writer.write(marker)
            writer.push_prefix(" " * len(marker))
            tight = all(c.hidden for c in item.children if c.type == "paragraph")
            _blocks(writer, item.children, "\n" if tight else "\n\n")
            writer.pop_prefix()
    elif kind == "hr":
        writer.write(RULE)
    elif node.children:
        _blocks(writer, node.children, "\n\n")
    else:
        writer.write(node.content)


def _render_text(markdown: str, *, plain: bool) -> RenderedText:
    writer = _Writer(plain=plain)
    _blocks(writer, SyntaxTreeNode(_tokens(markdown)).children, "\n\n")
    spans = sorted(writer.spans, key=lambda s: (s.start, -s.end))
    return RenderedText(writer.text, tuple(spans))


def render_rich(markdown: str) -> RenderedText:
    """``markdown`` as plain text with formatting spans: paragraphs apart by a blank line,
    list items as "• item" or "1. item", headings as their text, code blocks verbatim,
    quoted lines after "> ". A link's text is its label, with a LINK span for an http,
    https or mailto URL (any other link keeps its label and loses the URL). R11.
    """
    return _render_text(markdown, plain=False)


def render_plain(markdown: str) -> str:
    """The text of ``render_rich`` with every link written "label (url)" (just the URL
    when it is its own label) and no formatting; an unsafe link keeps only its label.
    """
    return _render_text(markdown, plain=True).text


# --------------------------------------------------------------------------- Mastodon, preview


def _mastodon_line(line: str) -> str:
    out: list[str] = []
    position = 0
    for match in _MASTODON_URL.finditer(line):
        url = match.group(0)
        while url and (
            url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))
        ):
            url = url[:-1]
        if safe_url(url) is None:
            continue
        start = match.start()
        out.append(html.escape(line[position:start]))
        escaped = html.escape(url)
        out.append(f'<a href="{escaped}">{escaped}</a>')
        position = start + len(url)
    out.append(html.escape(line[position:]))
    return "".join(out)


def mastodon_html(markdown: str) -> str:
    """The HTML Mastodon shows for the post's plain text (``render_plain``): paragraphs,
    line breaks and linked http(s) URLs, nothing else; sanitised like ``render_html``.
    """
    text = render_plain(markdown)
    paragraphs = [p for p in re.split(r"\n{2,}", text) if p.strip()]
    rendered = "".join(
        "<p>" + "<br>".join(_mastodon_line(line) for line in paragraph.split("\n")) + "</p>"
        for paragraph in paragraphs
    )
    return _MASTODON_SANITISER.clean(rendered)


def preview(markdown: str) -> dict[str, str]:
    """Every rendering of ``markdown`` at once, for the API's preview."""
    rich = render_rich(markdown)
    return {
        "html": render_html(markdown),
        "plain": render_plain(markdown),
        "mastodon_html": mastodon_html(markdown),
        "discord": discord_markdown(rich.text, rich.spans),
    }
