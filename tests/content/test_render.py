"""Markdown rendering (R11): sanitised HTML, plain text with spans, and each platform's
form of those spans (Discord Markdown, Telegram entities, Bluesky facets).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from plexus.content.render import (
    ALLOWED_TAGS,
    RenderedText,
    bluesky_link_facets,
    discord_markdown,
    mastodon_html,
    preview,
    render_html,
    render_plain,
    render_rich,
    telegram_entities,
)
from plexus.providers.base import SpanKind, TextSpan
from plexus.providers.spans import clean_spans, merge_facets, nfc_with_spans, safe_url

from xss_corpus import XSS_PAYLOADS

B, IT, S, C, P, L = (
    SpanKind.BOLD,
    SpanKind.ITALIC,
    SpanKind.STRIKE,
    SpanKind.CODE,
    SpanKind.PRE,
    SpanKind.LINK,
)
ZWSP = "\u200b"


def covered(rendered: RenderedText) -> list[tuple[SpanKind, str, str | None]]:
    return [(s.kind, rendered.text[s.start : s.end], s.url) for s in rendered.spans]


def utf16_slice(text: str, entity: dict) -> str:
    raw = text.encode("utf-16-le")
    start = entity["offset"] * 2
    return raw[start : start + entity["length"] * 2].decode("utf-16-le")


# --------------------------------------------------------------------------- the XSS corpus


class Elements(HTMLParser):
    """Every element, attribute, comment and declaration of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.other: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, attrs))

    def handle_comment(self, data):
        self.other.append(f"comment {data!r}")

    def handle_decl(self, decl):
        self.other.append(f"declaration {decl!r}")

    def handle_pi(self, data):
        self.other.append(f"processing instruction {data!r}")

    def unknown_decl(self, data):
        self.other.append(f"declaration {data!r}")


def assert_inert(fragment: str, allowed: frozenset[str]) -> None:
    parser = Elements()
    parser.feed(fragment)
    parser.close()
    assert parser.other == []
    for tag, attrs in parser.elements:
        assert tag in allowed, fragment
        for name, value in attrs:
            assert not name.startswith("on"), fragment
            assert name not in ("style", "src", "srcdoc", "xlink:href", "action", "formaction")
            assert name in ("href", "title", "rel"), fragment
            if name == "href":
                assert value is not None
                assert value == value.strip()
                assert all(ord(c) > 0x20 and c != "\x7f" for c in value), fragment
                assert urlsplit(value).scheme.lower() in ("http", "https", "mailto"), fragment
            if name == "rel":
                assert value == "noopener noreferrer nofollow"


CONTEXTS = [
    "{}",
    "Intro with **bold** and a [fine link](https://ok.example).\n\n{}\n\nOutro.",
    "> {}",
    "- item\n- {}",
    "*{}*",
    "[{}](https://ok.example)",
    "# {}",
    "1. {}\n2. two",
]


def test_the_corpus_is_large_enough():
    assert len(XSS_PAYLOADS) >= 60
    assert len(set(XSS_PAYLOADS)) == len(XSS_PAYLOADS)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payloads_render_inert_html(payload, context):
    """R11, ASVS 1.3.1, 1.3.5: whatever the Markdown, the HTML holds only allowed elements,
    no event handler, style or src attribute, and only http(s)/mailto links.
    """
    markdown = context.format(payload)
    assert_inert(render_html(markdown), ALLOWED_TAGS)
    assert_inert(mastodon_html(markdown), frozenset({"p", "br", "a"}))


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payloads_give_only_safe_link_spans(payload, context):
    """R11, ASVS 1.2.2: the spans platforms receive link only to http(s)/mailto URLs."""
    rendered = render_rich(context.format(payload))
    for span in rendered.spans:
        assert 0 <= span.start < span.end <= len(rendered.text)
        if span.kind is SpanKind.LINK:
            assert safe_url(span.url) == span.url
            assert urlsplit(span.url).scheme.lower() in ("http", "https", "mailto")
    for entity in telegram_entities(rendered.text, rendered.spans):
        if entity["type"] == "text_link":
            assert urlsplit(entity["url"]).scheme.lower() in ("http", "https", "mailto")
    discord = discord_markdown(rendered.text, rendered.spans)
    for target in re.findall(r"(?<!\\)\]\(<([^>]*)>\)", discord):
        assert urlsplit(target).scheme.lower() in ("http", "https", "mailto")


