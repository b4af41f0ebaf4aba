"""Telegram: a bot posts to a channel (or a group) it administers, through the Bot API.

**Connecting.** The user gives the bot token from @BotFather and the chat (``@channel``
or its numeric id). Connecting checks them at Telegram: ``getMe`` (the token works),
``getChat`` (the chat exists and the bot can see it) and ``getChatMember`` for the bot
itself (in a channel it must be an administrator allowed to post; in a group a member
allowed to send). The numeric chat id Telegram returns is kept in ``Account.settings``
and used from then on, so renaming the channel does not break the connection.

**Posting.** ``sendMessage`` for text (4096 UTF-16 code units, as Telegram counts),
``sendPhoto``/``sendVideo`` for one item and ``sendMediaGroup`` (2 to 10 items, the caption
on the first) for an album; captions are 1024 UTF-16 code units. Text is sent without a
``parse_mode``, so nothing in a post is read as markup; its formatting (``Post.spans``)
goes beside it as ``entities`` (``caption_entities`` with media), counted in UTF-16 code
units (``plexus.providers.spans.telegram_entities``). A published post's external id is
its message id, or the album's message ids joined by commas, which ``deleteMessage``
removes one by one. The Bot API cannot read a message back (``can_read_back=False``).

**Disconnecting.** Telegram has no revocation of a bot token for one app: the token is the
bot's only credential, and the two ways to end it (the ``logOut`` method, or @BotFather's
/revoke) would break the bot for every other use its owner has. Disconnecting therefore
forgets the token in Plexus and does nothing at Telegram.

No SDK: python-telegram-bot and aiogram are async frameworks for interactive bots; the
eight methods used here are plain POSTs through Plexus's client.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from plexus.providers.base import (
    Account,
    AuthKind,
    Capabilities,
    Connected,
    ConnectField,
    Credentials,
    Link,
    MediaItem,
    MediaRules,
    Provider,
    ProviderNeedsReauth,
    ProviderRejected,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
)
from plexus.providers.spans import telegram_entities
from plexus.providers.telegram.api import BOT_TOKEN, BotApi

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from plexus.providers.base import Post

DEFAULT_API_URL: Final = "https://api.telegram.org"
MAX_TEXT: Final = 4096
MAX_CAPTION: Final = 1024
MAX_ALBUM: Final = 10
#: Photos may be at most 10 MB; other uploads through the Bot API at most 50 MB.
MAX_PHOTO_BYTES: Final = 10 * 1000 * 1000
MAX_UPLOAD_BYTES: Final = 50 * 1000 * 1000
PHOTO_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/webp"})
VIDEO_TYPES: Final = frozenset({"video/mp4"})
#: ``@username`` (5 to 32 characters) or a numeric chat id (channels are -100…).
_CHAT: Final = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}|-?[0-9]{1,20}")
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")
#: What ``Post.options`` may carry for Telegram, each "true" or "false".
OPTIONS: Final = frozenset({"disable_notification", "disable_link_preview"})
#: Group members who may send (``restricted`` ones only with ``can_send_messages``).
_POSTING_STATUSES: Final = frozenset({"creator", "administrator", "member", "restricted"})


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, exactly as the Bot API counts what it is sent."""
    return len(text.encode("utf-16-le")) // 2


def _flag(options: Mapping[str, str], name: str) -> bool:
    value = options.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ProviderRejected(f"option {name} is 'true' or 'false'")
    return value == "true"


def _file_name(item: MediaItem, index: int) -> str:
    base = item.filename.replace("\\", "/").rsplit("/", 1)[-1]
    safe = _SAFE_NAME.sub("_", base).strip("._")[:100]
    return safe or f"file{index}"


def message_url(chat: Mapping[str, Any], message_id: int | str) -> str | None:
    """The t.me link of a message: public chats by username, private channels and
    supergroups by their internal id; basic groups have none.
    """
    username = chat.get("username")
    if isinstance(username, str) and username:
        return f"https://t.me/{username}/{message_id}"
    chat_id = str(chat.get("id") or "")
    if chat_id.startswith("-100"):
        return f"https://t.me/c/{chat_id[4:]}/{message_id}"
    return None


def _check_can_post(chat: Mapping[str, Any], member: Mapping[str, Any]) -> None:
    """Raise ``ProviderNeedsReauth`` unless the bot may post in ``chat``."""
    kind = chat.get("type")
    status = member.get("status")
    if kind == "channel":
        if status == "creator" or (
            status == "administrator" and member.get("can_post_messages") is True
        ):
            return
        if status == "administrator":
            raise ProviderNeedsReauth(
                "the bot is an administrator of the channel but may not post messages; "
                "give it the 'Post messages' right"
            )
        raise ProviderNeedsReauth(
            "the bot is not an administrator of the channel; add it as an administrator "
            "with the 'Post messages' right"
        )
    if kind in ("group", "supergroup"):
        if status == "restricted" and member.get("can_send_messages") is not True:
            raise ProviderNeedsReauth("the bot may not send messages in this group")
        if status in _POSTING_STATUSES:
            return
        raise ProviderNeedsReauth("the bot is not a member of this group; add it first")
    raise ProviderRejected("Plexus posts to Telegram channels and groups, not to private chats")


