"""ImgBB (imgbb.com): image hosting through its API v1, with the user's API key.

The API has one call, ``POST /1/upload``: ``key``, ``image`` (a file, base64 data or a
URL; up to 32 MB), an optional ``name`` and an optional ``expiration`` (60 to 15,552,000
seconds, after which ImgBB deletes the image). The documentation's example puts the key
in the query string; ImgBB (built on Chevereto, which reads the key from the request's
parameters, body included) accepts it as a form field, and that is where this provider
sends it, so the key never appears in a URL, an access log or a proxy's log. Error texts
are scrubbed of the key in case a reply ever echoes it.

What the API cannot do, this provider does not pretend to: the ``delete_url`` in an
upload's answer is a web page for a person, not an API, and there is no call to read an
image back, so ``can_delete`` and ``can_read_back`` are False. There is no "who am I"
call either: checking a connection uploads a 1x1 GIF that ImgBB deletes after 60
seconds, the shortest expiration it allows; the account is identified by a fingerprint
of the key. Revoking the key is done by the user at imgbb.com.

Errors come as ``{"status_code", "error": {"message", "code"}, "status_txt"}``; an
unknown key is a 400 with error code 100. ImgBB documents no rate-limit format; a 429 is
read with its ``Retry-After``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any, Final

import httpx

from plexus.providers.base import (
    Account,
    AuthKind,
    Capabilities,
    Connected,
    ConnectField,
    Credentials,
    Link,
    MediaRules,
    Post,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    Published,
    TextCounting,
    TextRules,
    raise_for_transport,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

PLATFORM: Final = "ImgBB"
DEFAULT_API_URL: Final = "https://api.imgbb.com"
MB: Final = 1024 * 1024
#: Chevereto keeps at most 100 characters of an image's title.
MAX_NAME: Final = 100
MIN_EXPIRATION: Final = 60
MAX_EXPIRATION: Final = 15_552_000
#: Chevereto's error code for a wrong API key.
INVALID_KEY: Final = 100
#: A 1x1 transparent GIF: the smallest valid upload, for checking a key.
PROBE_IMAGE: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
PROBE_NAME: Final = "plexus-connection-check"


def key_fingerprint(key: str) -> str:
    """A stable, non-secret name for a key (the key has no account id behind it)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "[redacted]") if key else text


def error_for(response: httpx.Response, key: str) -> ProviderError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    detail = _scrub(str(message or f"status {status}"), key)[:200]
    if status == 429:  # noqa: PLR2004
        return ProviderRetryable(
            f"{PLATFORM} is throttling uploads: {detail}",
            retry_after=retry_after_seconds(response),
            rate_limited=True,
        )
    if status >= 500:  # noqa: PLR2004
        return ProviderRetryable(f"{PLATFORM} had a server error ({status})")
    if code == INVALID_KEY or status in (401, 403):
        return ProviderNeedsReauth(f"{PLATFORM} refused the API key: {detail}")
    return ProviderRejected(f"{PLATFORM} refused the upload: {detail}")


class ImgbbProvider(Provider):
    """Image uploads to ImgBB with the user's API key."""

    name = "imgbb"
    display_name = "ImgBB"
    auth_kind = AuthKind.API_KEY
    capabilities = Capabilities(
        text=TextRules(max_length=MAX_NAME, counting=TextCounting.CODE_POINTS),
        media=MediaRules(
            max_items=1,
            image_types=frozenset(
                {
                    "image/jpeg",
                    "image/png",
                    "image/gif",
                    "image/bmp",
                    "image/webp",
                    "image/tiff",
                    "image/heic",
                    "image/avif",
                }
            ),
            max_image_bytes=32 * MB,
            required=True,
        ),
        can_delete=False,
        can_read_back=False,
    )
    connect_fields = (
        ConnectField(
            "api_key",
            "API key",
            secret=True,
            help="Create one at https://api.imgbb.com/ while signed in; revoke it there too.",
        ),
    )
    settings_keys = ("api_url",)

    def _client(self) -> httpx.Client:
        base = (self.context.settings.get("api_url") or DEFAULT_API_URL).rstrip("/")
        return self.context.client(guarded=False, base_url=base)

    def _upload(self, key: str, fields: Mapping[str, str], image: tuple[str, bytes, str]) -> Any:
        """``POST /1/upload`` with the key in the multipart body; the answer's ``data``."""
        with self._client() as http:
            try:
                response = http.post(
                    "/1/upload", data={"key": key, **fields}, files={"image": image}
                )
            except httpx.HTTPError as exc:
                raise raise_for_transport(exc, PLATFORM) from None
        if not response.is_success:
            raise error_for(response, key)
        try:
            body = response.json()
        except ValueError:
            raise ProviderRetryable(f"{PLATFORM} answered with something not JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or body.get("success") is False:
            raise error_for(response, key)
        return data

    @staticmethod
    def _account(key: str) -> Account:
        fingerprint = key_fingerprint(key)
        return Account(
            external_id=fingerprint,
            display_name=f"ImgBB API key {fingerprint.removeprefix('key-')[:8]}",
            url="https://imgbb.com/",
            settings={"key_fingerprint": fingerprint},
        )

    def _probe(self, key: str) -> Account:
        """Upload a 1x1 GIF that expires after 60 seconds: the only way to test a key."""
        fields = {"name": PROBE_NAME, "expiration": str(MIN_EXPIRATION)}
        self._upload(key, fields, (f"{PROBE_NAME}.gif", PROBE_IMAGE, "image/gif"))
        return self._account(key)

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        key = (fields.get("api_key") or "").strip()
        if not key:
            raise ProviderRejected("an ImgBB API key is needed")
        return Connected(
            credentials=Credentials(secrets={"api_key": key}), account=self._probe(key)
        )

    def check_connection(self, link: Link) -> Account:
        return self._probe(link.credentials.require_secret("api_key"))

    def publish(self, link: Link, post: Post) -> Published:
        if len(post.media) != 1 or post.media[0].is_video:
            raise ProviderRejected("an ImgBB upload is exactly one image")
        image = post.media[0]
        rules = self.capabilities.media
        if image.content_type not in rules.image_types:
            raise ProviderRejected(f"{image.filename}: ImgBB does not take {image.content_type}")
        if rules.max_image_bytes is not None and len(image.data) > rules.max_image_bytes:
            raise ProviderRejected(f"{image.filename} is larger than ImgBB accepts (32 MB)")
        name = post.text.strip()
        if len(name) > MAX_NAME:
            raise ProviderRejected(f"ImgBB keeps at most {MAX_NAME} characters of a title")
        fields: dict[str, str] = {"name": name} if name else {}
        expiration = post.options.get("expiration")
        if expiration is not None:
            if not expiration.isdigit() or not (
                MIN_EXPIRATION <= int(expiration) <= MAX_EXPIRATION
            ):
                raise ProviderRejected(
                    f"expiration is a number of seconds from {MIN_EXPIRATION} to {MAX_EXPIRATION}"
                )
            fields["expiration"] = expiration
        key = link.credentials.require_secret("api_key")
        data = self._upload(key, fields, (image.filename, image.data, image.content_type))
        if not data.get("id") or not data.get("url"):
            raise ProviderRetryable(f"{PLATFORM} uploaded without returning the image's URL")
        return Published(external_id=str(data["id"]), url=str(data["url"]))
