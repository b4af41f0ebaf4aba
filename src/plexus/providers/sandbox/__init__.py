"""The ``sandbox`` provider: Plexus's built-in practice platform (see ``platform``).

It connects with no external step (``POST /api/v1/connections {"provider": "sandbox"}``)
and then behaves like a real OAuth2 platform: hour-long bearer tokens refreshed with
rotating refresh tokens, revocation on disconnect, rate limits, content rules, and faults
on request. It is offered outside production, or wherever the operator points
``PLEXUS_PROVIDER_SANDBOX_API_URL`` at a sandbox platform.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlencode

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
    OAuthClient,
    OAuthSpec,
    Post,
    PostState,
    PostStatus,
    Provider,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    ProviderUnavailable,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
    TokenAuthMethod,
    raise_for_transport,
    retry_after_seconds,
)
from plexus.providers.oauth import credentials_from, refresh_tokens, revoke_token
from plexus.providers.sandbox.platform import (
    IMAGE_TYPES,
    MAX_MEDIA,
    MAX_MEDIA_BYTES,
    RATE_LIMIT,
    RATE_WINDOW,
    TEXT_LIMIT,
    SandboxPlatform,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

__all__ = ["SandboxPlatform", "SandboxProvider"]

#: What Plexus stores about an account (``Account`` columns): id, name, link.
MAX_EXTERNAL_ID: Final = 300
MAX_DISPLAY_NAME: Final = 300
MAX_ACCOUNT_URL: Final = 1000
#: The sandbox platform's one client (it needs no secret: it is a public client).
CLIENT: Final = OAuthClient("plexus-sandbox")


class SandboxProvider(Provider):
    name = "sandbox"
    display_name = "Sandbox (practice platform)"
    auth_kind = AuthKind.NONE
    capabilities = Capabilities(
        text=TextRules(max_length=TEXT_LIMIT, counting=TextCounting.CODE_POINTS, required=True),
        media=MediaRules(
            max_items=MAX_MEDIA, image_types=IMAGE_TYPES, max_image_bytes=MAX_MEDIA_BYTES
        ),
        rate_limits=(RateLimit(RATE_LIMIT, RATE_WINDOW),),
        idempotent_publish=True,
    )
    connect_fields = (
        ConnectField(
            "account_name",
            "Account name",
            required=False,
            help="How the practice account is named on the sandbox page.",
        ),
    )
    #: ``daily_cap``: posts per 24 hours per account, to practise with a capped platform.
    settings_keys: ClassVar[tuple[str, ...]] = ("api_url", "daily_cap")
    rotates_refresh_tokens = True

    # ---- where the platform is

    @property
    def api_url(self) -> str:
        configured = self.context.settings.get("api_url")
        return (configured or f"{self.context.public_url}/sandbox/api").rstrip("/")

    def limits_for(self, account: Account) -> Capabilities:
        """The sandbox's rules, with the operator's practice daily cap if one is set."""
        del account
        cap = self.context.settings.get("daily_cap")
        if cap is None or not cap.isdigit():
            return self.capabilities
        return replace(self.capabilities, daily_post_cap=int(cap))

    def is_configured(self) -> bool:
        return self.context.development or self.context.settings.get("api_url") is not None

    def _spec(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=f"{self.api_url}/oauth/authorize",
            token_url=f"{self.api_url}/oauth/token",
            revoke_url=f"{self.api_url}/oauth/revoke",
            scopes=("post",),
            token_auth_method=TokenAuthMethod.NONE,
        )

    def _client(self) -> httpx.Client:
        if not self.is_configured():
            raise ProviderUnavailable("the sandbox is not served by a production Plexus")
        return self.context.client(guarded=False, base_url=self.api_url)

    # ---- talking to it

    def _call(
        self,
        method: str,
        path: str,
        link: Link | None = None,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if link is not None:
            sent["authorization"] = f"Bearer {link.credentials.access_token}"
        try:
            with self._client() as http:
                response = http.request(method, path, json=json, headers=sent)
        except httpx.HTTPError as exc:
            raise raise_for_transport(exc, "the sandbox") from None
        self._raise_for(response)
        return response

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:  # noqa: PLR2004
            return
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = str(body.get("error", response.status_code))
        message = str(body.get("message", ""))[:200]
        if response.status_code == 429:  # noqa: PLR2004
            raise ProviderRetryable(
                "the sandbox is limiting requests",
                retry_after=retry_after_seconds(response),
                rate_limited=True,
            )
        if response.status_code >= 500:  # noqa: PLR2004
            raise ProviderRetryable(f"the sandbox answered {response.status_code}")
        if response.status_code == 401:  # noqa: PLR2004
            if code == "token_expired":
                raise ProviderTokenExpired("the sandbox access token has expired")
            raise ProviderNeedsReauth(f"the sandbox refused the token ({code})")
        raise ProviderRejected(f"{code}: {message}" if message else code)

    # ---- connecting

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        name = fields.get("account_name") or "Sandbox account"
        response = self._call("POST", "/accounts", json={"name": name})
        data = response.json()
        credentials = credentials_from(data)
        account = _account(
            str(data["account_id"]), str(data["name"]), f"{self.api_url.removesuffix('/api')}/"
        )
        return Connected(credentials, account)

    def refresh(self, link: Link) -> Credentials:
        with self._client() as http:
            return refresh_tokens(http, self._spec(), CLIENT, link.credentials, "the sandbox")

    def can_refresh(self, link: Link) -> bool:
        return link.credentials.refresh_token is not None

    def can_revoke(self, link: Link) -> bool:
        """Always: ``revoke`` is RFC 7009 at the sandbox platform."""
        del link
        return True

    def revoke(self, link: Link) -> None:
        with self._client() as http:
            revoke_token(http, self._spec(), CLIENT, link.credentials, "the sandbox")

    def check_connection(self, link: Link) -> Account:
        data = self._call("GET", "/me", link).json()
        return _account(str(data["id"]), str(data["name"]), link.account.url)

    # ---- publishing

    def publish(self, link: Link, post: Post) -> Published:
        headers = {"idempotency-key": post.idempotency_key} if post.idempotency_key else {}
        media = [
            {
                "filename": item.filename,
                "content_type": item.content_type,
                "alt": item.alt_text,
                "data": base64.b64encode(item.data).decode(),
            }
            for item in post.media
        ]
        data = self._call(
            "POST", "/posts", link, json={"text": post.text, "media": media}, headers=headers
        ).json()
        return Published(external_id=str(data["id"]), url=str(data["url"]))

    def find_published(self, link: Link, post: Post, since: datetime) -> Published | None:
        """The post its idempotency key created, if the platform holds one."""
        del since  # the key alone identifies it
        if not post.idempotency_key:
            raise ProviderUnavailable("without an idempotency key the sandbox cannot tell")
        response = self._call(
            "GET", f"/posts?{urlencode({'idempotency_key': post.idempotency_key})}", link
        )
        for found in response.json().get("posts", []):
            return Published(external_id=str(found["id"]), url=str(found["url"]))
        return None

    def delete(self, link: Link, external_id: str) -> None:
        self._call("DELETE", f"/posts/{_safe_id(external_id)}", link)

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        data = self._call("GET", f"/posts/{_safe_id(external_id)}", link).json()
        state = PostState.DELETED if data.get("deleted") else PostState.PUBLISHED
        return PostStatus(state=state, url=str(data["url"]))


def _account(external_id: str, display_name: str, url: str | None) -> Account:
    """An account that fits the columns it is stored in: an id too long is refused (a
    shortened one could name another account), a name is shortened, a link too long is
    dropped rather than shortened into a wrong one.
    """
    if not external_id or len(external_id) > MAX_EXTERNAL_ID:
        raise ProviderRejected("the sandbox answered with an unusable account id")
    if len(display_name) > MAX_DISPLAY_NAME:
        display_name = display_name[: MAX_DISPLAY_NAME - 1] + "…"
    if url is not None and len(url) > MAX_ACCOUNT_URL:
        url = None
    return Account(external_id=external_id, display_name=display_name, url=url)


def _safe_id(external_id: str) -> str:
    if not external_id.replace("_", "").isalnum():
        raise ProviderRejected("not a sandbox post id")
    return external_id
