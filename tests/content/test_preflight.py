"""Preflight against the real capabilities of the registered providers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plexus.content.preflight import (
    MediaFacts,
    Problem,
    Target,
    check_target,
    count_text,
    hashtags_in,
)
from plexus.providers.base import (
    Account,
    Capabilities,
    MediaRules,
    ProviderContext,
    TextCounting,
    TextRules,
)
from plexus.providers.mastodon import InstanceLimits
from plexus.providers.registry import PROVIDERS

MB = 1024 * 1024
LONG_URL = "https://example.com/" + "a-very-long-path/" * 10 + "?utm_source=plexus"
FAMILY = "\N{MAN}\u200d\N{WOMAN}\u200d\N{GIRL}\u200d\N{BOY}"
X = Capabilities(text=TextRules(280, TextCounting.X_WEIGHTED))


def caps(provider: str, account: Account | None = None) -> Capabilities:
    instance = PROVIDERS[provider](ProviderContext())
    if account is not None:
        return instance.limits_for(account)
    return instance.capabilities


def jpeg(media_id: int = 1, **changes: object) -> MediaFacts:
    facts = MediaFacts(
        media_id=media_id,
        kind="image",
        content_type="image/jpeg",
        byte_size=500_000,
        width=1080,
        height=1080,
        duration_seconds=None,
        alt_text=None,
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def mp4(media_id: int = 1, **changes: object) -> MediaFacts:
    facts = MediaFacts(
        media_id=media_id,
        kind="video",
        content_type="video/mp4",
        byte_size=20 * MB,
        width=1080,
        height=1920,
        duration_seconds=30.0,
        alt_text=None,
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def target(
    provider: str,
    text: str = "Hello",
    media: tuple[MediaFacts, ...] = (),
    *,
    capabilities: Capabilities | None = None,
    **changes: object,
) -> Target:
    built = Target(
        connection_id=7,
        provider=provider,
        capabilities=capabilities or caps(provider),
        text=text,
        media=media,
        hashtags=(),
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def codes(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in problems]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# ---- a post that fits


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_plain_post_fits_every_provider(provider):
    rules = caps(provider)
    media = (jpeg(),) if rules.media.required else ()
    assert check_target(target(provider, "Hello from Plexus", media)) == []


def test_problems_name_the_connection():
    problem = only(check_target(target("instagram", media=())))
    assert problem.connection_id == 7


# ---- the connection


def test_a_connection_that_needs_reconnecting_is_a_problem():
    problem = only(check_target(target("discord", connection_status="needs_reauth")))
    assert (problem.field, problem.code) == ("connection", "connection_inactive")
    assert "connected again" in problem.message


# ---- text


@pytest.mark.parametrize("text", ["", "   \n"])
def test_text_is_required_where_the_platform_needs_it(text):
    problem = only(check_target(target("sandbox", text)))
    assert (problem.field, problem.code) == ("text", "text_required")


def test_empty_text_is_fine_where_it_is_optional():
    assert check_target(target("instagram", "", (jpeg(),))) == []


def test_instagram_caption_of_2200_fits_2201_does_not():
    assert check_target(target("instagram", "x" * 2200, (jpeg(),))) == []
    problem = only(check_target(target("instagram", "x" * 2201, (jpeg(),))))
    assert (problem.field, problem.code) == ("text", "text_too_long")
    assert problem.message == "Instagram allows 2,200 characters; this post has 2,201."


def test_x_counts_any_url_as_23():
    assert len(LONG_URL) > 100
    text = "a" * 256 + " " + LONG_URL
    assert count_text(text, X.text) == 280
    assert check_target(target("x", text, capabilities=X)) == []
    problem = only(check_target(target("x", "b" + text, capabilities=X)))
    assert problem.code == "text_too_long"
    assert "this post has 281 as x counts them (links count 23" in problem.message


def test_x_counts_cjk_twice():
    assert count_text("日本語", X.text) == 6
    assert check_target(target("x", "日" * 140, capabilities=X)) == []
    problem = only(check_target(target("x", "日" * 141, capabilities=X)))
    assert "this post has 282" in problem.message
    assert "CJK characters and emoji count 2" in problem.message


def test_x_counts_an_emoji_sequence_as_two():
    assert count_text(FAMILY, X.text) == 2


def test_bluesky_counts_graphemes_so_a_family_emoji_is_one():
    rules = caps("bluesky")
    text = FAMILY + "a" * 299
    assert len(text) > 300
    assert count_text(text, rules.text) == 300
    assert check_target(target("bluesky", text)) == []
    problem = only(check_target(target("bluesky", text + "!")))
    assert problem.message.startswith("Bluesky allows 300 characters; this post has 301 as")


def test_mastodon_default_limit_counts_links_as_23():
    text = "y" * 488 + " " + LONG_URL
    assert count_text(text, caps("mastodon").text) == 512
    problem = only(check_target(target("mastodon", text)))
    assert problem.message == (
        "Mastodon allows 500 characters; this post has 512 as Mastodon counts them "
        "(links count 23)."
    )


def test_mastodon_uses_the_instance_limit_and_reserved_url_length():
    instance = {
        "configuration": {
            "statuses": {"max_characters": 1000, "characters_reserved_per_url": 30},
        }
    }
    settings = InstanceLimits.from_instance(instance).as_settings()
    rules = caps("mastodon", Account("1@social.example", "@me", settings=settings))
    assert rules.text.max_length == 1000
    fits = "z" * 969 + " " + LONG_URL
    assert count_text(fits, rules.text) == 1000
    assert check_target(target("mastodon", fits, capabilities=rules)) == []
    problem = only(check_target(target("mastodon", "z" + fits, capabilities=rules)))
    assert problem.message == (
        "Mastodon allows 1,000 characters; this post has 1,001 as Mastodon counts them "
        "(links count 30)."
    )


def test_telegram_counts_utf16_units():
    text = "\N{GRINNING FACE}" * 2049
    problem = only(check_target(target("telegram", text)))
    assert "this post has 4,098 as Telegram counts them (most emoji count 2)" in problem.message


def test_matrix_counts_bytes():
    problem = only(check_target(target("matrix", "é" * 30_001)))
    assert problem.message.startswith("Matrix allows 60,000 bytes; this post has 60,002")


# ---- hashtags


def test_hashtags_are_found_where_they_start_a_word():
    text = "#one two#no &#35;x #Two, #日本 (#three) #"
    assert hashtags_in(text) == ["one", "Two", "日本", "three"]


def test_thirty_hashtags_fit_instagram_counted_once_each_whatever_the_case():
    text = " ".join(f"#Tag{n}" for n in range(30))
    post = target("instagram", text, (jpeg(),), hashtags=("tag0", "#TAG1", "Tag2"))
    assert check_target(post) == []


def test_the_thirty_first_hashtag_is_a_problem_even_from_the_list():
    text = " ".join(f"#tag{n}" for n in range(30))
    problem = only(check_target(target("instagram", text, (jpeg(),), hashtags=("extra",))))
    assert (problem.field, problem.code) == ("hashtags", "too_many_hashtags")
    assert problem.message == "Instagram allows 30 hashtags in a post; this one has 31."


def test_hashtags_are_not_limited_where_the_platform_does_not_limit_them():
    text = " ".join(f"#tag{n}" for n in range(100))
    assert check_target(target("discord", text)) == []


# ---- media


def test_instagram_needs_media():
    problem = only(check_target(target("instagram", "Words only")))
    assert (problem.field, problem.code) == ("media", "media_required")


def test_a_platform_without_media_refuses_any():
    problem = only(check_target(target("airtable", "Row", (jpeg(),))))
    assert (problem.field, problem.code) == ("media", "too_many_media")
    assert "Airtable takes no images or videos" in problem.message


def test_ten_items_fit_an_instagram_carousel_eleven_do_not():
    ten = tuple(jpeg(n) for n in range(10))
    assert check_target(target("instagram", "Album", ten)) == []
    problem = only(check_target(target("instagram", "Album", (*ten, jpeg(10)))))
    assert (problem.field, problem.code) == ("media", "too_many_media")
    assert "at most 10 images or videos" in problem.message


def test_instagram_takes_jpeg_images_only():
    png = jpeg(content_type="image/png")
    problem = only(check_target(target("instagram", "x", (jpeg(), png))))
    assert (problem.field, problem.code) == ("media[1]", "media_type_unsupported")
    assert problem.message == "Image 2 is in PNG format; Instagram takes JPEG images."


def test_video_types_are_checked_as_videos():
    webm = mp4(content_type="video/webm")
    problem = only(check_target(target("instagram", "x", (webm,))))
    assert problem.message == "Video 1 is in WEBM format; Instagram takes MOV or MP4 videos."


def test_a_platform_without_video_refuses_a_video():
    problem = only(check_target(target("bluesky", "x", (mp4(),))))
    assert problem.code == "media_type_unsupported"
    assert "Bluesky takes no videos" in problem.message


def test_an_image_over_the_size_limit():
    assert check_target(target("instagram", "x", (jpeg(byte_size=8 * MB),))) == []
    problem = only(check_target(target("instagram", "x", (jpeg(byte_size=9 * MB),))))
    assert (problem.field, problem.code) == ("media[0]", "media_too_large")
    assert problem.message == "Image 1 is 9 MB; Instagram takes images of at most 8 MB."


def test_a_video_over_the_size_limit():
    problem = only(check_target(target("discord", "x", (mp4(byte_size=11 * MB),))))
    assert problem.code == "media_too_large"
    assert "Discord takes videos of at most 10 MB" in problem.message


def test_the_4_to_5_boundary_is_inside_instagrams_range():
    assert check_target(target("instagram", "x", (jpeg(width=1080, height=1350),))) == []
    problem = only(check_target(target("instagram", "x", (jpeg(width=1080, height=1351),))))
    assert (problem.field, problem.code) == ("media[0]", "aspect_ratio_out_of_range")
    assert "too tall" in problem.message
    assert "between 4:5 (tall) and 1.91:1 (wide)" in problem.message


def test_the_191_to_1_boundary_is_inside_instagrams_range():
    assert check_target(target("instagram", "x", (jpeg(width=1910, height=1000),))) == []
    problem = only(check_target(target("instagram", "x", (jpeg(width=1911, height=1000),))))
    assert "too wide" in problem.message


def test_a_vertical_reel_is_not_held_to_the_photo_ratio():
    assert check_target(target("instagram", "x", (mp4(width=1080, height=1920),))) == []


def test_unmeasured_images_are_left_to_the_platform():
    assert check_target(target("instagram", "x", (jpeg(width=None, height=None),))) == []


def test_instagram_videos_run_at_most_15_minutes():
    assert check_target(target("instagram", "x", (mp4(duration_seconds=900.0),))) == []
    problem = only(check_target(target("instagram", "x", (mp4(duration_seconds=901.0),))))
    assert (problem.field, problem.code) == ("media[0]", "video_too_long")
    assert problem.message == (
        "Video 1 runs 15 minutes 1 second; Instagram takes videos of at most 15 minutes."
    )


def test_alt_text_over_the_limit():
    assert check_target(target("mastodon", "x", (jpeg(alt_text="d" * 1500),))) == []
    problem = only(check_target(target("mastodon", "x", (jpeg(alt_text="d" * 1501),))))
    assert (problem.field, problem.code) == ("media[0]", "alt_text_too_long")
    assert "1,501 characters; Mastodon allows 1,500" in problem.message


def test_video_limits_from_the_capabilities_apply():
    rules = Capabilities(
        text=TextRules(None),
        media=MediaRules(max_items=1, video_types=frozenset({"video/mp4"}), max_video_seconds=60),
    )
    problem = only(check_target(target("x", "", (mp4(duration_seconds=61.5),), capabilities=rules)))
    assert (
        problem.message == "Video 1 runs 1 minute 1.5 seconds; x takes videos of at most 1 minute."
    )
    short = replace(rules, media=replace(rules.media, max_video_seconds=30))
    problem = only(
        check_target(target("x", "", (mp4(duration_seconds=30.01),), capabilities=short))
    )
    assert problem.message == "Video 1 runs 30.1 seconds; x takes videos of at most 30 seconds."


# ---- the daily quota


@pytest.mark.parametrize("remaining", [None, 1, 49])
def test_quota_left_or_unknown_is_fine(remaining):
    assert check_target(target("instagram", "x", (jpeg(),), quota_remaining=remaining)) == []


def test_a_used_up_quota_is_a_problem():
    problem = only(check_target(target("instagram", "x", (jpeg(),), quota_remaining=0)))
    assert (problem.field, problem.code) == ("quota", "quota_exhausted")
    assert "(50 posts in 24 hours)" in problem.message


# ---- everything at once


def test_every_problem_is_reported_at_once():
    media = (
        jpeg(0, content_type="image/png", byte_size=9 * MB, width=1080, height=1920),
        mp4(1, duration_seconds=1200.0, byte_size=400 * MB),
        *(jpeg(n) for n in range(2, 11)),
    )
    post = target(
        "instagram",
        "w" * 2100 + " " + " ".join(f"#t{n}" for n in range(31)),
        media,
        connection_status="needs_reauth",
        quota_remaining=0,
    )
    assert codes(check_target(post)) == [
        ("connection", "connection_inactive"),
        ("text", "text_too_long"),
        ("hashtags", "too_many_hashtags"),
        ("media", "too_many_media"),
        ("media[0]", "media_type_unsupported"),
        ("media[0]", "media_too_large"),
        ("media[0]", "aspect_ratio_out_of_range"),
        ("media[1]", "media_too_large"),
        ("media[1]", "video_too_long"),
        ("quota", "quota_exhausted"),
    ]
    assert all(p.connection_id == 7 for p in check_target(post))
