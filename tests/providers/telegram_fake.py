"""A local stand-in for the Telegram Bot API methods the provider uses.

``POST /bot<token>/<method>`` with JSON, URL-encoded or multipart parameters, answering
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description",
"parameters"}``. Implemented: getMe, getChat, getChatMember, sendMessage, sendPhoto,
sendVideo, sendMediaGroup (``attach://`` parts), deleteMessage. Lengths are counted in
UTF-16 code units like Telegram's; a bot must be a channel administrator with
``can_post_messages`` (or a group member allowed to send) to post. ``entities`` and
``caption_entities`` (a JSON array, or its JSON text in a form) are checked as Telegram
checks them (known types, inside the text in UTF-16 units, a URL on ``text_link``, nested
only as the Bot API allows) and kept on the message.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 1000 * 1000
MAX_UPLOAD_BYTES = 50 * 1000 * 1000
ENTITY_TYPES = frozenset(
    {"bold", "italic", "underline", "strikethrough", "spoiler", "code", "pre", "text_link"}
)
#: Entities that may contain and sit inside any other, except code and pre.
_STYLE_ENTITIES = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler"})


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _entities(raw: Any, text: str) -> list[dict[str, Any]]:
    """The entities of ``text`` as Telegram accepts them (raises Refused otherwise)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise Refused(400, "Bad Request: can't parse entities JSON object") from None
    if not isinstance(raw, list):
        raise Refused(400, "Bad Request: entities must be an array")
    size = utf16(text)
    for entity in raw:
        _check_entity(entity, size)
    _check_nesting(raw)
    return raw


def _check_entity(entity: Any, size: int) -> None:
    if not isinstance(entity, dict) or entity.get("type") not in ENTITY_TYPES:
        raise Refused(400, "Bad Request: can't parse entities: unsupported entity type")
    offset, length = entity.get("offset"), entity.get("length")
    if not isinstance(offset, int) or not isinstance(length, int):
        raise Refused(400, "Bad Request: can't parse entities: offset and length are integers")
    if offset < 0 or length <= 0 or offset + length > size:
        raise Refused(400, "Bad Request: can't parse entities: entity is outside the text")
    if entity["type"] == "text_link" and not str(entity.get("url") or "").startswith(
        ("http://", "https://", "mailto:", "tg://")
    ):
        raise Refused(400, "Bad Request: can't parse entities: wrong HTTP URL")


def _check_nesting(raw: list[dict[str, Any]]) -> None:
    for first, second in itertools.combinations(raw, 2):
        a = (first["offset"], first["offset"] + first["length"])
        b = (second["offset"], second["offset"] + second["length"])
        if a[1] <= b[0] or b[1] <= a[0]:
            continue
        nested = (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])
        kinds = {first["type"], second["type"]}
        styles_only = kinds <= _STYLE_ENTITIES
        style_around_other = bool(kinds & _STYLE_ENTITIES) and not kinds & {"code", "pre"}
        if not nested or not (styles_only or style_around_other):
            raise Refused(400, "Bad Request: can't parse entities: entities overlap")


def _ok(result: Any) -> Response:
    return JSONResponse({"ok": True, "result": result})


def _fail(code: int, description: str, **parameters: Any) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


class Refused(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes = field(repr=False)


@dataclass
class FakeBot:
    id: int
    username: str
    token: str = field(repr=False)

    def as_user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": "Plexus", "username": self.username}


@dataclass
class FakeChat:
    id: int
    type: str
    title: str
    username: str | None = None
    #: user id -> ChatMember fields (``status`` and rights)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_message_id: int = 1

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "type": self.type, "title": self.title}
        if self.username:
            body["username"] = self.username
        return body


@dataclass
class FakeMessage:
    chat_id: int
    message_id: int
    text: str | None = None
    caption: str | None = None
    media: list[tuple[str, str, bytes]] = field(default_factory=list)  # (kind, name, data)
    media_group_id: str | None = None
    deleted: bool = False
    #: ``entities`` of a text message, or ``caption_entities`` of a caption.
    entities: list[dict[str, Any]] = field(default_factory=list)