def test_raw_html_is_text_not_markup():
    """ASVS 1.3.5: raw HTML is off in the parser; it shows as text."""
    html = render_html('<b onclick="x()">bold?</b> <img src=x onerror=alert(1)>')
    assert html == (
        '<p>&lt;b onclick="x()"&gt;bold?&lt;/b&gt; &lt;img src=x onerror=alert(1)&gt;</p>\n'
    )


# --------------------------------------------------------------------------- render_html


def test_html_of_common_markdown():
    html = render_html(
        "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\n\n"
        "> quoted\n\n- one\n- two\n\n3. three\n\n```python\nprint(1)\n```\n\n---"
    )
    assert html == (
        "<h1>Title</h1>\n"
        "<p>Some <strong>bold</strong>, <em>italic</em>, <del>gone</del> and "
        "<code>code</code>.</p>\n"
        "<blockquote>\n<p>quoted</p>\n</blockquote>\n"
        "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"
        "<ol>\n<li>three</li>\n</ol>\n"
        "<pre><code>print(1)\n</code></pre>\n"
        "<hr>\n"
    )


def test_html_links_carry_rel_and_title_only():
    html = render_html('[docs](https://docs.example/a?b=1&c=2 "The docs") <a@b.example>')
    assert html == (
        '<p><a href="https://docs.example/a?b=1&amp;c=2" title="The docs" '
        'rel="noopener noreferrer nofollow">docs</a> '
        '<a href="mailto:a@b.example" rel="noopener noreferrer nofollow">a@b.example</a></p>\n'
    )


@pytest.mark.parametrize(
    "markdown",
    [
        "[label](javascript:alert(1))",
        "[label](/relative)",
        "[label](//host.example/x)",
        "[label](ftp://host.example/x)",
        "[label](data:text/html,x)",
        "[label](https://user:pw@host.example/)",
    ],
)
def test_html_links_to_refused_urls_keep_only_their_label(markdown):
    assert render_html(markdown) == "<p>label</p>\n"


def test_images_become_links_or_their_alt_text():
    assert render_html("![a cat](https://img.example/cat.png)") == (
        '<p><a href="https://img.example/cat.png" rel="noopener noreferrer nofollow">'
        "a cat</a></p>\n"
    )
    assert render_html("![a cat](javascript:alert(1))") == "<p>a cat</p>\n"
    assert render_html("![](https://img.example/c.png)") == (
        '<p><a href="https://img.example/c.png" rel="noopener noreferrer nofollow">'
        "https://img.example/c.png</a></p>\n"
    )


def test_empty_link_label_is_its_url():
    assert render_html("[](https://x.example)") == (
        '<p><a href="https://x.example" rel="noopener noreferrer nofollow">'
        "https://x.example</a></p>\n"
    )


def test_lone_surrogates_and_nul_do_not_break_rendering():
    for function in (render_html, render_plain, mastodon_html):
        assert "?" in function("a\ud800b")
    assert render_plain("a\x00b") == "a\ufffdb"


# --------------------------------------------------------------------------- render_rich


def test_rich_text_of_paragraphs_and_inline_spans():
    rendered = render_rich(
        "Some **bold *and italic***, ~~strike~~, `code`.\nsame paragraph\n\nnext one"
    )
    assert rendered.text == ("Some bold and italic, strike, code.\nsame paragraph\n\nnext one")
    assert covered(rendered) == [
        (B, "bold and italic", None),
        (IT, "and italic", None),
        (S, "strike", None),
        (C, "code", None),
    ]


def test_rich_text_of_lists_headings_code_quotes_and_rules():
    rendered = render_rich(
        "## Heading *x*\n\n- one\n- two\n  - nested\n\n5. five\n6. six\n\n"
        "```\ncode  **not bold**\n  indented\n```\n\n> quote **b**\n> line\n>\n> again\n\n***"
    )
    assert rendered.text == (
        "Heading x\n\n"
        "• one\n• two\n  • nested\n\n"
        "5. five\n6. six\n\n"
        "code  **not bold**\n  indented\n\n"
        "> quote b\n> line\n>\n> again\n\n"
        "———"
    )
    assert covered(rendered) == [
        (IT, "x", None),
        (P, "code  **not bold**\n  indented", None),
        (B, "b", None),
    ]


