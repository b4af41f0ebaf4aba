"""A local stand-in for the Imgur API v3 parts the provider uses.

``POST /oauth2/token`` (authorization code and refresh-token grants; a refresh returns a
new refresh token and kills the old one), ``GET /3/account/me``, ``POST /3/image``
(multipart ``image`` with ``type``, ``title``, ``description``; the bytes must be an image
format Imgur takes), ``GET /3/image/{id}`` and ``DELETE /3/image/{id}`` (the owner, by id,
or anyone with the deletehash). Every answer has Imgur's envelope
(``{"data", "success", "status"}``) and its credit headers (``X-RateLimit-*``, and
``X-Post-Rate-Limit-*`` on POSTs).
"""

from __future__ import annotations

import itertools
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

TEN_YEARS = 315_360_000
USER_LIMIT = 2000
CLIENT_LIMIT = 12_500
POST_LIMIT = 1250
_MAGIC = {
    b"\xff\xd8\xff": ("image/jpeg", "jpg"),
    b"\x89PNG\r\n\x1a\n": ("image/png", "png"),
    b"GIF87a": ("image/gif", "gif"),
    b"GIF89a": ("image/gif", "gif"),
    b"II*\x00": ("image/tiff", "tiff"),
    b"MM\x00*": ("image/tiff", "tiff"),
}


@dataclass
class Image:
    id: str
    owner: int
    title: str
    description: str
    mime: str
    link: str
    deletehash: str
    size: int
    deleted: bool = False


def _short_id(length: int = 7) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


