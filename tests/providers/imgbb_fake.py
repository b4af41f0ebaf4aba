"""A local stand-in for ImgBB's API v1: ``POST /1/upload``.

Like the real API it takes ``key``, ``image`` (a multipart file or base64 data),
``name`` and ``expiration`` (60 to 15,552,000 seconds) as request parameters, from the
body or the query string; it records where each key arrived so tests can check it never
came in a URL. Errors use Chevereto's body (``status_code``, ``error.message``,
``error.code``, ``status_txt``); a wrong key is a 400 with code 100.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
import time
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform

_MAGIC = {
    b"\xff\xd8\xff": ("image/jpeg", "jpg"),
    b"\x89PNG\r\n\x1a\n": ("image/png", "png"),
    b"GIF87a": ("image/gif", "gif"),
    b"GIF89a": ("image/gif", "gif"),
    b"BM": ("image/bmp", "bmp"),
}
_STATUS_TEXT = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Upload:
    id: str
    title: str
    url: str
    expiration: int
    key: str
    size: int


def _short_id(length: int = 7) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


class ImgbbFake(FakePlatform):
    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()
        self.uploads: dict[str, Upload] = {}
        #: Where each request's key came from: "body" or "query".
        self.key_sources: list[str] = []
        #: Echo the key back in error texts, as a careless server might.
        self.echo_key_in_errors = False

    def new_key(self) -> str:
        key = secrets.token_hex(16)
        self.keys.add(key)
        return key

    def published_texts(self) -> list[str]:
        return [u.title for u in self.uploads.values()]

    def secrets_in_use(self) -> list[str]:
        return sorted(self.keys)

    def error(self, status: int, message: str, code: int) -> Response:
        body = {
            "status_code": status,
            "error": {"message": message, "code": code},
            "status_txt": _STATUS_TEXT.get(status, "Error"),
        }
        headers = {"retry-after": str(self.retry_after)} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            return self.error(429, "Rate limit exceeded, try again later", 429)
        if fault is Fault.SERVER_ERROR:
            return self.error(500, "Internal error", 500)
        if fault is Fault.UNAUTHORIZED:
            return self.error(400, "Invalid API v1 key.", 100)
        return self.error(400, "Invalid image source", 310)

    async def upload(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        async with request.form() as form:
            body_key = str(form.get("key") or "")
            query_key = request.query_params.get("key", "")
            self.key_sources.append("body" if body_key else "query" if query_key else "none")
            key = body_key or query_key
            if key not in self.keys:
                message = "Invalid API v1 key." + (f" ({key})" if self.echo_key_in_errors else "")
                return self.error(400, message, 100)
            source = form.get("image")
            if isinstance(source, UploadFile):
                data = await source.read()
            else:
                try:
                    data = base64.b64decode(str(source or ""), validate=True)
                except (binascii.Error, ValueError):
                    data = b""
            name = str(form.get("name") or "")
            raw_expiration = str(form.get("expiration") or "0")
        if not data:
            return self.error(400, "Empty upload source.", 130)
        kind = next((v for magic, v in _MAGIC.items() if data.startswith(magic)), None)
        if kind is None:
            return self.error(400, "Invalid image source", 310)
        expiration = int(raw_expiration) if raw_expiration.isdigit() else -1
        if expiration != 0 and not 60 <= expiration <= 15_552_000:
            return self.error(400, "Invalid expiration value.", 120)
        return self._store(key, name, data, kind, expiration)

    def _store(
        self, key: str, name: str, data: bytes, kind: tuple[str, str], expiration: int
    ) -> Response:
        image_id = _short_id()
        title = name[:100] or _short_id(12)
        folder = _short_id(7)
        url = f"https://i.ibb.co/{folder}/{image_id}.{kind[1]}"
        self.uploads[image_id] = Upload(image_id, title, url, expiration, key, len(data))
        image = {"filename": f"{image_id}.{kind[1]}", "name": image_id, "mime": kind[0]}
        body = {
            "data": {
                "id": image_id,
                "title": title,
                "url_viewer": f"https://ibb.co/{image_id}",
                "url": url,
                "display_url": url,
                "width": "1",
                "height": "1",
                "size": str(len(data)),
                "time": str(int(time.time())),
                "expiration": str(expiration),
                "image": image | {"extension": kind[1], "url": url},
                "thumb": image | {"extension": kind[1], "url": url},
                "delete_url": f"https://ibb.co/{image_id}/{_short_id(32)}",
            },
            "success": True,
            "status": 200,
        }
        return JSONResponse(body)

    def routes(self) -> list[BaseRoute]:
        return [Route("/1/upload", self.upload, methods=["POST"])]
