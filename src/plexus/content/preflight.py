"""Preflight: whether each target of a publication fits its platform, before anything is
queued.

Pure functions over plain values, no database: the caller gathers, for every target, the
connection's rules (``Provider.limits_for``, so a Mastodon server's own limits apply), the
text as it will be sent, what Plexus knows of each media item, the hashtags, and the
remaining daily quota where the platform says (``Provider.publishing_quota``).
``check_target`` then returns every problem it finds, never stopping at the first, each
with a message an end user can act on; the API returns all of them for all targets at
once.

Text is counted the platform's way (``count_text``): X's weighted count (URLs 23, CJK and
emoji 2), Bluesky's graphemes, Mastodon's graphemes with links at the server's reserved
length, Telegram's UTF-16 units, Matrix's UTF-8 bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final

from plexus.providers.base import TextCounting, TextRules, text_length
from plexus.providers.registry import PROVIDERS

if TYPE_CHECKING:
    from plexus.providers.base import Capabilities, MediaRules

ACTIVE: Final = "active"
IMAGE: Final = "image"
VIDEO: Final = "video"
#: A hashtag starts a word (not ``&#35;`` or the middle of one); Instagram counts these.
HASHTAG_RE: Final = re.compile(r"(?<![\w&#])#(\w+)")
_KB: Final = 1024
_MB: Final = 1024 * 1024
_MINUTE: Final = 60
#: How the count is explained when it is not simply characters.
_HOW_COUNTED: Final = {
    TextCounting.GRAPHEMES: "each emoji or accented letter counts 1",
    TextCounting.UTF16: "most emoji count 2",
    TextCounting.UTF8_BYTES: "in UTF-8 bytes",
}
#: Type names people know, for the MIME subtypes whose own name is not one.
_TYPE_NAMES: Final = {"quicktime": "MOV", "svg+xml": "SVG", "x-matroska": "MKV"}


@dataclass(frozen=True, slots=True)
class MediaFacts:
    """What Plexus knows of one stored media item (measured when it was uploaded)."""

    media_id: int
    kind: str  # "image" or "video"
    content_type: str
    byte_size: int
    width: int | None
    height: int | None
    duration_seconds: float | None
    alt_text: str | None


@dataclass(frozen=True, slots=True)
class Target:
    """One connection a publication goes to, with what would be sent there."""

    connection_id: int
    provider: str
    capabilities: Capabilities
    text: str
    media: tuple[MediaFacts, ...]
    hashtags: tuple[str, ...]
    #: From ``Provider.publishing_quota``, when the platform says.
    quota_remaining: int | None = None
    connection_status: str = ACTIVE


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a target cannot be published as it stands.

    ``field`` is "text", "media", "media[<index>]", "hashtags", "quota" or "connection";
    ``code`` is stable for programs, ``message`` is for people.
    """

    connection_id: int | None
    field: str
    message: str
    code: str


def count_text(text: str, rules: TextRules) -> int:
    """The length of ``text`` as the platform whose text rules are ``rules`` counts it."""
    return text_length(text, rules.counting, url_length=rules.url_length)


def hashtags_in(text: str) -> list[str]:
    """The hashtags written in ``text``, in order, without their ``#``."""
    return HASHTAG_RE.findall(text)


def check_target(target: Target) -> list[Problem]:
    """Every problem that keeps ``target`` from being published; empty when it fits."""
    check = _Check(target)
    check.connection()
    check.text()
    check.hashtags()
    check.media()
    check.quota()
    return check.problems


# --------------------------------------------------------------------------- wording


def _platform(name: str) -> str:
    provider = PROVIDERS.get(name)
    return provider.display_name if provider is not None else name


def _number(value: int) -> str:
    return f"{value:,}"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{_number(count)} {one if count == 1 else (many or one + 's')}"


def _size(byte_size: int) -> str:
    if byte_size >= _MB:
        return f"{byte_size / _MB:.1f}".removesuffix(".0") + " MB"
    if byte_size >= _KB:
        return f"{byte_size / _KB:.1f}".removesuffix(".0") + " KB"
    return _plural(byte_size, "byte")