class ImgurFake(FakePlatform):
    client_id = "imgur-client-1a2b3c"
    client_secret = "imgur-secret-" + "c" * 28

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[int, str] = {}
        self.access: dict[str, int] = {}
        self.refresh_tokens: dict[str, int] = {}
        self.dead_refresh_tokens: set[str] = set()
        self.codes: dict[str, int] = {}
        self.images: dict[str, Image] = {}
        self.issued: list[str] = []
        self.user_remaining = USER_LIMIT
        self.client_remaining = CLIENT_LIMIT
        self.post_remaining = POST_LIMIT
        self._ids = itertools.count(70_000_001)

    # ---- set-up

    def add_user(self, username: str = "plexus-test") -> int:
        account_id = next(self._ids)
        self.users[account_id] = username
        return account_id

    def _secret(self, prefix: str) -> str:
        value = prefix + secrets.token_hex(20)
        self.issued.append(value)
        return value

    def issue_tokens(self, account_id: int) -> tuple[str, str]:
        access, refresh = self._secret("at"), self._secret("rt")
        self.access[access] = account_id
        self.refresh_tokens[refresh] = account_id
        return access, refresh

    def authorize(self, account_id: int) -> str:
        """What the authorize page does once the user allows the app."""
        code = self._secret("code")
        self.codes[code] = account_id
        return code

    # ---- controls

    def published_texts(self) -> list[str]:
        return [i.description for i in self.images.values() if not i.deleted]

    def secrets_in_use(self) -> list[str]:
        return [self.client_secret, *self.issued]

    # ---- envelope and headers

    def _headers(self, request: Request) -> dict[str, str]:
        now = int(time.time())
        headers = {
            "x-ratelimit-userlimit": str(USER_LIMIT),
            "x-ratelimit-userremaining": str(self.user_remaining),
            "x-ratelimit-userreset": str(now + 3600),
            "x-ratelimit-clientlimit": str(CLIENT_LIMIT),
            "x-ratelimit-clientremaining": str(self.client_remaining),
        }
        if request.method == "POST":
            headers |= {
                "x-post-rate-limit-limit": str(POST_LIMIT),
                "x-post-rate-limit-remaining": str(self.post_remaining),
                "x-post-rate-limit-reset": "3600",
            }
        return headers

    def answer(self, request: Request, data: Any, status: int = 200, **headers: str) -> Response:
        body = {"data": data, "success": status < 400, "status": status}
        merged = self._headers(request) | {k.replace("_", "-"): v for k, v in headers.items()}
        return JSONResponse(body, status_code=status, headers=merged)

    def error(self, request: Request, status: int, message: str, **headers: str) -> Response:
        data = {"error": message, "request": request.url.path, "method": request.method}
        return self.answer(request, data, status, **headers)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault is Fault.RATE_LIMITED:
            delay = self.retry_after
            response = self.error(request, 429, "Too Many Requests")
            response.headers["x-ratelimit-userremaining"] = "0"
            response.headers["x-ratelimit-userreset"] = str(int(time.time()) + delay)
            if request.method == "POST":
                response.headers["x-post-rate-limit-remaining"] = "0"
                response.headers["x-post-rate-limit-reset"] = str(delay)
            return response
        if fault is Fault.SERVER_ERROR:
            return self.error(request, 500, "Imgur is over capacity!")
        if fault is Fault.UNAUTHORIZED:
            return self.error(request, 401, "The access token provided is invalid.")
        return self.error(request, 400, "Image format not supported, or image is corrupt.")

    def _account(self, request: Request) -> int | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.access:
            return self.error(request, 401, "The access token provided is invalid.")
        self.user_remaining -= 1
        self.client_remaining -= 1
        return self.access[token]

    # ---- routes

    async def token(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        async with request.form() as received:
            form = {k: str(v) for k, v in received.items()}
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return self.error(request, 401, "Invalid client credentials")
        if form.get("grant_type") == "refresh_token":
            old = form.get("refresh_token", "")
            account_id = self.refresh_tokens.pop(old, None)
            if account_id is None:
                return self.error(request, 400, "Invalid refresh token")
            self.dead_refresh_tokens.add(old)
        elif form.get("grant_type") == "authorization_code":
            account_id = self.codes.pop(form.get("code", ""), None)
            if account_id is None:
                return self.error(request, 400, "Invalid authorization code")
        else:
            return self.error(request, 400, "Invalid grant_type parameter or parameter missing")
        access, refresh = self.issue_tokens(account_id)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": TEN_YEARS,
                "token_type": "bearer",
                "scope": None,
                "refresh_token": refresh,
                "account_id": account_id,
                "account_username": self.users[account_id],
            }
        )

    async def me(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        account_id = self._account(request)
        if isinstance(account_id, Response):
            return account_id
        username = self.users[account_id]
        return self.answer(request, {"id": account_id, "url": username, "reputation": 0})

    async def upload(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        account_id = self._account(request)
        if isinstance(account_id, Response):
            return account_id
        self.post_remaining -= 1
        async with request.form() as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile) or form.get("type") != "file":
                return self.error(request, 400, "No image data was sent to the upload api")
            data = await upload.read()
            title, description = str(form.get("title") or ""), str(form.get("description") or "")
        kind = next((v for magic, v in _MAGIC.items() if data.startswith(magic)), None)
        if kind is None:
            return self.error(request, 400, "File type invalid (1)")
        self.client_remaining -= 9  # an upload costs ten credits
        image_id = _short_id()
        image = Image(
            id=image_id,
            owner=account_id,
            title=title,
            description=description,
            mime=kind[0],
            link=f"https://i.imgur.com/{image_id}.{kind[1]}",
            deletehash=_short_id(15),
            size=len(data),
        )
        self.images[image_id] = image
        return self.answer(request, self._describe(image) | {"deletehash": image.deletehash})

    @staticmethod
    def _describe(image: Image) -> dict[str, Any]:
        return {
            "id": image.id,
            "title": image.title or None,
            "description": image.description or None,
            "datetime": int(time.time()),
            "type": image.mime,
            "animated": False,
            "size": image.size,
            "views": 0,
            "bandwidth": 0,
            "link": image.link,
        }

    async def image(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        account_id = self._account(request)
        if isinstance(account_id, Response):
            return account_id
        key = request.path_params["image_id"]
        image = self.images.get(key) or next(
            (i for i in self.images.values() if i.deletehash == key), None
        )
        if image is None or image.deleted:
            return self.error(request, 404, "Unable to find an image with the id, " + key)
        if request.method == "DELETE":
            if image.owner != account_id and key != image.deletehash:
                return self.error(request, 403, "You are not the owner of this image")
            image.deleted = True
            return self.answer(request, True)  # noqa: FBT003 - Imgur's data is a bare true
        return self.answer(request, self._describe(image))

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth2/token", self.token, methods=["POST"]),
            Route("/3/account/me", self.me, methods=["GET"]),
            Route("/3/image", self.upload, methods=["POST"]),
            Route("/3/image/{image_id}", self.image, methods=["GET", "DELETE"]),
        ]