def test_rich_text_of_loose_lists_and_continuations():
    rendered = render_rich("1. first\n\n   more\n2. second")
    assert rendered.text == "1. first\n\n   more\n2. second"


def test_link_text_is_its_label_with_a_link_span():
    rendered = render_rich(
        "See [the **docs**](https://docs.example/x), <https://auto.example> and <me@x.example>."
    )
    assert rendered.text == "See the docs, https://auto.example and me@x.example."
    assert covered(rendered) == [
        (L, "the docs", "https://docs.example/x"),
        (B, "docs", None),
        (L, "https://auto.example", "https://auto.example"),
        (L, "me@x.example", "mailto:me@x.example"),
    ]


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "vbscript:x", "data:text/html,x", "/relative", "#frag", "ftp://x.y"],
)
def test_links_with_refused_schemes_keep_their_text_without_a_span(url):
    """R11: only http, https and mailto links reach a platform."""
    rendered = render_rich(f"a [label]({url}) b")
    assert rendered == RenderedText("a label b", ())
    assert render_plain(f"a [label]({url}) b") == "a label b"


def test_link_urls_are_percent_encoded_and_idn_in_punycode():
    rendered = render_rich("[x](https://bücher.example/ä?q=a b)")
    assert rendered.spans == ()  # a space ends the destination: not a link at all
    rendered = render_rich("[x](<https://bücher.example/ä>)")
    assert covered(rendered) == [(L, "x", "https://xn--bcher-kva.example/%C3%A4")]


def test_images_in_rich_text_are_links_labelled_with_their_alt_text():
    rendered = render_rich("![a *cat*](https://img.example/c.png) ![x](javascript:y)")
    assert rendered.text == "a cat x"
    assert covered(rendered) == [
        (L, "a cat", "https://img.example/c.png"),
        (IT, "cat", None),
    ]


def test_offsets_count_code_points():
    rendered = render_rich("😀🦋 **bold** 𝄞 [x](https://e.example)")
    assert rendered.text == "😀🦋 bold 𝄞 x"
    bold, link = rendered.spans
    assert (bold.start, bold.end) == (3, 7)
    assert (link.start, link.end) == (10, 11)


def test_raw_html_and_entities_are_plain_text():
    rendered = render_rich("<b>x</b> &amp; &lt;i&gt; \\*not italic\\*")
    assert rendered == RenderedText("<b>x</b> & <i> *not italic*", ())


def test_spans_nest_and_never_cross():
    for payload in XSS_PAYLOADS:
        rendered = render_rich(f"**a *b [c `d`](https://x.example) e* f** {payload}")
        spans = rendered.spans
        for first in spans:
            for second in spans:
                disjoint = first.end <= second.start or second.end <= first.start
                nested = (first.start <= second.start and second.end <= first.end) or (
                    second.start <= first.start and first.end <= second.end
                )
                assert disjoint or nested


def test_empty_input():
    assert render_rich("") == RenderedText("", ())
    assert render_plain("   \n\n ") == ""
    assert render_html("") == ""
    assert mastodon_html("") == ""


# --------------------------------------------------------------------------- render_plain


def test_plain_text_writes_link_addresses_out():
    plain = render_plain(
        "**Read** [the docs](https://docs.example), <https://auto.example>, "
        "<me@x.example>, [mail](mailto:me@x.example) and [bad](javascript:x)."
    )
    assert plain == (
        "Read the docs (https://docs.example), https://auto.example, me@x.example, "
        "mail (mailto:me@x.example) and bad."
    )


def test_plain_text_is_rich_text_without_spans_for_unlinked_markdown():
    markdown = "# T\n\n- **a**\n- `b`\n\n> c\n\n```\nd\n```"
    assert render_plain(markdown) == render_rich(markdown).text


# --------------------------------------------------------------------------- mastodon_html