def _duration(seconds: float) -> str:
    """``901`` as "15 minutes 1 second"; rounded up to a tenth, so a video just over a
    limit never reads as exactly the limit.
    """
    minutes, tenths = divmod(math.ceil(seconds * 10), _MINUTE * 10)
    rest = f"{tenths / 10:g} {'second' if tenths == 10 else 'seconds'}"  # noqa: PLR2004 - 1 s
    if not minutes:
        return rest
    text = _plural(minutes, "minute")
    return f"{text} {rest}" if tenths else text


def _ratio(value: float) -> str:
    """``0.8`` as "4:5", ``1.91`` as "1.91:1"."""
    exact = Fraction(repr(value))
    if exact.denominator <= 16:  # noqa: PLR2004 - small ratios read best as a:b
        return f"{exact.numerator}:{exact.denominator}"
    return f"{value:g}:1"


def _type_name(content_type: str) -> str:
    subtype = content_type.partition("/")[2] or content_type
    return _TYPE_NAMES.get(subtype, subtype.upper())


def _types(content_types: frozenset[str]) -> str:
    names = sorted({_type_name(t) for t in content_types})
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _normal_tag(tag: str) -> str:
    return tag.strip().lstrip("#").casefold()


# --------------------------------------------------------------------------- the rules


class _Check:
    """The checks of one target, each adding what it finds to ``problems``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.platform = _platform(target.provider)
        self.caps = target.capabilities
        self.problems: list[Problem] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.problems.append(Problem(self.target.connection_id, field, message, code))

    def connection(self) -> None:
        status = self.target.connection_status
        if status == ACTIVE:
            return
        if status == "needs_reauth":
            message = (
                f"This {self.platform} connection must be connected again before it can "
                "publish: the platform no longer accepts its sign-in."
            )
        else:
            message = f"This {self.platform} connection is {status.replace('_', ' ')}."
        self.add("connection", "connection_inactive", message)

    def text(self) -> None:
        rules = self.caps.text
        if not self.target.text.strip():
            if rules.required:
                self.add("text", "text_required", f"{self.platform} needs some text to post.")
            return
        if rules.max_length is None:
            return
        length = count_text(self.target.text, rules)
        if length <= rules.max_length:
            return
        self.add("text", "text_too_long", self._length_message(rules, length))

    def _length_message(self, rules: TextRules, length: int) -> str:
        platform, limit = self.platform, rules.max_length or 0
        unit = "bytes" if rules.counting is TextCounting.UTF8_BYTES else "characters"
        message = f"{platform} allows {_number(limit)} {unit}; this post has {_number(length)}"
        if rules.counting is TextCounting.X_WEIGHTED:
            how = f"links count {rules.url_length}, CJK characters and emoji count 2"
        elif rules.counting is TextCounting.MASTODON:
            how = f"links count {rules.url_length}"
        else:
            how = _HOW_COUNTED.get(rules.counting, "")
        if how:
            message += f" as {platform} counts them ({how})"
        return message + "."

    def hashtags(self) -> None:
        limit = self.caps.text.max_hashtags
        if limit is None:
            return
        tags = {_normal_tag(t) for t in (*hashtags_in(self.target.text), *self.target.hashtags)}
        tags.discard("")
        if len(tags) > limit:
            self.add(
                "hashtags",
                "too_many_hashtags",
                f"{self.platform} allows {_plural(limit, 'hashtag')} in a post; "
                f"this one has {_number(len(tags))}.",
            )

    def media(self) -> None:
        rules, media = self.caps.media, self.target.media
        if not media:
            if rules.required:
                self.add(
                    "media",
                    "media_required",
                    f"{self.platform} posts need at least one image or video.",
                )
            return
        if rules.max_items == 0:
            self.add(
                "media",
                "too_many_media",
                f"{self.platform} takes no images or videos; "
                f"remove the {_plural(len(media), 'item')}.",
            )
            return
        if len(media) > rules.max_items:
            self.add(
                "media",
                "too_many_media",
                f"{self.platform} takes at most "
                f"{_plural(rules.max_items, 'image or video', 'images or videos')} in a post; "
                f"this one has {_number(len(media))}.",
            )
        for index, item in enumerate(media):
            _Item(self, rules, index, item).check()

    def quota(self) -> None:
        if self.target.quota_remaining is None or self.target.quota_remaining > 0:
            return
        cap = self.caps.daily_post_cap
        allowance = f" ({_plural(cap, 'post')} in 24 hours)" if cap else ""
        self.add(
            "quota",
            "quota_exhausted",
            f"This account has used up what {self.platform} lets it publish{allowance}; "
            "schedule the post for later, when the oldest of those posts is a day old.",
        )


class _Item:
    """The checks of one media item of a target."""

    def __init__(self, check: _Check, rules: MediaRules, index: int, item: MediaFacts) -> None:
        self.owner = check
        self.rules = rules
        self.item = item
        self.field = f"media[{index}]"
        noun = "Video" if item.kind == VIDEO else "Image" if item.kind == IMAGE else "Item"
        self.name = f"{noun} {index + 1}"
        self.platform = check.platform

    def add(self, code: str, message: str) -> None:
        self.owner.add(self.field, code, message)

    def check(self) -> None:
        self.type_()
        self.size()
        self.aspect_ratio()
        self.duration()
        self.alt_text()

    def type_(self) -> None:
        rules, item = self.rules, self.item
        allowed = rules.video_types if item.kind == VIDEO else rules.image_types
        if item.kind not in (IMAGE, VIDEO):
            allowed = frozenset()
        if item.content_type in allowed:
            return
        kinds = {IMAGE: "images", VIDEO: "videos"}.get(item.kind, "files of this kind")
        if allowed:
            takes = f"{self.platform} takes {_types(allowed)} {kinds}"
        else:
            takes = f"{self.platform} takes no {kinds}"
        self.add(
            "media_type_unsupported",
            f"{self.name} is in {_type_name(item.content_type)} format; {takes}.",
        )

    def size(self) -> None:
        rules, item = self.rules, self.item
        limit = rules.max_video_bytes if item.kind == VIDEO else rules.max_image_bytes
        if limit is None or item.byte_size <= limit:
            return
        kind = "videos" if item.kind == VIDEO else "images"
        self.add(
            "media_too_large",
            f"{self.name} is {_size(item.byte_size)}; {self.platform} takes {kind} "
            f"of at most {_size(limit)}.",
        )

    def aspect_ratio(self) -> None:
        rules, item = self.rules, self.item
        low, high = rules.min_aspect_ratio, rules.max_aspect_ratio
        if item.kind != IMAGE or (low is None and high is None):
            return
        if not item.width or not item.height:
            return  # not measured: the platform will judge
        # Exact rational comparison, so a true 4:5 image (1080 x 1350) passes a 0.8 bound.
        ratio = Fraction(item.width, item.height)
        too_tall = low is not None and ratio < Fraction(repr(low))
        too_wide = high is not None and ratio > Fraction(repr(high))
        if not (too_tall or too_wide):
            return
        if low is not None and high is not None:
            bounds = f"between {_ratio(low)} (tall) and {_ratio(high)} (wide)"
        elif low is not None:
            bounds = f"no taller than {_ratio(low)}"
        else:
            bounds = f"no wider than {_ratio(high or 0)}"
        self.add(
            "aspect_ratio_out_of_range",
            f"{self.name} is {item.width}\N{MULTIPLICATION SIGN}{item.height} pixels, "
            f"{'too tall' if too_tall else 'too wide'} for {self.platform}, which takes "
            f"images {bounds}; crop it to fit.",
        )

    def duration(self) -> None:
        limit, seconds = self.rules.max_video_seconds, self.item.duration_seconds
        if self.item.kind != VIDEO or limit is None or seconds is None or seconds <= limit:
            return
        self.add(
            "video_too_long",
            f"{self.name} runs {_duration(seconds)}; {self.platform} takes videos of at most "
            f"{_duration(limit)}.",
        )

    def alt_text(self) -> None:
        limit, alt = self.rules.max_alt_text, self.item.alt_text
        if limit is None or alt is None:
            return
        length = len(alt)
        if length <= limit:
            return
        self.add(
            "alt_text_too_long",
            f"The description (alt text) of {self.name.lower()} has {_number(length)} "
            f"characters; {self.platform} allows {_number(limit)}.",
        )
