"""Imgur: an image host whose published "post" is one image with a title and description.

Connecting is OAuth2's authorization code flow. Imgur documents neither PKCE nor scopes,
so the spec sends no ``code_challenge`` and no ``scope`` (a state is still sent and
checked). The token response carries a refresh token; each refresh returns a new one,
which Plexus stores in place of the old (``rotates_refresh_tokens``). Imgur has no token
revocation endpoint: a user revokes the app at imgur.com (settings, applications).

Publishing uploads the post's single image to ``POST /3/image`` (multipart) on the user's
account; the text becomes its description (and, up to its first line, its title). The
direct image link is returned as the post's URL, which is what an Instagram post needs as
its public media URL.

Errors come as ``{"data": {"error", "request", "method"}, "success": false, "status"}``.
Rate limits are credits: ``X-RateLimit-User*`` (per user and app, reset time as a unix
timestamp), ``X-RateLimit-Client*`` (the app's daily credits) and, for POSTs,
``X-Post-Rate-Limit-*`` (reset in seconds); a spent budget answers 429.

No SDK: the maintained Python clients are thin wrappers over requests without our client's
timeouts and redaction.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from plexus.providers.base import (
    Account,
    AuthKind,
    Capabilities,
    Connected,
    Credentials,
    Link,
    MediaRules,
    OAuthSpec,
    Post,
    PostState,
    PostStatus,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
    raise_for_transport,
    retry_after_seconds,
)
from plexus.providers.oauth import credentials_from, token_request

if TYPE_CHECKING:
    from collections.abc import Mapping

PLATFORM: Final = "Imgur"
DEFAULT_API_URL: Final = "https://api.imgur.com"
MB: Final = 1024 * 1024
#: Imgur documents no title limit; the first line, cut here, keeps titles readable.
MAX_TITLE: Final = 128
_NOT_FOUND: Final = 404


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def rate_limit_delay(response: httpx.Response) -> float | None:
    """Seconds until the spent budget is back: ``Retry-After``, else the POST budget's
    reset (seconds), else the user budget's reset (a unix timestamp).
    """
    delay = retry_after_seconds(response)
    if delay is not None:
        return delay
    if _int_header(response, "x-post-rate-limit-remaining") == 0:
        reset = _int_header(response, "x-post-rate-limit-reset")
        if reset is not None:
            return float(max(reset, 0))
    if _int_header(response, "x-ratelimit-userremaining") == 0:
        reset_at = _int_header(response, "x-ratelimit-userreset")
        if reset_at is not None:
            return max(0.0, reset_at - time.time())
    return None


def _budget_spent(response: httpx.Response) -> bool:
    return any(
        _int_header(response, name) == 0
        for name in (
            "x-ratelimit-userremaining",
            "x-ratelimit-clientremaining",
            "x-post-rate-limit-remaining",
        )
    )


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"status {response.status_code}"
    data = body.get("data") if isinstance(body, dict) else None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):  # upload errors nest one level more
        error = error.get("message")
    return str(error or f"status {response.status_code}")[:200]


class ImageNotFound(ProviderRejected):
    """Imgur answered 404: the image does not exist (or no longer does)."""


def error_for(response: httpx.Response, token: str = "") -> ProviderError:
    status = response.status_code
    message = _message(response)
    if token:
        message = message.replace(token, "[redacted]")
    if status == 429 or (status == 403 and _budget_spent(response)):  # noqa: PLR2004
        return ProviderRetryable(
            f"{PLATFORM} rate limit reached: {message}",
            retry_after=rate_limit_delay(response),
            rate_limited=True,
        )
    if status == 401:  # noqa: PLR2004
        return ProviderTokenExpired(f"{PLATFORM} refused the access token: {message}")
    if status == 403:  # noqa: PLR2004
        return ProviderNeedsReauth(f"{PLATFORM} refused access: {message}")
    if status >= 500:  # noqa: PLR2004
        return ProviderRetryable(f"{PLATFORM} had a server error ({status})")
    if status == _NOT_FOUND:
        return ImageNotFound(f"{PLATFORM} has no such image")
    return ProviderRejected(f"{PLATFORM} refused the request: {message}")


class ImgurProvider(Provider):
    """Imgur image uploads on the user's own account."""

    name = "imgur"
    display_name = "Imgur"
    auth_kind = AuthKind.OAUTH2
    capabilities = Capabilities(
        # Imgur documents no limit for an image's description.
        text=TextRules(max_length=None, counting=TextCounting.CODE_POINTS),
        media=MediaRules(
            max_items=1,
            image_types=frozenset(
                {"image/jpeg", "image/png", "image/gif", "image/apng", "image/tiff"}
            ),
            max_image_bytes=20 * MB,
            required=True,
        ),
        # Credits: about 12,500 requests (1,250 uploads) a day per app, 1,250 POSTs an
        # hour per IP; an upload costs 10 credits.
        rate_limits=(RateLimit(12_500, 86_400, "app"), RateLimit(1_250, 3_600, "app")),
        daily_post_cap=None,
        can_delete=True,
        can_read_back=True,
    )
    rotates_refresh_tokens = True
    settings_keys = ("client_id", "client_secret", "api_url", "oauth_url")
    secret_settings_keys = ("client_secret",)

    def is_configured(self) -> bool:
        settings = self.context.settings
        return bool(settings.get("client_id") and settings.get("client_secret"))

    @property
    def _api_url(self) -> str:
        return (self.context.settings.get("api_url") or DEFAULT_API_URL).rstrip("/")

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        """Imgur's endpoints; no scopes exist and PKCE is not documented, so neither is
        sent (``pkce=False``).
        """
        del params
        base = (self.context.settings.get("oauth_url") or self._api_url).rstrip("/")
        return OAuthSpec(
            authorize_url=f"{base}/oauth2/authorize",
            token_url=f"{base}/oauth2/token",
            scopes=(),
            pkce=False,
        )

    def _client(self) -> httpx.Client:
        return self.context.client(guarded=False, base_url=self._api_url)

    def _call(self, http: httpx.Client, method: str, path: str, token: str, **kw: Any) -> Any:
        try:
            response = http.request(
                method, path, headers={"authorization": f"Bearer {token}"}, **kw
            )
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, PLATFORM) from None
        if not response.is_success:
            raise error_for(response, token)
        try:
            body = response.json()
        except ValueError:
            raise ProviderRetryable(
                f"{PLATFORM} answered with something that is not JSON"
            ) from None
        if not isinstance(body, dict) or body.get("success") is False:
            raise ProviderRetryable(f"{PLATFORM} answered with an unexpected shape")
        return body.get("data")

    @staticmethod
    def _token(link: Link) -> str:
        token = link.credentials.access_token
        if not token:
            raise ProviderNeedsReauth(f"the {PLATFORM} connection has no access token")
        return token

    # ---- connecting

    def complete_connection(self, credentials: Credentials, params: Mapping[str, str]) -> Connected:
        del params
        if not credentials.access_token:
            raise ProviderNeedsReauth(f"{PLATFORM} returned no access token")
        with self._client() as http:
            account = self._account(http, credentials.access_token)
        return Connected(credentials=credentials, account=account)

    def _account(self, http: httpx.Client, token: str) -> Account:
        data = self._call(http, "GET", "/3/account/me", token)
        if not isinstance(data, dict) or data.get("id") is None:
            raise ProviderRetryable(f"{PLATFORM} returned no account")
        username = str(data.get("url") or data["id"])
        return Account(
            external_id=str(data["id"]),
            display_name=username,
            url=f"https://imgur.com/user/{username}",
            settings={"username": username},
        )

    def refresh(self, link: Link) -> Credentials:
        """The refresh-token grant. Imgur answers a dead refresh token with a plain 400
        in its own envelope (not RFC 6749's ``invalid_grant``), so any refusal here means
        the user must connect again.
        """
        credentials = link.credentials
        if not credentials.refresh_token:
            raise ProviderNeedsReauth(f"the {PLATFORM} connection has no refresh token")
        spec = self.oauth_spec(link.params)
        client = link.client or self.oauth_client(link.params)
        body = prepare_token_request("refresh_token", "", refresh_token=credentials.refresh_token)
        with self.context.client(guarded=False) as http:
            try:
                data = token_request(http, spec, client, body, PLATFORM)
            except ProviderRejected as error:
                raise ProviderNeedsReauth(
                    f"{PLATFORM} refused the refresh token; connect again"
                ) from error
        return credentials_from(data, credentials)

    # ---- what a connection does

    def check_connection(self, link: Link) -> Account:
        with self._client() as http:
            return self._account(http, self._token(link))

    def publish(self, link: Link, post: Post) -> Published:
        if len(post.media) != 1 or post.media[0].is_video:
            raise ProviderRejected("an Imgur post is exactly one image")
        image = post.media[0]
        rules = self.capabilities.media
        if image.content_type not in rules.image_types:
            raise ProviderRejected(f"{image.filename}: Imgur does not take {image.content_type}")
        if rules.max_image_bytes is not None and len(image.data) > rules.max_image_bytes:
            raise ProviderRejected(f"{image.filename} is larger than Imgur accepts (20 MB)")
        text = post.text.strip()
        title = post.options.get("title") or text.split("\n", 1)[0][:MAX_TITLE]
        fields = {"type": "file", "title": title, "description": text}
        files = {"image": (image.filename, image.data, image.content_type)}
        with self._client() as http:
            data = self._call(http, "POST", "/3/image", self._token(link), data=fields, files=files)
        if not isinstance(data, dict) or not data.get("id") or not data.get("link"):
            raise ProviderRetryable(f"{PLATFORM} uploaded without returning the image's link")
        return Published(external_id=str(data["id"]), url=str(data["link"]))

    def delete(self, link: Link, external_id: str) -> None:
        """Delete an image the account owns (by id; the deletehash is for anonymous ones)."""
        with self._client() as http:
            try:
                self._call(http, "DELETE", f"/3/image/{external_id}", self._token(link))
            except ImageNotFound:
                return  # already gone: what deleting wants

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        with self._client() as http:
            try:
                data = self._call(http, "GET", f"/3/image/{external_id}", self._token(link))
            except ImageNotFound:
                return PostStatus(PostState.DELETED, detail=f"{PLATFORM} no longer has it")
        url = data.get("link") if isinstance(data, dict) else None
        return PostStatus(PostState.PUBLISHED, url=str(url) if url else None)