@dataclass(frozen=True, slots=True)
class Caption:
    """A media caption and its formatting (``caption_entities``, UTF-16 offsets)."""

    text: str
    entities: list[dict[str, Any]]


class TelegramProvider(Provider):
    """A bot posting to one channel or group."""

    name = "telegram"
    display_name = "Telegram"
    auth_kind = AuthKind.BOT_TOKEN
    connect_fields = (
        ConnectField(
            name="bot_token",
            label="Bot token",
            secret=True,
            help="From @BotFather (/newbot or /token); looks like 123456:ABC-DEF…",
        ),
        ConnectField(
            name="chat",
            label="Channel or group",
            help="@channelusername, or the numeric chat id (-100…) of a private channel",
        ),
    )
    settings_keys = ("api_url",)
    capabilities = Capabilities(
        text=TextRules(max_length=MAX_TEXT, counting=TextCounting.UTF16),
        media=MediaRules(
            max_items=MAX_ALBUM,
            image_types=PHOTO_TYPES,
            video_types=VIDEO_TYPES,
            max_image_bytes=MAX_PHOTO_BYTES,
            max_video_bytes=MAX_UPLOAD_BYTES,
        ),
        # About 20 messages a minute into one group or channel; 30 a second per bot.
        rate_limits=(RateLimit(20, 60), RateLimit(30, 1, scope="app")),
        can_read_back=False,
        rich_text=True,
    )

    # Telegram has no per-app revocation of a bot token (see the module docstring):
    # ``revoke`` stays the base class's, which does nothing for a non-OAuth auth kind.

    # ---- plumbing

    def _api_url(self) -> str:
        # An operator may run the open-source Bot API server (telegram-bot-api) and point
        # Plexus at it; the host is the operator's, never a user's, so no SSRF guard.
        return (self.context.settings.get("api_url") or DEFAULT_API_URL).rstrip("/")

    @contextlib.contextmanager
    def _bot(self, token: str) -> Iterator[BotApi]:
        with self.context.client(guarded=False, base_url=self._api_url()) as http:
            yield BotApi(http, token)

    @staticmethod
    def _token(link: Link) -> str:
        token = link.credentials.require_secret("bot_token")
        if not BOT_TOKEN.fullmatch(token):
            raise ProviderNeedsReauth("the stored bot token is malformed; connect the bot again")
        return token

    @staticmethod
    def _chat_id(link: Link) -> str:
        chat = str(link.account.settings.get("chat_id") or link.params.get("chat") or "")
        if not _CHAT.fullmatch(chat):
            raise ProviderNeedsReauth("the connection names no Telegram chat; connect it again")
        return chat

    @staticmethod
    def _message_ids(external_id: str) -> list[str]:
        ids = external_id.split(",")
        if not ids or not all(i.isascii() and i.isdigit() for i in ids):
            raise ProviderRejected("that is not a Telegram message id")
        return ids

    # ---- connecting

    def _inspect(self, token: str, chat: str) -> Account:
        with self._bot(token) as bot:
            me = bot.call("getMe")
            if not isinstance(me, dict) or not me.get("is_bot"):
                raise ProviderRejected("that token does not belong to a bot")
            found = bot.call("getChat", json={"chat_id": chat})
            if not isinstance(found, dict) or "id" not in found:
                raise ProviderRejected("Telegram did not describe the chat")
            member = bot.call("getChatMember", json={"chat_id": found["id"], "user_id": me["id"]})
        _check_can_post(found, member if isinstance(member, dict) else {})
        chat_id = str(found["id"])
        username = found.get("username")
        title = found.get("title") or (f"@{username}" if username else chat_id)
        return Account(
            external_id=chat_id,
            display_name=str(title),
            url=f"https://t.me/{username}" if username else None,
            settings={
                "chat_id": chat_id,
                "chat_type": str(found.get("type") or ""),
                "chat_username": str(username or ""),
                "bot_id": str(me["id"]),
                "bot_username": str(me.get("username") or ""),
            },
        )

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        """Check the token and the chat at Telegram, and that the bot may post there."""
        token = (fields.get("bot_token") or "").strip()
        if not BOT_TOKEN.fullmatch(token):
            raise ProviderRejected(
                "that is not a bot token: @BotFather's tokens look like 123456:ABC-DEF…"
            )
        chat = (fields.get("chat") or "").strip()
        if not _CHAT.fullmatch(chat):
            raise ProviderRejected("name the chat as @channelusername or its numeric id")
        try:
            account = self._inspect(token, chat)
        except ProviderNeedsReauth as exc:
            # Nothing is connected yet: what would break a connection refuses this attempt.
            raise ProviderRejected(exc.message) from None
        return Connected(credentials=Credentials(secrets={"bot_token": token}), account=account)

    def check_connection(self, link: Link) -> Account:
        return self._inspect(self._token(link), self._chat_id(link))

    # ---- posting

    @staticmethod
    def _text(post: Post) -> str:
        text = post.text
        if post.link and post.link not in text:
            text = f"{text}\n\n{post.link}" if text else post.link
        return text

    @staticmethod
    def _check_media(media: tuple[MediaItem, ...], caption: str) -> None:
        """Refuse an album Telegram would refuse before uploading it."""
        if len(media) > MAX_ALBUM:
            raise ProviderRejected(f"a Telegram album holds at most {MAX_ALBUM} items")
        for item in media:
            if item.content_type in PHOTO_TYPES:
                if len(item.data) > MAX_PHOTO_BYTES:
                    raise ProviderRejected("a photo is over Telegram's 10 MB limit")
            elif item.content_type in VIDEO_TYPES:
                if len(item.data) > MAX_UPLOAD_BYTES:
                    raise ProviderRejected("a video is over the Bot API's 50 MB upload limit")
            else:
                raise ProviderRejected(f"Telegram posts from Plexus take no {item.content_type}")
        length = utf16_length(caption)
        if length > MAX_CAPTION:
            raise ProviderRejected(
                f"with media, the text is a caption of at most {MAX_CAPTION} UTF-16 code "
                f"units; this one has {length}"
            )

    def publish(self, link: Link, post: Post) -> Published:
        unknown = sorted(set(post.options) - OPTIONS)
        if unknown:
            raise ProviderRejected(f"Telegram posts take no option {', '.join(unknown)[:80]}")
        silent = _flag(post.options, "disable_notification")
        no_preview = _flag(post.options, "disable_link_preview")
        token, chat_id = self._token(link), self._chat_id(link)
        text = self._text(post)
        # The link goes after the text, so the spans' offsets into ``post.text`` still hold.
        entities = telegram_entities(text, post.spans)
        caption = Caption(text, entities)
        if post.media:
            self._check_media(post.media, text)
        with self._bot(token) as bot:
            if not post.media:
                body: dict[str, Any] = {"chat_id": chat_id, "text": text}
                if entities:
                    body["entities"] = entities
                if silent:
                    body["disable_notification"] = True
                if no_preview:
                    body["link_preview_options"] = {"is_disabled": True}
                sent: Any = [bot.call("sendMessage", json=body)]
            elif len(post.media) == 1:
                sent = [self._send_one(bot, chat_id, post.media[0], caption, silent=silent)]
            else:
                sent = self._send_album(bot, chat_id, post.media, caption, silent=silent)
        if not isinstance(sent, list) or not all(
            isinstance(m, dict) and "message_id" in m for m in sent
        ):
            raise ProviderRejected("Telegram accepted the post but returned no message id")
        first = sent[0]
        chat = first.get("chat") if isinstance(first.get("chat"), dict) else {"id": chat_id}
        return Published(
            external_id=",".join(str(m["message_id"]) for m in sent),
            url=message_url(chat, first["message_id"]),
        )

    @staticmethod
    def _send_one(
        bot: BotApi, chat_id: str, item: MediaItem, caption: Caption, *, silent: bool
    ) -> Any:
        field = "photo" if item.content_type in PHOTO_TYPES else "video"
        form = {"chat_id": chat_id}
        if caption.text:
            form["caption"] = caption.text
            if caption.entities:
                form["caption_entities"] = json.dumps(caption.entities)
        if silent:
            form["disable_notification"] = "true"
        upload = (_file_name(item, 0), item.data, item.content_type)
        method = "sendPhoto" if field == "photo" else "sendVideo"
        return bot.call(method, data=form, files=[(field, upload)])

    @staticmethod
    def _send_album(
        bot: BotApi, chat_id: str, media: tuple[MediaItem, ...], caption: Caption, *, silent: bool
    ) -> Any:
        described: list[dict[str, Any]] = []
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        for index, item in enumerate(media):
            part = f"file{index}"
            entry: dict[str, Any] = {
                "type": "photo" if item.content_type in PHOTO_TYPES else "video",
                "media": f"attach://{part}",
            }
            # One caption, on the first item: clients show it under the whole album.
            if index == 0 and caption.text:
                entry["caption"] = caption.text
                if caption.entities:
                    entry["caption_entities"] = caption.entities
            described.append(entry)
            files.append((part, (_file_name(item, index), item.data, item.content_type)))
        form = {"chat_id": chat_id, "media": json.dumps(described)}
        if silent:
            form["disable_notification"] = "true"
        return bot.call("sendMediaGroup", data=form, files=files)

    def delete(self, link: Link, external_id: str) -> None:
        """Delete the message (every message of an album). Telegram lets a bot delete its
        own channel posts, and group messages younger than 48 hours.
        """
        ids = self._message_ids(external_id)
        token, chat_id = self._token(link), self._chat_id(link)
        with self._bot(token) as bot:
            for message_id in ids:
                # Gone already: deleted in Telegram, or by an earlier, interrupted attempt.
                bot.call(
                    "deleteMessage",
                    json={"chat_id": chat_id, "message_id": int(message_id)},
                    tolerate=("message to delete not found",),
                )