def test_mastodon_html_has_paragraphs_breaks_and_linked_urls_only():
    html = mastodon_html(
        "# Title\n\nline one **bold**\nline two [docs](https://docs.example/a).\n\n"
        "<script>x</script> mail me@x.example"
    )
    assert html == (
        "<p>Title</p>"
        "<p>line one bold<br>line two docs "
        '(<a href="https://docs.example/a" rel="noopener noreferrer nofollow">'
        "https://docs.example/a</a>).</p>"
        "<p>&lt;script&gt;x&lt;/script&gt; mail me@x.example</p>"
    )


# --------------------------------------------------------------------------- discord_markdown


def test_discord_markdown_of_every_kind():
    rendered = render_rich(
        "**bold** *italic* ~~strike~~ `code` [label](https://x.example/a) "
        "<https://y.example>\n\n```\nblock\n```"
    )
    assert discord_markdown(rendered.text, rendered.spans) == (
        "**bold** *italic* ~~strike~~ `code` [label](<https://x.example/a>) "
        "<https://y.example>\n\n```\nblock\n```"
    )


def test_discord_escapes_markup_in_plain_text():
    text = "a*b_c~d`e|f[g]h\\i<@123> **x**"
    assert discord_markdown(text, ()) == (
        "a\\*b\\_c\\~d\\`e\\|f\\[g\\]h\\\\i\\<@123> \\*\\*x\\*\\*"
    )


def test_discord_escapes_block_markup_only_at_line_starts():
    text = "> quote\n# head\n-# small\n- item\n+ item\n  1. one\n2) two\nmid > # - 3. ok"
    assert discord_markdown(text, ()) == (
        "\\> quote\n\\# head\n\\-# small\n\\- item\n\\+ item\n  1\\. one\n2\\) two\nmid > # - 3. ok"
    )


def test_discord_neutralises_mass_mentions_everywhere_but_keeps_urls():
    text = "@everyone @HERE bold https://x.example/a_b*c_ end"
    spans = (TextSpan(B, 16, 20),)
    assert discord_markdown(text, spans) == (
        f"@{ZWSP}everyone @{ZWSP}HERE **bold** https://x.example/a_b*c_ end"
    )
    assert discord_markdown("@everyone", (TextSpan(B, 0, 9),)) == f"**@{ZWSP}everyone**"


def test_discord_links():
    text = "docs https://a.example/x www.evil.example mail"
    spans = (
        TextSpan(L, 0, 4, 'https://docs.example/a>b"c`d'),
        TextSpan(L, 5, 24, "https://a.example/x"),
        TextSpan(L, 25, 41, "https://phish.example"),
        TextSpan(L, 42, 46, "mailto:me@x.example"),
    )
    assert discord_markdown(text, spans) == (
        "[docs](<https://docs.example/a%3Eb%22c%60d>) <https://a.example/x> "
        "www.evil.example (<https://phish.example>) [mail](<mailto:me@x.example>)"
    )


def test_discord_drops_unsafe_links_and_escapes_their_label():
    text = "[click]"
    assert discord_markdown(text, (TextSpan(L, 0, 7, "javascript:alert(1)"),)) == "\\[click\\]"


def test_discord_code_keeps_its_content_verbatim():
    text = "a `tick` and *star* then\nx```y"
    spans = (TextSpan(C, 2, 8), TextSpan(C, 13, 19), TextSpan(P, 25, 30))
    assert discord_markdown(text, spans) == (
        "a `` `tick` `` and `*star*` then\n```\nx``" + ZWSP + "`y\n```"
    )


def test_discord_styles_shed_surrounding_white_space():
    assert discord_markdown(" x ", (TextSpan(B, 0, 3),)) == " **x** "
    assert discord_markdown("   ", (TextSpan(IT, 0, 3),)) == "   "


# --------------------------------------------------------------------------- telegram_entities


def test_telegram_offsets_are_utf16_code_units():
    rendered = render_rich("😀 **bold 𝄞** ~~s~~ *i* `c` [link 🦋](https://x.example)")
    assert rendered.text == "😀 bold 𝄞 s i c link 🦋"
    entities = telegram_entities(rendered.text, rendered.spans)
    assert entities == [
        {"type": "bold", "offset": 3, "length": 7},
        {"type": "strikethrough", "offset": 11, "length": 1},
        {"type": "italic", "offset": 13, "length": 1},
        {"type": "code", "offset": 15, "length": 1},
        {"type": "text_link", "offset": 17, "length": 7, "url": "https://x.example"},
    ]
    assert [utf16_slice(rendered.text, e) for e in entities] == [
        "bold 𝄞",
        "s",
        "i",
        "c",
        "link 🦋",
    ]


