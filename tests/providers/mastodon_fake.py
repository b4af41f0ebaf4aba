"""A local stand-in for one Mastodon server, covering the client API Plexus uses.

Implemented as documented: app registration (``POST /api/v1/apps``), the authorization
server metadata (``/.well-known/oauth-authorization-server``, S256 listed; switch it off
with ``pkce_supported = False`` to play a pre-4.3 server), ``/oauth/authorize`` (records
the PKCE challenge and redirects with a code; the tests call it directly, standing in for
the user's consent), ``/oauth/token`` (client authentication, redirect URI and PKCE
verifier checked), ``/oauth/revoke`` (RFC 7009), ``verify_credentials``,
``/api/v2/instance`` with a configurable (non-default) configuration, media uploads that
answer 202 and stay "processing" (206) for ``media_polls`` polls, and statuses with
server-side length validation and ``Idempotency-Key`` deduplication.

Errors use Mastodon's ``{"error": "..."}`` bodies (a 500 is an HTML page, as Rails renders
it); every authenticated answer carries ``X-RateLimit-Limit``, ``-Remaining`` and
``-Reset`` (ISO 8601), and more than ``rate_limit`` calls per window earn a 429.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import grapheme
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

_URL = re.compile(r"https?://\S+")
_REMOTE_MENTION = re.compile(r"@(\w+)@[\w.-]+\w")


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


@dataclass
class App:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scopes: list[str]
    name: str


@dataclass
class Token:
    client_id: str
    scopes: list[str]
    revoked: bool = False


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    challenge: str | None
    used: bool = False


@dataclass
class Media:
    id: str
    content_type: str
    description: str | None
    polls_left: int
    attached: bool = False


@dataclass
class Status:
    id: str
    text: str
    media_ids: list[str]
    visibility: str
    spoiler_text: str
    deleted: bool = False


@dataclass
class Config:
    max_characters: int = 1000
    max_media_attachments: int = 6
    characters_reserved_per_url: int = 23
    image_size_limit: int = 2_000_000
    video_size_limit: int = 8_000_000
    supported_mime_types: list[str] = field(
        default_factory=lambda: ["image/jpeg", "image/png", "image/gif", "video/mp4"]
    )


class MastodonFake(FakePlatform):
    """One Mastodon server, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.config = Config()
        self.pkce_supported = True
        self.media_polls = 2
        self.rate_limit = 300
        self.rate_window = 300
        self.account = {"id": "109348", "username": "plexus", "acct": "plexus"}
        self.apps: dict[str, App] = {}
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}
        self.media: dict[str, Media] = {}
        self.statuses: dict[str, Status] = {}
        self.idempotency: dict[tuple[str, str], str] = {}
        self.revoked: list[str] = []
        self._calls: dict[str, list[float]] = {}
        self._ids = itertools.count(110_000_000_000_000_000)
        self._lock = threading.Lock()
        self._issued: list[str] = []

    # ---- seeding

    def register(self, redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob") -> App:
        app = App(
            client_id=secrets.token_urlsafe(32),
            client_secret=secrets.token_urlsafe(32),
            redirect_uris=[redirect_uri],
            scopes=["read:accounts", "read:statuses", "write:statuses", "write:media"],
            name="seeded",
        )
        self.apps[app.client_id] = app
        self._issued.append(app.client_secret)
        return app

    def issue_token(self, app: App, scopes: list[str] | None = None) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Token(app.client_id, scopes or list(app.scopes))
        self._issued.append(token)
        return token

    def next_id(self) -> str:
        return str(next(self._ids))

    # ---- PlatformControls

    def published_texts(self) -> list[str]:
        return [s.text for s in self.statuses.values() if not s.deleted]

    def revoked_tokens(self) -> list[str]:
        return list(self.revoked)

    def secrets_in_use(self) -> list[str]:
        return list(self._issued)

    def _rate_headers(self, token: str, *, exhausted: bool = False) -> dict[str, str]:
        calls = self._calls.get(token, [])
        start = calls[0] if calls else time.time()
        reset = datetime.fromtimestamp(start + self.rate_window, UTC)
        remaining = 0 if exhausted else max(0, self.rate_limit - len(calls))
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": reset.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            reset = datetime.now(UTC) + timedelta(seconds=self.retry_after)
            return error(
                429,
                "Too many requests",
                **{
                    "x-ratelimit-limit": str(self.rate_limit),
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": reset.isoformat(timespec="milliseconds"),
                },
            )
        if fault is Fault.SERVER_ERROR:
            page = "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"
            return HTMLResponse(page, status_code=500)
        if fault is Fault.UNAUTHORIZED:
            return error(401, "The access token was revoked")
        return error(422, "Validation failed: Text contains disallowed content")

    # ---- routes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/apps", self.create_app, methods=["POST"]),
            Route("/.well-known/oauth-authorization-server", self.metadata, methods=["GET"]),
            Route("/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
            Route("/api/v1/accounts/verify_credentials", self.verify, methods=["GET"]),
            Route("/api/v2/instance", self.instance, methods=["GET"]),
            Route("/api/v2/media", self.upload, methods=["POST"]),
            Route("/api/v1/media/{id}", self.media_status, methods=["GET"]),
            Route("/api/v1/statuses", self.post_status, methods=["POST"]),
            Route("/api/v1/statuses/{id}", self.one_status, methods=["GET", "DELETE"]),
        ]

    # ---- apps and OAuth

    async def create_app(self, request: Request) -> Response:
        form = await request.form()
        name, redirect = form.get("client_name"), form.get("redirect_uris")
        if not isinstance(name, str) or not name or not isinstance(redirect, str) or not redirect:
            return error(422, "Validation failed: Name can't be blank, Redirect URI can't be blank")
        scopes = str(form.get("scopes") or "read").split()
        app = App(
            client_id=secrets.token_urlsafe(32),
            client_secret=secrets.token_urlsafe(32),
            redirect_uris=redirect.split(),
            scopes=scopes,
            name=name,
        )
        self.apps[app.client_id] = app
        self._issued.append(app.client_secret)
        return JSONResponse(
            {
                "id": self.next_id(),
                "name": name,
                "website": form.get("website"),
                "scopes": scopes,
                "redirect_uris": app.redirect_uris,
                "redirect_uri": redirect,
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "client_secret_expires_at": 0,
            }
        )

    async def metadata(self, request: Request) -> Response:
        if not self.pkce_supported:
            return HTMLResponse("<h1>The page you were looking for doesn't exist.</h1>", 404)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(
            {
                "issuer": f"{base}/",
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "scopes_supported": ["read", "write", "read:accounts", "write:statuses"],
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "client_credentials"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "app_registration_endpoint": f"{base}/api/v1/apps",
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        app = self.apps.get(q.get("client_id", ""))
        if app is None or q.get("response_type") != "code":
            return error(400, "invalid_client")
        if q.get("redirect_uri") not in app.redirect_uris:
            return error(400, "invalid_redirect_uri")
        scopes = q.get("scope", "read").split()
        if not set(scopes) <= set(app.scopes):
            return error(400, "invalid_scope")
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            return error(400, "invalid_request")
        code = secrets.token_urlsafe(32)
        self.codes[code] = Code(app.client_id, q["redirect_uri"], scopes, challenge)
        self._issued.append(code)
        query = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(query)}", status_code=302)

    async def _client(self, request: Request) -> tuple[App | None, dict[str, str]]:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        app = self.apps.get(client_id or "")
        if app is None or not secrets.compare_digest(app.client_secret, secret or ""):
            return None, form
        return app, form

    async def token(self, request: Request) -> Response:
        app, form = await self._client(request)
        if app is None:
            body = {"error": "invalid_client", "error_description": "Client authentication failed"}
            return JSONResponse(body, status_code=401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        with self._lock:
            code = self.codes.get(form.get("code", ""))
            if code is None or code.used or code.client_id != app.client_id:
                return self._invalid_grant()
            code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            return self._invalid_grant()
        if code.challenge is not None:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return self._invalid_grant()
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Token(app.client_id, code.scopes)
        self._issued.append(token)
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "scope": " ".join(code.scopes),
                "created_at": int(time.time()),
            }
        )

    @staticmethod
    def _invalid_grant() -> Response:
        description = (
            "The provided authorization grant is invalid, expired, revoked, does not match"
            " the redirection URI used in the authorization request, or was issued to"
            " another client."
        )
        return JSONResponse(
            {"error": "invalid_grant", "error_description": description}, status_code=400
        )

    async def revoke(self, request: Request) -> Response:
        app, form = await self._client(request)
        if app is None:
            return JSONResponse({"error": "unauthorized_client"}, status_code=403)
        token = self.tokens.get(form.get("token", ""))
        if token is not None and token.client_id != app.client_id:
            return JSONResponse({"error": "unauthorized_client"}, status_code=403)
        if token is not None and not token.revoked:
            token.revoked = True
            self.revoked.append(form["token"])
        return JSONResponse({})

    # ---- API plumbing

    async def _api(self, request: Request, scope: str) -> tuple[str, Response | None]:
        fault = await self.take_fault(request)
        if fault is not None:
            return "", fault
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else ""
        token = self.tokens.get(bearer)
        if token is None:
            return "", error(401, "The access token is invalid")
        if token.revoked:
            return "", error(401, "The access token was revoked")
        family = scope.split(":", 1)[0]
        if scope not in token.scopes and family not in token.scopes:
            return "", error(403, "This action is outside the authorized scopes")
        with self._lock:
            now = time.time()
            calls = [t for t in self._calls.get(bearer, []) if t > now - self.rate_window]
            calls.append(now)
            self._calls[bearer] = calls
            if len(calls) > self.rate_limit:
                headers = self._rate_headers(bearer, exhausted=True)
                return "", error(429, "Too many requests", **headers)
        return bearer, None

    def _answer(self, bearer: str, body: Any, status: int = 200) -> Response:
        return JSONResponse(body, status_code=status, headers=self._rate_headers(bearer))

    # ---- accounts and instance

    async def verify(self, request: Request) -> Response:
        bearer, refused = await self._api(request, "read:accounts")
        if refused is not None:
            return refused
        url = f"{request.url.scheme}://{request.url.netloc}/@{self.account['username']}"
        return self._answer(bearer, {**self.account, "display_name": "Plexus", "url": url})

    async def instance(self, request: Request) -> Response:
        c = self.config
        return JSONResponse(
            {
                "domain": request.url.netloc,
                "title": "Fake Mastodon",
                "version": "4.3.0",
                "configuration": {
                    "urls": {"streaming": "wss://example.invalid"},
                    "statuses": {
                        "max_characters": c.max_characters,
                        "max_media_attachments": c.max_media_attachments,
                        "characters_reserved_per_url": c.characters_reserved_per_url,
                    },
                    "media_attachments": {
                        "supported_mime_types": c.supported_mime_types,
                        "image_size_limit": c.image_size_limit,
                        "image_matrix_limit": 16_777_216,
                        "video_size_limit": c.video_size_limit,
                        "video_frame_rate_limit": 60,
                        "video_matrix_limit": 2_304_000,
                    },
                    "polls": {"max_options": 4},
                },
            }
        )

    # ---- media

    def _media_entity(self, request: Request, media: Media) -> dict[str, Any]:
        base = f"{request.url.scheme}://{request.url.netloc}"
        ready = media.polls_left <= 0
        kind = "video" if media.content_type.startswith("video/") else "image"
        return {
            "id": media.id,
            "type": kind,
            "url": f"{base}/system/media/{media.id}" if ready else None,
            "preview_url": f"{base}/system/media/{media.id}/small",
            "description": media.description,
        }

    async def upload(self, request: Request) -> Response:
        bearer, refused = await self._api(request, "write:media")
        if refused is not None:
            return refused
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return error(422, "Validation failed: File can't be blank")
            data = await upload.read()
            content_type = upload.content_type or ""
            description = form.get("description")
        if content_type not in self.config.supported_mime_types:
            return error(422, "Validation failed: File content type is invalid")
        limit = (
            self.config.video_size_limit
            if content_type.startswith("video/")
            else self.config.image_size_limit
        )
        if len(data) > limit:
            return error(422, "Validation failed: File file size must be less than the limit")
        media = Media(
            self.next_id(),
            content_type,
            description if isinstance(description, str) else None,
            self.media_polls,
        )
        self.media[media.id] = media
        # Mastodon processes the full-size file in the background: 202 with url null.
        status = 202 if media.polls_left > 0 else 200
        return self._answer(bearer, self._media_entity(request, media), status)

    async def media_status(self, request: Request) -> Response:
        bearer, refused = await self._api(request, "write:media")
        if refused is not None:
            return refused
        media = self.media.get(request.path_params["id"])
        if media is None:
            return error(404, "Record not found")
        media.polls_left -= 1
        status = 206 if media.polls_left > 0 else 200
        return self._answer(bearer, self._media_entity(request, media), status)

    # ---- statuses

    def countable_length(self, text: str) -> int:
        placeholder = "x" * self.config.characters_reserved_per_url
        countable = _REMOTE_MENTION.sub(r"@\1", _URL.sub(placeholder, text))
        return int(grapheme.length(countable))

    def _status_entity(self, request: Request, status: Status) -> dict[str, Any]:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return {
            "id": status.id,
            "uri": f"{base}/users/{self.account['username']}/statuses/{status.id}",
            "url": f"{base}/@{self.account['username']}/{status.id}",
            "content": f"<p>{status.text}</p>",
            "visibility": status.visibility,
            "spoiler_text": status.spoiler_text,
            "media_attachments": [
                self._media_entity(request, self.media[i]) for i in status.media_ids
            ],
        }

    async def post_status(self, request: Request) -> Response:
        bearer, refused = await self._api(request, "write:statuses")
        if refused is not None:
            return refused
        key = request.headers.get("idempotency-key")
        if key and (bearer, key) in self.idempotency:
            existing = self.statuses[self.idempotency[(bearer, key)]]
            return self._answer(bearer, self._status_entity(request, existing))
        form = await request.form()
        text = str(form.get("status") or "")
        spoiler = str(form.get("spoiler_text") or "")
        media_ids = [str(v) for v in form.getlist("media_ids[]")]
        invalid = self._invalid_status(text, spoiler, media_ids)
        if invalid is not None:
            return invalid
        visibility = str(form.get("visibility") or "public")
        status = Status(self.next_id(), text, media_ids, visibility, spoiler)
        self.statuses[status.id] = status
        for media_id in media_ids:
            self.media[media_id].attached = True
        if key:
            self.idempotency[(bearer, key)] = status.id
        return self._answer(bearer, self._status_entity(request, status))

    def _invalid_status(self, text: str, spoiler: str, media_ids: list[str]) -> Response | None:
        if not text.strip() and not media_ids:
            return error(422, "Validation failed: Text can't be blank")
        limit = self.config.max_characters
        if self.countable_length(spoiler + text) > limit:
            return error(422, f"Validation failed: Text character limit of {limit} exceeded")
        if len(media_ids) > self.config.max_media_attachments:
            return error(422, "Validation failed: Too many attachments")
        for media_id in media_ids:
            media = self.media.get(media_id)
            if media is None or media.attached:
                return error(422, "Validation failed: Media attachment is invalid")
            if media.polls_left > 0:
                return error(
                    422, "Cannot attach files that have not finished processing. Try again!"
                )
        return None

    async def one_status(self, request: Request) -> Response:
        scope = "write:statuses" if request.method == "DELETE" else "read:statuses"
        # Reading is public for public statuses, but a token that is presented must carry
        # the scope (Mastodon's authorize_if_got_token!).
        bearer, refused = await self._api(request, scope)
        if refused is not None:
            return refused
        status = self.statuses.get(request.path_params["id"])
        if status is None or status.deleted:
            return error(404, "Record not found")
        if request.method == "DELETE":
            status.deleted = True
            return self._answer(
                bearer, {**self._status_entity(request, status), "text": status.text}
            )
        return self._answer(bearer, self._status_entity(request, status))