class TelegramFake(FakePlatform):
    """One bot (``self.bot``) administering one public channel (``self.channel``)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock_state = threading.Lock()
        self._group_ids = itertools.count(13_000_000_000_000_000)
        self.bots: dict[str, FakeBot] = {}
        self.chats: dict[int, FakeChat] = {}
        self.messages: list[FakeMessage] = []
        self.bot = self.add_bot(7_000_000_001, "plexus_test_bot")
        self.channel = self.add_chat(-1_001_234_567_890, "channel", "Plexus News", "plexus_news")
        self.set_member(self.channel, self.bot, "administrator", can_post_messages=True)

    # ---- set-up helpers for tests

    def add_bot(self, bot_id: int, username: str) -> FakeBot:
        token = f"{bot_id}:{secrets.token_urlsafe(26)[:35]}"
        bot = FakeBot(bot_id, username, token)
        self.bots[token] = bot
        return bot

    def add_chat(
        self, chat_id: int, kind: str, title: str, username: str | None = None
    ) -> FakeChat:
        chat = FakeChat(chat_id, kind, title, username)
        self.chats[chat_id] = chat
        return chat

    def set_member(self, chat: FakeChat, bot: FakeBot, status: str, **rights: bool) -> None:
        chat.members[bot.id] = {"status": status, **rights}

    # ---- PlatformControls

    def published_texts(self) -> list[str]:
        return [m.text or m.caption or "" for m in self.messages if not m.deleted]

    def secrets_in_use(self) -> list[str]:
        return list(self.bots)

    def live_messages(self) -> list[FakeMessage]:
        return [m for m in self.messages if not m.deleted]

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            return _fail(
                429,
                f"Too Many Requests: retry after {self.retry_after}",
                retry_after=self.retry_after,
            )
        if fault is Fault.SERVER_ERROR:
            return _fail(500, "Internal Server Error")
        if fault is Fault.UNAUTHORIZED:
            return _fail(401, "Unauthorized")
        return _fail(400, "Bad Request: can't parse entities: unsupported start tag")

    # ---- routing

    def routes(self) -> list[Route]:
        return [Route("/bot{token}/{method}", self.endpoint, methods=["GET", "POST"])]

    async def _params(self, request: Request) -> tuple[dict[str, Any], dict[str, Upload]]:
        params: dict[str, Any] = dict(request.query_params)
        uploads: dict[str, Upload] = {}
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise Refused(400, "Bad Request: invalid request body")
            params.update(body)
        elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            async with request.form(max_files=20, max_fields=50) as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        uploads[key] = Upload(value.filename or "", await value.read())
                    else:
                        params[key] = value
        return params, uploads

    async def endpoint(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        bot = self.bots.get(request.path_params["token"])
        if bot is None:
            return _fail(401, "Unauthorized")
        handler = self._methods().get(request.path_params["method"].lower())
        if handler is None:
            return _fail(404, "Not Found")
        try:
            params, uploads = await self._params(request)
            result = await handler(bot, params, uploads)
        except Refused as refused:
            return _fail(refused.code, refused.description)
        return _ok(result)

    def _methods(self) -> dict[str, Any]:
        return {
            "getme": self.get_me,
            "getchat": self.get_chat,
            "getchatmember": self.get_chat_member,
            "sendmessage": self.send_message,
            "sendphoto": self.send_photo,
            "sendvideo": self.send_video,
            "sendmediagroup": self.send_media_group,
            "deletemessage": self.delete_message,
        }

    # ---- lookups and rights

    def _chat(self, bot: FakeBot, params: dict[str, Any]) -> FakeChat:
        raw = str(params.get("chat_id", "")).strip()
        if not raw:
            raise Refused(400, "Bad Request: chat_id is empty")
        chat: FakeChat | None = None
        if raw.startswith("@"):
            chat = next(
                (c for c in self.chats.values() if c.username and f"@{c.username}" == raw), None
            )
        elif raw.lstrip("-").isdigit():
            chat = self.chats.get(int(raw))
        # A bot sees a private chat only from inside it; public ones by their username.
        if chat is None or (chat.username is None and bot.id not in chat.members):
            raise Refused(400, "Bad Request: chat not found")
        return chat

    @staticmethod
    def _require_can_send(bot: FakeBot, chat: FakeChat) -> None:
        member = chat.members.get(bot.id)
        kind = "channel" if chat.type == "channel" else chat.type
        if member is None or member["status"] == "left":
            raise Refused(403, f"Forbidden: bot is not a member of the {kind} chat")
        if member["status"] == "kicked":
            raise Refused(403, f"Forbidden: bot was kicked from the {kind} chat")
        if chat.type == "channel":
            allowed = member["status"] == "creator" or (
                member["status"] == "administrator" and member.get("can_post_messages")
            )
            if not allowed:
                raise Refused(400, "Bad Request: need administrator rights in the channel chat")
        elif member["status"] == "restricted" and not member.get("can_send_messages"):
            raise Refused(400, "Bad Request: not enough rights to send text messages to the chat")

    def _store(self, chat: FakeChat, message: FakeMessage) -> dict[str, Any]:
        with self._lock_state:
            message.message_id = chat.next_message_id
            chat.next_message_id += 1
            self.messages.append(message)
        body: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": chat.as_json(),
        }
        if chat.type == "channel":
            body["sender_chat"] = chat.as_json()
        if message.text is not None:
            body["text"] = message.text
        if message.caption is not None:
            body["caption"] = message.caption
        if message.media_group_id is not None:
            body["media_group_id"] = message.media_group_id
        for kind, name, data in message.media:
            if kind == "photo":
                body["photo"] = [{"file_id": f"AgAC{secrets.token_hex(8)}", "file_size": len(data)}]
            else:
                body["video"] = {
                    "file_id": f"BAAC{secrets.token_hex(8)}",
                    "file_name": name,
                    "file_size": len(data),
                }
        return body

    @staticmethod
    def _caption(params: dict[str, Any]) -> str | None:
        caption = params.get("caption")
        if caption is None:
            return None
        caption = str(caption)
        if utf16(caption) > MAX_CAPTION:
            raise Refused(400, "Bad Request: message caption is too long")
        return caption

    @staticmethod
    def _file(kind: str, upload: Upload | None) -> tuple[str, str, bytes]:
        if upload is None:
            raise Refused(400, "Bad Request: wrong file identifier/HTTP URL specified")
        data = upload.data
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refused(413, "Request Entity Too Large")
        if kind == "photo" and len(data) > MAX_PHOTO_BYTES:
            raise Refused(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        if not data:
            raise Refused(400, "Bad Request: file must be non-empty")
        return kind, upload.filename or kind, data

    # ---- methods

    async def get_me(self, bot: FakeBot, params: dict[str, Any], uploads: Any) -> Any:
        del params, uploads
        return bot.as_user()

    async def get_chat(self, bot: FakeBot, params: dict[str, Any], uploads: Any) -> Any:
        del uploads
        return self._chat(bot, params).as_json()

    async def get_chat_member(self, bot: FakeBot, params: dict[str, Any], uploads: Any) -> Any:
        del uploads
        chat = self._chat(bot, params)
        try:
            user_id = int(params.get("user_id", ""))
        except ValueError:
            raise Refused(400, "Bad Request: invalid user_id specified") from None
        user = next((b.as_user() for b in self.bots.values() if b.id == user_id), None)
        if user is None:
            raise Refused(400, "Bad Request: user not found")
        member = chat.members.get(user_id, {"status": "left"})
        return {"user": user, **member}

    async def send_message(self, bot: FakeBot, params: dict[str, Any], uploads: Any) -> Any:
        del uploads
        chat = self._chat(bot, params)
        self._require_can_send(bot, chat)
        text = str(params.get("text") or "")
        if not text.strip():
            raise Refused(400, "Bad Request: message text is empty")
        if utf16(text) > MAX_TEXT:
            raise Refused(400, "Bad Request: message is too long")
        entities = _entities(params.get("entities"), text)
        return self._store(chat, FakeMessage(chat.id, 0, text=text, entities=entities))

    async def _send_file(
        self, kind: str, bot: FakeBot, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        chat = self._chat(bot, params)
        self._require_can_send(bot, chat)
        caption = self._caption(params)
        entities = _entities(params.get("caption_entities"), caption or "")
        media = self._file(kind, uploads.get(kind))
        message = FakeMessage(chat.id, 0, caption=caption, media=[media], entities=entities)
        return self._store(chat, message)

    async def send_photo(
        self, bot: FakeBot, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        return await self._send_file("photo", bot, params, uploads)

    async def send_video(
        self, bot: FakeBot, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        return await self._send_file("video", bot, params, uploads)

    async def send_media_group(
        self, bot: FakeBot, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        chat = self._chat(bot, params)
        self._require_can_send(bot, chat)
        try:
            items = json.loads(str(params.get("media", "")))
        except ValueError:
            raise Refused(400, "Bad Request: can't parse media JSON object") from None
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            raise Refused(400, "Bad Request: wrong number of media in the album (must be 2-10)")
        prepared: list[tuple[str | None, list[dict[str, Any]], tuple[str, str, bytes]]] = []
        for item in items:
            kind = item.get("type")
            if kind not in ("photo", "video"):
                raise Refused(400, "Bad Request: unsupported media type in the album")
            ref = str(item.get("media", ""))
            if not ref.startswith("attach://"):
                raise Refused(400, "Bad Request: wrong file identifier/HTTP URL specified")
            upload = uploads.get(ref.removeprefix("attach://"))
            caption = self._caption(item)
            entities = _entities(item.get("caption_entities"), caption or "")
            prepared.append((caption, entities, self._file(kind, upload)))
        group = str(next(self._group_ids))
        return [
            self._store(
                chat,
                FakeMessage(
                    chat.id,
                    0,
                    caption=caption,
                    media=[media],
                    media_group_id=group,
                    entities=entities,
                ),
            )
            for caption, entities, media in prepared
        ]

    async def delete_message(self, bot: FakeBot, params: dict[str, Any], uploads: Any) -> Any:
        del uploads
        chat = self._chat(bot, params)
        try:
            message_id = int(params.get("message_id", ""))
        except ValueError:
            raise Refused(400, "Bad Request: message identifier is not specified") from None
        message = next(
            (
                m
                for m in self.messages
                if m.chat_id == chat.id and m.message_id == message_id and not m.deleted
            ),
            None,
        )
        if message is None:
            raise Refused(400, "Bad Request: message to delete not found")
        message.deleted = True
        return True