def test_telegram_styles_are_cut_around_code_and_links_keep_no_code():
    text = "bold code bold linkcode"
    spans = (
        TextSpan(B, 0, 14),
        TextSpan(C, 5, 9),
        TextSpan(L, 15, 23, "https://x.example"),
        TextSpan(C, 19, 23),
    )
    assert telegram_entities(text, spans) == [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "code", "offset": 5, "length": 4},
        {"type": "bold", "offset": 9, "length": 5},
        {"type": "text_link", "offset": 15, "length": 8, "url": "https://x.example"},
    ]


def test_telegram_pre_and_link_on_one_range_keeps_the_link():
    spans = (TextSpan(C, 0, 3), TextSpan(L, 0, 3, "https://x.example"))
    assert telegram_entities("abc", spans) == [
        {"type": "text_link", "offset": 0, "length": 3, "url": "https://x.example"}
    ]


def test_bad_spans_are_dropped():
    text = "0123456789"
    spans = (
        TextSpan(B, 0, 5),
        TextSpan(IT, 3, 8),  # crosses the bold one
        TextSpan(S, 4, 4),  # empty
        TextSpan(C, 8, 11),  # past the end
        TextSpan(C, -1, 2),  # before the start
        TextSpan(L, 6, 9, "javascript:alert(1)"),
        TextSpan(L, 6, 9, None),
        TextSpan(L, 6, 9, "/relative"),
        TextSpan(B, 0, 5),  # a duplicate
    )
    assert clean_spans(text, spans) == (TextSpan(B, 0, 5),)
    assert telegram_entities(text, spans) == [{"type": "bold", "offset": 0, "length": 5}]
    assert bluesky_link_facets(text, spans) == []


# --------------------------------------------------------------------------- Bluesky


def test_bluesky_link_facets_count_utf8_bytes():
    rendered = render_rich("é 😀 [lïnk](https://x.example/ä) **not a link** <https://y.example>")
    assert rendered.text == "é 😀 lïnk not a link https://y.example"
    facets = bluesky_link_facets(rendered.text, rendered.spans)
    assert facets == [
        {
            "index": {"byteStart": 8, "byteEnd": 13},
            "features": [
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://x.example/%C3%A4"}
            ],
        },
        {
            "index": {"byteStart": 25, "byteEnd": 42},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://y.example"}],
        },
    ]
    raw = rendered.text.encode()
    assert raw[8:13].decode() == "lïnk"
    assert raw[25:42].decode() == "https://y.example"


def test_merged_facets_prefer_the_authors_and_are_sorted():
    def facet(start, end, uri):
        return {
            "index": {"byteStart": start, "byteEnd": end},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": uri}],
        }

    preferred = [facet(20, 30, "https://mine.example")]
    detected = [facet(25, 40, "https://found.example"), facet(0, 5, "https://a.example")]
    assert merge_facets(preferred, detected) == [
        facet(0, 5, "https://a.example"),
        facet(20, 30, "https://mine.example"),
    ]
    assert merge_facets([], detected) == sorted(detected, key=lambda f: f["index"]["byteStart"])


def test_nfc_normalisation_moves_spans_along():
    text = "e\u0301 **x**".replace("**", "")  # "é" as e + combining acute, then " x"
    normalised, spans = nfc_with_spans(text, (TextSpan(B, 3, 4), TextSpan(IT, 0, 2)))
    assert normalised == "\u00e9 x"
    assert spans == (TextSpan(IT, 0, 1), TextSpan(B, 2, 3))


# --------------------------------------------------------------------------- preview


def test_preview_gathers_every_rendering():
    markdown = "Hi **you**, [docs](https://docs.example) @everyone"
    shown = preview(markdown)
    assert shown == {
        "html": render_html(markdown),
        "plain": "Hi you, docs (https://docs.example) @everyone",
        "mastodon_html": mastodon_html(markdown),
        "discord": f"Hi **you**, [docs](<https://docs.example>) @{ZWSP}everyone",
    }
