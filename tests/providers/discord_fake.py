"""A local stand-in for the parts of Discord's HTTP API (v10) the provider uses.

Channel webhooks: execute (JSON or multipart with ``payload_json`` and ``files[n]``, with
``?wait=true`` returning the message), get, delete, and get/delete a webhook message. The
OAuth2 token endpoint with the ``webhook.incoming`` grant (its token response carries the
new webhook), PKCE S256 checked, and the RFC 7009 revoke endpoint. Errors take Discord's
shape: ``{"code", "message"}``, form errors as an ``errors`` tree, 429 with ``retry_after``
in the body and ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_FILES = 10
MAX_FILE_BYTES = 10 * 1024 * 1024
#: Webhook names may not contain these (Discord refuses them as impersonation).
FORBIDDEN_NAME_PARTS = ("discord", "clyde")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _error(status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _form_error(path: list[str], code: str, message: str) -> Response:
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        tree = {key: tree}
    return _error(400, 50035, "Invalid Form Body", tree)


def _too_long(path: list[str], limit: int) -> Response:
    return _form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


class Refusal(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class FakeWebhook:
    id: str
    token: str
    name: str
    channel_id: str
    guild_id: str
    application_id: str | None = None
    deleted: bool = False

    @property
    def discord_url(self) -> str:
        """The URL Discord shows the user (the provider never connects to this host)."""
        return f"https://discord.com/api/webhooks/{self.id}/{self.token}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": 1,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "name": self.name,
            "avatar": None,
            "application_id": self.application_id,
            "token": self.token,
        }


@dataclass
class FakeAttachment:
    id: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    description: str | None = None


@dataclass
class FakeMessage:
    id: str
    webhook_id: str
    channel_id: str
    content: str
    payload: dict[str, Any]
    attachments: list[FakeAttachment] = field(default_factory=list)
    deleted: bool = False
    timestamp: str = field(default_factory=_now)

    @property
    def mention_everyone(self) -> bool:
        """Whether Discord would ping @everyone: only if ``allowed_mentions`` lets it."""
        allowed = self.payload.get("allowed_mentions")
        parse = allowed.get("parse", []) if isinstance(allowed, dict) else ["everyone"]
        return "everyone" in parse and ("@everyone" in self.content or "@here" in self.content)

    def as_json(self, webhook: FakeWebhook) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": 0,
            "channel_id": self.channel_id,
            "content": self.content,
            "author": {
                "id": webhook.id,
                "username": self.payload.get("username") or webhook.name,
                "bot": True,
            },
            "attachments": [
                {
                    "id": a.id,
                    "filename": a.filename,
                    "size": len(a.data),
                    "content_type": a.content_type,
                    "url": f"https://cdn.discordapp.com/attachments/{self.channel_id}/{a.id}/{a.filename}",
                }
                | ({"description": a.description} if a.description else {})
                for a in self.attachments
            ],
            "embeds": self.payload.get("embeds", []),
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": self.mention_everyone,
            "timestamp": self.timestamp,
            "webhook_id": self.webhook_id,
            "flags": 0,
        }


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scope: str
    channel_id: str
    guild_id: str
    used: bool = False


class DiscordFake(FakePlatform):
    """Discord's webhook and OAuth2 endpoints; one webhook (``self.webhook``) to start."""

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1_300_000_000_000_000_000)
        self._state = threading.Lock()
        self.webhooks: dict[str, FakeWebhook] = {}
        self.messages: dict[str, FakeMessage] = {}
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, str] = {}  # access or refresh token -> "access"/"refresh"
        self.revoked: list[str] = []
        self.client_id = str(self.snowflake())
        self.client_secret = secrets.token_urlsafe(24)
        self.guild_id = self.snowflake()
        self.channel_id = self.snowflake()
        self.webhook = self.add_webhook("Plexus news")

    def snowflake(self) -> str:
        with self._state:
            return str(next(self._ids))

    def add_webhook(
        self, name: str, channel_id: str | None = None, application_id: str | None = None
    ) -> FakeWebhook:
        hook = FakeWebhook(
            id=self.snowflake(),
            token=secrets.token_urlsafe(51),
            name=name,
            channel_id=channel_id or self.channel_id,
            guild_id=self.guild_id,
            application_id=application_id,
        )
        self.webhooks[hook.id] = hook
        return hook

    # ---- the user's side of the OAuth2 flow

    def approve(self, authorization_url: str, channel_id: str | None = None) -> str:
        """What the user's click on "Authorize" does: check the request, return a code."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            msg = "not an authorization request for this application"
            raise AssertionError(msg)
        challenge = query.get("code_challenge")
        if challenge is not None and query.get("code_challenge_method") != "S256":
            msg = "only S256 challenges are accepted"
            raise AssertionError(msg)
        code = secrets.token_urlsafe(20)
        self.grants[code] = Grant(
            client_id=self.client_id,
            redirect_uri=query.get("redirect_uri", ""),
            code_challenge=challenge,
            scope=query.get("scope", ""),
            channel_id=channel_id or self.channel_id,
            guild_id=self.guild_id,
        )
        return code

    # ---- PlatformControls

    def published_texts(self) -> list[str]:
        return [m.content for m in self.messages.values() if not m.deleted]

    def revoked_tokens(self) -> list[str]:
        return list(self.revoked)

    def secrets_in_use(self) -> list[str]:
        hooks = [h.token for h in self.webhooks.values()]
        return [*hooks, self.client_secret, *self.tokens, *self.grants]

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            delay = float(self.retry_after)
            return JSONResponse(
                {"message": "You are being rate limited.", "retry_after": delay, "global": False},
                status_code=429,
                headers={
                    "retry-after": str(int(delay)),
                    "x-ratelimit-limit": "5",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": f"{datetime.now(UTC).timestamp() + delay:.3f}",
                    "x-ratelimit-reset-after": f"{delay:.3f}",
                    "x-ratelimit-bucket": "a06de4a6b6e0d1c2b1a9f3e8d7c6b5a4",
                    "x-ratelimit-scope": "user",
                },
            )
        if fault is Fault.SERVER_ERROR:
            return _error(500, 0, "500: Internal Server Error")
        if fault is Fault.UNAUTHORIZED:
            return _error(401, 50027, "Invalid Webhook Token")
        return _error(400, 200000, "Message was blocked by automatic moderation")

    # ---- routes

    def routes(self) -> list[Route]:
        return [
            Route(
                "/api/v10/webhooks/{webhook_id}/{token}",
                self.webhook_endpoint,
                methods=["GET", "POST", "DELETE"],
            ),
            Route(
                "/api/v10/webhooks/{webhook_id}/{token}/messages/{message_id}",
                self.message_endpoint,
                methods=["GET", "DELETE"],
            ),
            Route("/api/v10/oauth2/token", self.token_endpoint, methods=["POST"]),
            Route("/api/v10/oauth2/token/revoke", self.revoke_endpoint, methods=["POST"]),
        ]

    def _find_webhook(self, request: Request) -> FakeWebhook | Response:
        hook = self.webhooks.get(request.path_params["webhook_id"])
        if hook is None or hook.deleted:
            return _error(404, 10015, "Unknown Webhook")
        if not secrets.compare_digest(hook.token, request.path_params["token"]):
            return _error(401, 50027, "Invalid Webhook Token")
        return hook

    async def webhook_endpoint(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        found = self._find_webhook(request)
        if isinstance(found, Response):
            return found
        if request.method == "GET":
            body = found.as_json()
            if found.application_id is None:
                body.pop("application_id")
            return JSONResponse(body)
        if request.method == "DELETE":
            found.deleted = True
            return Response(status_code=204)
        return await self._execute(request, found)

    async def _read_payload(
        self, request: Request
    ) -> tuple[dict[str, Any], dict[str, Upload]] | Response:
        content_type = request.headers.get("content-type", "")
        uploads: dict[str, Upload] = {}
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=50, max_fields=50) as form:
                raw = form.get("payload_json")
                text = raw if isinstance(raw, str) else "{}"
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        uploads[key] = Upload(
                            value.filename or "",
                            value.content_type or "application/octet-stream",
                            await value.read(),
                        )
        else:
            text = (await request.body()).decode() or "{}"
        try:
            payload = json.loads(text)
        except ValueError:
            return _error(400, 50109, "The request body contains invalid JSON.")
        if not isinstance(payload, dict):
            return _error(400, 50109, "The request body contains invalid JSON.")
        return payload, uploads

    @staticmethod
    def _check_payload(payload: dict[str, Any]) -> str:
        """The message content, after Discord's checks of the JSON part (raises Refusal)."""
        content = payload.get("content") or ""
        if not isinstance(content, str):
            raise Refusal(
                _form_error(["content"], "STRING_TYPE_CONVERT", "Could not interpret as string.")
            )
        if len(content) > MAX_CONTENT:
            raise Refusal(_too_long(["content"], MAX_CONTENT))
        username = payload.get("username")
        if isinstance(username, str) and any(p in username.lower() for p in FORBIDDEN_NAME_PARTS):
            raise Refusal(
                _form_error(
                    ["username"], "USERNAME_INVALID_CONTAINS", "Username cannot contain that word"
                )
            )
        embeds = payload.get("embeds") or []
        if len(embeds) > MAX_EMBEDS:
            raise Refusal(_too_long(["embeds"], MAX_EMBEDS))
        for index, embed in enumerate(embeds):
            for key, limit in (("title", 256), ("description", 4096)):
                if len(str(embed.get(key, ""))) > limit:
                    raise Refusal(_too_long(["embeds", str(index), key], limit))
        return content

    def _attachments(
        self, payload: dict[str, Any], uploads: dict[str, Upload]
    ) -> list[FakeAttachment]:
        if len(uploads) > MAX_FILES:
            raise Refusal(_too_long(["attachments"], MAX_FILES))
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        attachments: list[FakeAttachment] = []
        for key, upload in uploads.items():
            if len(upload.data) > MAX_FILE_BYTES:
                raise Refusal(_error(413, 40005, "Request entity too large"))
            meta = described.get(key.removeprefix("files[").removesuffix("]"), {})
            attachments.append(
                FakeAttachment(
                    id=self.snowflake(),
                    filename=str(meta.get("filename") or upload.filename or "unknown"),
                    content_type=upload.content_type,
                    data=upload.data,
                    description=meta.get("description"),
                )
            )
        return attachments

    async def _execute(self, request: Request, hook: FakeWebhook) -> Response:
        read = await self._read_payload(request)
        if isinstance(read, Response):
            return read
        payload, uploads = read
        try:
            content = self._check_payload(payload)
            attachments = self._attachments(payload, uploads)
        except Refusal as refusal:
            return refusal.response
        if not content and not payload.get("embeds") and not attachments:
            return _error(400, 50006, "Cannot send an empty message")
        message = FakeMessage(
            id=self.snowflake(),
            webhook_id=hook.id,
            channel_id=hook.channel_id,
            content=content,
            payload=payload,
            attachments=attachments,
        )
        self.messages[message.id] = message
        headers = {
            "x-ratelimit-limit": "5",
            "x-ratelimit-remaining": "4",
            "x-ratelimit-reset-after": "2.000",
            "x-ratelimit-bucket": "a06de4a6b6e0d1c2b1a9f3e8d7c6b5a4",
        }
        if request.query_params.get("wait", "false").lower() != "true":
            return Response(status_code=204, headers=headers)
        return JSONResponse(message.as_json(hook), headers=headers)

    async def message_endpoint(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        found = self._find_webhook(request)
        if isinstance(found, Response):
            return found
        message = self.messages.get(request.path_params["message_id"])
        if message is None or message.deleted or message.webhook_id != found.id:
            return _error(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            message.deleted = True
            return Response(status_code=204)
        return JSONResponse(message.as_json(found))

    # ---- OAuth2

    @staticmethod
    def _client_of(request: Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    async def token_endpoint(self, request: Request) -> Response:
        async with request.form() as raw:
            form = {k: str(v) for k, v in raw.items()}
        client_id, secret = self._client_of(request, form)
        if client_id != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        grant = self.grants.get(form.get("code", ""))
        invalid = JSONResponse(
            {"error": "invalid_grant", "error_description": 'Invalid "code" in request.'},
            status_code=400,
        )
        if grant is None or grant.used or grant.redirect_uri != form.get("redirect_uri"):
            return invalid
        if grant.code_challenge is not None and (
            _s256(form.get("code_verifier", "")) != grant.code_challenge
        ):
            return invalid
        grant.used = True
        access, refresh = secrets.token_urlsafe(22), secrets.token_urlsafe(22)
        self.tokens[access] = "access"
        self.tokens[refresh] = "refresh"
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": 604800,
            "refresh_token": refresh,
            "scope": grant.scope,
        }
        if "webhook.incoming" in grant.scope.split():
            hook = self.add_webhook(
                "Plexus", channel_id=grant.channel_id, application_id=self.client_id
            )
            body["webhook"] = hook.as_json() | {"url": hook.discord_url}
        return JSONResponse(body)

    async def revoke_endpoint(self, request: Request) -> Response:
        async with request.form() as raw:
            form = {k: str(v) for k, v in raw.items()}
        client_id, secret = self._client_of(request, form)
        if client_id != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = form.get("token", "")
        if token in self.tokens:
            self.revoked.append(token)
        return JSONResponse({})
