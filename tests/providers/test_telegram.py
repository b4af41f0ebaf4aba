"""The Telegram provider against the local Bot API fake: the shared contract, and
Telegram's specifics (UTF-16 lengths, albums, the bot's rights, the token in the path).
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from plexus.content.render import render_rich
from plexus.providers.base import (
    Link,
    MediaItem,
    Post,
    ProviderContext,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderSettings,
    SpanKind,
    TextCounting,
    TextSpan,
    text_length,
)
from plexus.providers.telegram import TelegramProvider
from plexus.providers.testing import Fault, ProviderContract

from fake_helpers import running
from telegram_fake import TelegramFake

JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x02" * 64


@pytest.fixture
def fake():
    platform = TelegramFake()
    with running(platform):
        yield platform


def build_provider(fake: TelegramFake) -> TelegramProvider:
    context = ProviderContext(
        settings=ProviderSettings({"api_url": fake.base_url}), timeout=httpx.Timeout(1.0)
    )
    return TelegramProvider(context)


@pytest.fixture
def provider(fake):
    return build_provider(fake)


@pytest.fixture
def link(provider, fake):
    fields = {"bot_token": fake.bot.token, "chat": "@plexus_news"}
    connected = provider.connect_with_fields(fields)
    return Link(
        credentials=connected.credentials,
        account=connected.account,
        params={"chat": "@plexus_news"},
    )


def calls(fake: TelegramFake, method: str):
    return [r for r in fake.requests if r.path.endswith(f"/{method}")]


class TestTelegramContract(ProviderContract):
    # Telegram cannot revoke a bot token for one app; logOut or @BotFather's /revoke would
    # break the bot everywhere else, so disconnecting only forgets the token.
    supports_revocation = False


# ---- connecting


def test_connect_reads_the_chat_and_keeps_its_numeric_id(provider, fake):
    connected = provider.connect_with_fields(
        {"bot_token": f"  {fake.bot.token} ", "chat": "@plexus_news"}
    )
    account = connected.account
    assert account.external_id == str(fake.channel.id)
    assert account.display_name == "Plexus News"
    assert account.url == "https://t.me/plexus_news"
    assert account.settings["chat_type"] == "channel"
    assert account.settings["bot_username"] == "plexus_test_bot"
    assert connected.credentials.secrets == {"bot_token": fake.bot.token}
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == [
        "getMe",
        "getChat",
        "getChatMember",
    ]
    member_query = json.loads(calls(fake, "getChatMember")[0].body)
    assert member_query == {"chat_id": fake.channel.id, "user_id": fake.bot.id}


def test_bot_that_is_only_a_member_of_the_channel_is_rejected_at_connect(provider, fake):
    fake.set_member(fake.channel, fake.bot, "member")
    with pytest.raises(ProviderRejected, match="not an administrator"):
        provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@plexus_news"})


def test_admin_without_the_post_right_is_rejected_at_connect(provider, fake):
    fake.set_member(fake.channel, fake.bot, "administrator", can_post_messages=False)
    with pytest.raises(ProviderRejected, match="Post messages"):
        provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@plexus_news"})


def test_bot_outside_a_public_channel_is_rejected_at_connect(provider, fake):
    del fake.channel.members[fake.bot.id]
    with pytest.raises(ProviderRejected, match="not an administrator"):
        provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@plexus_news"})


def test_private_channel_by_numeric_id(provider, fake):
    chat = fake.add_chat(-1_009_876_543_210, "channel", "Internal")
    fake.set_member(chat, fake.bot, "administrator", can_post_messages=True)
    connected = provider.connect_with_fields({"bot_token": fake.bot.token, "chat": str(chat.id)})
    assert connected.account.url is None
    link = Link(credentials=connected.credentials, account=connected.account)
    published = provider.publish(link, Post(text="internal note"))
    assert published.url == f"https://t.me/c/9876543210/{published.external_id}"


def test_unknown_chat_is_rejected_at_connect(provider, fake):
    with pytest.raises(ProviderRejected, match="chat not found"):
        provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@nobody_here"})


def test_group_member_bot_can_connect_and_post(provider, fake):
    group = fake.add_chat(-1_005_555_555_555, "supergroup", "Team", "plexus_team")
    fake.set_member(group, fake.bot, "member")
    connected = provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@plexus_team"})
    link = Link(credentials=connected.credentials, account=connected.account)
    provider.publish(link, Post(text="hello team"))
    assert "hello team" in fake.published_texts()


def test_restricted_group_bot_is_rejected(provider, fake):
    group = fake.add_chat(-1_005_555_555_556, "supergroup", "Quiet", "plexus_quiet")
    fake.set_member(group, fake.bot, "restricted", can_send_messages=False)
    with pytest.raises(ProviderRejected, match="may not send"):
        provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@plexus_quiet"})


def test_private_chats_are_refused(provider, fake):
    chat = fake.add_chat(555_000_111, "private", "Someone", "someone_private")
    fake.set_member(chat, fake.bot, "member")
    with pytest.raises(ProviderRejected, match="not to private chats"):
        provider.connect_with_fields({"bot_token": fake.bot.token, "chat": "@someone_private"})


def test_wrong_token_is_rejected_without_showing_it(provider, fake):
    wrong = f"{fake.bot.id}:{'A' * 35}"
    with pytest.raises(ProviderRejected) as caught:
        provider.connect_with_fields({"bot_token": wrong, "chat": "@plexus_news"})
    assert wrong not in str(caught.value)
    assert "A" * 35 not in repr(caught.value.args)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"bot_token": "", "chat": "@plexus_news"},
        {"bot_token": "not-a-token", "chat": "@plexus_news"},
        {"bot_token": "123456:short", "chat": "@plexus_news"},
        {"bot_token": "123456:" + "A" * 35 + "/../getUpdates", "chat": "@plexus_news"},
        {"bot_token": "TOKEN", "chat": ""},
        {"bot_token": "TOKEN", "chat": "plexus_news"},
        {"bot_token": "TOKEN", "chat": "@a b"},
        {"bot_token": "TOKEN", "chat": "@x"},
        {"bot_token": "TOKEN", "chat": "-100abc"},
    ],
)
def test_malformed_fields_are_refused_without_a_request(provider, fake, fields):
    fields = {k: v.replace("TOKEN", fake.bot.token) for k, v in fields.items()}
    with pytest.raises(ProviderRejected) as caught:
        provider.connect_with_fields(fields)
    assert fake.bot.token not in str(caught.value)
    assert fake.requests == []


# ---- text


def test_text_is_counted_in_utf16_code_units_up_to_4096(provider, link, fake):
    emoji = "😀" * 2048  # 2048 code points, 4096 UTF-16 code units
    assert len(emoji) == 2048
    assert text_length(emoji, TextCounting.UTF16) == 4096
    assert provider.capabilities.text.max_length == 4096
    assert provider.capabilities.text.counting is TextCounting.UTF16
    provider.publish(link, Post(text=emoji))
    assert emoji in fake.published_texts()
    before = len(fake.published_texts())
    with pytest.raises(ProviderRejected, match="message is too long"):
        provider.publish(link, Post(text=emoji + "a"))  # 4097 units, 2049 code points
    assert len(fake.published_texts()) == before


def test_text_is_sent_plain_with_the_link(provider, link, fake):
    post = Post(
        text="<b>not bold</b> *nor this*",
        link="https://plexus.example/x",
        options={"disable_notification": "true", "disable_link_preview": "true"},
    )
    published = provider.publish(link, post)
    sent = json.loads(calls(fake, "sendMessage")[-1].body)
    assert sent == {
        "chat_id": str(fake.channel.id),
        "text": "<b>not bold</b> *nor this*\n\nhttps://plexus.example/x",
        "disable_notification": True,
        "link_preview_options": {"is_disabled": True},
    }
    assert "parse_mode" not in sent
    assert published.url == f"https://t.me/plexus_news/{published.external_id}"


def test_unknown_or_invalid_options_are_refused(provider, link, fake):
    before = len(fake.requests)
    for options in ({"parse_mode": "HTML"}, {"disable_notification": "yes"}):
        with pytest.raises(ProviderRejected):
            provider.publish(link, Post(text="x", options=options))
    assert len(fake.requests) == before


def test_empty_text_is_refused_by_telegram(provider, link, fake):
    with pytest.raises(ProviderRejected, match="text is empty"):
        provider.publish(link, Post(text=""))


# ---- media


def test_one_photo_goes_through_send_photo_with_its_caption(provider, link, fake):
    published = provider.publish(
        link, Post(text="a photo", media=(MediaItem("p.jpg", "image/jpeg", JPEG),))
    )
    assert calls(fake, "sendPhoto")
    [message] = fake.live_messages()
    assert (message.caption, message.media) == ("a photo", [("photo", "p.jpg", JPEG)])
    assert published.external_id == str(message.message_id)


def test_one_video_goes_through_send_video(provider, link, fake):
    provider.publish(link, Post(text="a clip", media=(MediaItem("c.mp4", "video/mp4", MP4),)))
    assert calls(fake, "sendVideo")
    assert fake.live_messages()[0].media == [("video", "c.mp4", MP4)]


def test_media_group_sends_an_album_with_one_caption(provider, link, fake):
    media = (
        MediaItem("a.jpg", "image/jpeg", JPEG),
        MediaItem("b.png", "image/png", PNG),
        MediaItem("c.mp4", "video/mp4", MP4),
    )
    published = provider.publish(link, Post(text="three things", media=media))
    [request] = calls(fake, "sendMediaGroup")
    assert request.headers["content-type"].startswith("multipart/form-data")
    messages = fake.live_messages()
    assert [m.media[0] for m in messages] == [
        ("photo", "a.jpg", JPEG),
        ("photo", "b.png", PNG),
        ("video", "c.mp4", MP4),
    ]
    assert [m.caption for m in messages] == ["three things", None, None]
    assert len({m.media_group_id for m in messages}) == 1
    assert published.external_id == ",".join(str(m.message_id) for m in messages)
    provider.delete(link, published.external_id)
    assert fake.live_messages() == []
    assert len(calls(fake, "deleteMessage")) == 3


def test_caption_limit_is_1024_utf16_units_checked_before_uploading(provider, link, fake):
    photo = (MediaItem("a.jpg", "image/jpeg", JPEG),)
    provider.publish(link, Post(text="😀" * 512, media=photo))  # exactly 1024 units
    before = len(fake.requests)
    with pytest.raises(ProviderRejected, match="1025"):
        provider.publish(link, Post(text="😀" * 512 + "a", media=photo))
    assert len(fake.requests) == before


def test_albums_over_ten_or_odd_types_are_refused_before_uploading(provider, link, fake):
    before = len(fake.requests)
    eleven = tuple(MediaItem(f"{i}.jpg", "image/jpeg", JPEG) for i in range(11))
    with pytest.raises(ProviderRejected, match="at most 10"):
        provider.publish(link, Post(text="x", media=eleven))
    with pytest.raises(ProviderRejected):
        provider.publish(link, Post(text="x", media=(MediaItem("a.gif", "image/gif", b"GIF89a"),)))
    big = MediaItem("big.jpg", "image/jpeg", b"\x00" * (10 * 1000 * 1000 + 1))
    with pytest.raises(ProviderRejected, match="10 MB"):
        provider.publish(link, Post(text="x", media=(big,)))
    assert len(fake.requests) == before


def test_fake_enforces_album_size(fake):
    # The provider never sends a one-item album; the fake still refuses one as Telegram does.
    response = httpx.post(
        f"{fake.base_url}/bot{fake.bot.token}/sendMediaGroup",
        data={
            "chat_id": "@plexus_news",
            "media": json.dumps([{"type": "photo", "media": "attach://a"}]),
        },
        files={"a": ("a.jpg", JPEG, "image/jpeg")},
    )
    assert response.status_code == 400
    assert response.json()["ok"] is False


# ---- formatting (Post.spans) as entities


def utf16_slice(text: str, entity: dict) -> str:
    raw = text.encode("utf-16-le")
    return raw[entity["offset"] * 2 : (entity["offset"] + entity["length"]) * 2].decode("utf-16-le")


def test_spans_go_as_entities_in_utf16_units_without_a_parse_mode(provider, link, fake):
    assert provider.capabilities.rich_text is True
    rendered = render_rich(
        "😀 **bold 𝄞** and *it* ~~old~~ `x = 1` [docs 🦋](https://docs.example/a) "
        "[bad](javascript:alert(1))\n\n```\ncode\n```"
    )
    post = Post(text=rendered.text, spans=rendered.spans, link="https://plexus.example/x")
    provider.publish(link, post)
    sent = json.loads(calls(fake, "sendMessage")[-1].body)
    assert "parse_mode" not in sent
    assert sent["text"] == rendered.text + "\n\nhttps://plexus.example/x"
    assert sent["entities"] == [
        {"type": "bold", "offset": 3, "length": 7},
        {"type": "italic", "offset": 15, "length": 2},
        {"type": "strikethrough", "offset": 18, "length": 3},
        {"type": "code", "offset": 22, "length": 5},
        {"type": "text_link", "offset": 28, "length": 7, "url": "https://docs.example/a"},
        {"type": "pre", "offset": 41, "length": 4},
    ]
    [message] = fake.live_messages()
    assert [(e["type"], utf16_slice(message.text, e)) for e in message.entities] == [
        ("bold", "bold 𝄞"),
        ("italic", "it"),
        ("strikethrough", "old"),
        ("code", "x = 1"),
        ("text_link", "docs 🦋"),
        ("pre", "code"),
    ]


def test_bold_around_code_is_cut_as_telegram_requires(provider, link, fake):
    text = "all bold `code` bold"
    spans = (TextSpan(SpanKind.BOLD, 0, 20), TextSpan(SpanKind.CODE, 9, 15))
    provider.publish(link, Post(text=text, spans=spans))
    # The fake refuses overlapping entities as Telegram does; this one went through.
    assert fake.live_messages()[0].entities == [
        {"type": "bold", "offset": 0, "length": 9},
        {"type": "code", "offset": 9, "length": 6},
        {"type": "bold", "offset": 15, "length": 5},
    ]


def test_unsafe_or_broken_spans_never_reach_telegram(provider, link, fake):
    spans = (
        TextSpan(SpanKind.LINK, 0, 5, "javascript:alert(1)"),
        TextSpan(SpanKind.BOLD, 3, 50),
        TextSpan(SpanKind.ITALIC, 2, 2),
    )
    provider.publish(link, Post(text="click here", spans=spans))
    sent = json.loads(calls(fake, "sendMessage")[-1].body)
    assert "entities" not in sent


def test_a_photo_caption_carries_caption_entities(provider, link, fake):
    rendered = render_rich("🎉 **launch** [notes](https://notes.example)")
    photo = (MediaItem("p.jpg", "image/jpeg", JPEG),)
    provider.publish(link, Post(text=rendered.text, spans=rendered.spans, media=photo))
    [message] = fake.live_messages()
    assert message.caption == "🎉 launch notes"
    assert message.entities == [
        {"type": "bold", "offset": 3, "length": 6},
        {"type": "text_link", "offset": 10, "length": 5, "url": "https://notes.example"},
    ]


def test_an_album_caption_carries_caption_entities_on_the_first_item(provider, link, fake):
    media = (MediaItem("a.jpg", "image/jpeg", JPEG), MediaItem("b.png", "image/png", PNG))
    spans = (TextSpan(SpanKind.ITALIC, 4, 9),)
    provider.publish(link, Post(text="two 😀 pics", spans=spans, media=media))
    [request] = calls(fake, "sendMediaGroup")
    first, second = fake.live_messages()
    assert first.entities == [{"type": "italic", "offset": 4, "length": 6}]
    assert utf16_slice(first.caption, first.entities[0]) == "😀 pic"
    assert (second.caption, second.entities) == (None, [])
    assert b"parse_mode" not in request.body


def test_fake_refuses_entities_telegram_would_refuse(fake):
    def send(entities):
        return httpx.post(
            f"{fake.base_url}/bot{fake.bot.token}/sendMessage",
            json={"chat_id": "@plexus_news", "text": "abcdef", "entities": entities},
        )

    for bad in (
        [{"type": "bold", "offset": 4, "length": 3}],
        [{"type": "text_link", "offset": 0, "length": 2, "url": "javascript:x"}],
        [{"type": "bold", "offset": 0, "length": 4}, {"type": "italic", "offset": 2, "length": 4}],
        [{"type": "bold", "offset": 0, "length": 4}, {"type": "code", "offset": 1, "length": 2}],
    ):
        assert send(bad).status_code == 400
    assert send([{"type": "bold", "offset": 0, "length": 6}]).status_code == 200


# ---- failures on an existing connection


def test_kicked_bot_needs_reauth(provider, link, fake):
    fake.set_member(fake.channel, fake.bot, "kicked")
    with pytest.raises(ProviderNeedsReauth, match="kicked"):
        provider.publish(link, Post(text="hello?"))


def test_lost_admin_rights_need_reauth(provider, link, fake):
    fake.set_member(fake.channel, fake.bot, "member")
    with pytest.raises(ProviderNeedsReauth, match="administrator"):
        provider.publish(link, Post(text="hello?"))
    with pytest.raises(ProviderNeedsReauth, match="not an administrator"):
        provider.check_connection(link)


def test_flood_control_delay_comes_from_parameters(provider, link, fake):
    fake.retry_after = 31
    fake.arm(Fault.RATE_LIMITED)
    with pytest.raises(ProviderRetryable) as caught:
        provider.publish(link, Post(text="flood"))
    assert caught.value.rate_limited
    assert caught.value.retry_after == 31


def test_token_stays_out_of_every_error_and_log(provider, link, fake, caplog):
    caplog.set_level(logging.DEBUG, logger="plexus")
    token = fake.bot.token
    for fault in Fault:
        fake.arm(fault)
        with pytest.raises((ProviderRetryable, ProviderRejected, ProviderNeedsReauth)) as caught:
            provider.publish(link, Post(text=f"fault {fault.value}"))
        error = caught.value
        assert token not in str(error)
        assert token not in repr(error)
        assert error.__cause__ is None
        assert error.__suppress_context__ or error.__context__ is None
    assert token not in caplog.text
    assert token not in repr(link)
    assert token not in repr(provider)


def test_delete_of_a_message_already_gone_is_fine(provider, link, fake):
    published = provider.publish(link, Post(text="short-lived"))
    fake.live_messages()[0].deleted = True
    provider.delete(link, published.external_id)


def test_foreign_message_ids_are_refused(provider, link, fake):
    before = len(fake.requests)
    for bad in ("", "abc", "1,,2", "1;2", "../getUpdates"):
        with pytest.raises(ProviderRejected):
            provider.delete(link, bad)
    assert len(fake.requests) == before


def test_revoke_does_nothing_at_telegram(provider, link, fake):
    before = len(fake.requests)
    provider.revoke(link)
    assert len(fake.requests) == before
