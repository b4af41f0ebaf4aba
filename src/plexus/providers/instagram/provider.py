"""Instagram professional accounts through the Instagram API with Facebook Login.

Connecting: Facebook Login's authorization code flow (with PKCE S256, which Facebook's
manual login flow accepts), then the short-lived user token is exchanged for a
long-lived one (``grant_type=fb_exchange_token``, about 60 days), then the Instagram
business account is found through the Facebook Pages the user manages
(``/me/accounts?fields=instagram_business_account``).

Tokens: Facebook issues no refresh tokens. A long-lived user token that is still valid
can be exchanged again for a long-lived token; an expired one cannot, and then only
connecting again helps. ``refresh`` does exactly that exchange, and says so
(``ProviderNeedsReauth``) when the token expired or Facebook did not extend it.

Publishing goes through media containers (see ``publishing``); Instagram fetches every
medium from its public URL. The Graph API cannot delete published media.

No SDK: Facebook's Python SDK is unmaintained, and the calls are a handful of plain HTTP
requests on the shared outbound client.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from plexus.providers.base import (
    REFRESH_MARGIN,
    Account,
    AuthKind,
    AuthorizationRequest,
    Capabilities,
    Connected,
    ConnectField,
    Credentials,
    Link,
    MediaRules,
    OAuthSpec,
    Post,
    PostState,
    PostStatus,
    Provider,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderTokenExpired,
    ProviderUnavailable,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
)
from plexus.providers.instagram.graph import (
    PLATFORM,
    Graph,
    MissingObject,
    token_call,
)
from plexus.providers.instagram.publishing import (
    MAX_CAPTION,
    MAX_CAROUSEL,
    MAX_HASHTAGS,
    Publisher,
    plan,
    read_quota,
)
from plexus.providers.oauth import credentials_from

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

DEFAULT_GRAPH_URL: Final = "https://graph.facebook.com"
DEFAULT_DIALOG_URL: Final = "https://www.facebook.com"
DEFAULT_VERSION: Final = "v25.0"
#: The permissions content publishing needs with Facebook Login.
SCOPES: Final = (
    "instagram_basic",
    "instagram_content_publish",
    "pages_show_list",
    "pages_read_engagement",
)
#: Meta suggests polling containers about once a minute for up to five minutes; a
#: worker should not block that long, so the defaults are shorter and configurable.
DEFAULT_POLL_INTERVAL: Final = 5.0
DEFAULT_DEADLINE: Final = 120.0
#: How many pages of ``/me/accounts`` are read at most while looking for the account.
MAX_PAGE_PAGES: Final = 10
MB: Final = 1024 * 1024
#: Posts one account may publish through the API in a moving 24 hours.
DAILY_POST_CAP: Final = 50
#: ``expires_within(_NOW)``: already expired.
_NOW: Final = timedelta(0)
INSTAGRAM_REFRESH_LEAD: Final = timedelta(days=7)


def _float_setting(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


class InstagramProvider(Provider):
    """Instagram business and creator accounts (Instagram API with Facebook Login)."""

    name = "instagram"
    display_name = "Instagram"
    auth_kind = AuthKind.OAUTH2
    # The content publishing limits Meta documents (IG User Media, Media Publish): a
    # caption of 2,200 characters with at most 30 hashtags; JPEG images of at most 8 MB
    # between 4:5 and 1.91:1; MP4 or MOV videos, published as reels, of at most 300 MB
    # and 15 minutes; a carousel of at most 10 items; 50 published posts per account in
    # a moving 24 hours (``content_publishing_limit`` says what is left).
    capabilities = Capabilities(
        text=TextRules(
            max_length=MAX_CAPTION, counting=TextCounting.CODE_POINTS, max_hashtags=MAX_HASHTAGS
        ),
        media=MediaRules(
            max_items=MAX_CAROUSEL,
            image_types=frozenset({"image/jpeg"}),
            video_types=frozenset({"video/mp4", "video/quicktime"}),
            max_image_bytes=8 * MB,
            max_video_bytes=300 * MB,
            requires_public_url=True,
            required=True,
            min_aspect_ratio=4 / 5,
            max_aspect_ratio=1.91,
            max_video_seconds=15 * 60,
        ),
        # Platform rate limit for user tokens: 200 calls per user in a rolling hour.
        rate_limits=(RateLimit(200, 3600, "connection"),),
        daily_post_cap=DAILY_POST_CAP,
        can_delete=False,
        can_read_back=True,
    )
    oauth = OAuthSpec(
        authorize_url=f"{DEFAULT_DIALOG_URL}/{DEFAULT_VERSION}/dialog/oauth",
        token_url=f"{DEFAULT_GRAPH_URL}/{DEFAULT_VERSION}/oauth/access_token",
        scopes=SCOPES,
        scope_separator=",",
    )
    connect_fields = (
        ConnectField(
            "instagram_account",
            "Instagram username",
            required=False,
            help="Only needed when your Facebook Pages hold several Instagram accounts.",
        ),
    )
    settings_keys = (
        "client_id",
        "client_secret",
        "graph_url",
        "dialog_url",
        "api_version",
        "login_config_id",
        "poll_interval_seconds",
        "publish_deadline_seconds",
    )
    secret_settings_keys = ("client_secret",)

    # ---- configuration

    def is_configured(self) -> bool:
        settings = self.context.settings
        return bool(settings.get("client_id") and settings.get("client_secret"))

    @property
    def _graph_url(self) -> str:
        return (self.context.settings.get("graph_url") or DEFAULT_GRAPH_URL).rstrip("/")

    @property
    def _version(self) -> str:
        return self.context.settings.get("api_version") or DEFAULT_VERSION

    def _app_secret(self) -> str:
        return self.context.settings.require("client_secret", self.name)

    def _client(self) -> httpx.Client:
        return self.context.client(guarded=False, base_url=self._graph_url)

    def _graph(self, http: httpx.Client, token: str) -> Graph:
        secret = self.context.settings.get("client_secret")
        return Graph(http, token=token, app_secret=secret, version=self._version)

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        del params
        dialog = (self.context.settings.get("dialog_url") or DEFAULT_DIALOG_URL).rstrip("/")
        config_id = self.context.settings.get("login_config_id")
        return OAuthSpec(
            authorize_url=f"{dialog}/{self._version}/dialog/oauth",
            token_url=f"{self._graph_url}/{self._version}/oauth/access_token",
            scopes=SCOPES,
            scope_separator=",",
            # Facebook Login for Business apps name a login configuration instead.
            extra_authorize_params=(("config_id", config_id),) if config_id else (),
        )

    # ---- connecting

    def finish_authorization(
        self,
        request: AuthorizationRequest,
        callback: Mapping[str, str],
        flow_data: Mapping[str, str],
    ) -> Connected:
        """Exchange the code (Graph's error format, so not the generic RFC 6749 parser)."""
        del flow_data
        if callback.get("error"):
            raise ProviderRejected(f"Facebook Login ended without access ({callback['error']})")
        code = callback.get("code")
        if not code:
            raise ProviderRejected("the callback carries no authorization code")
        if request.client is None:
            raise ProviderRejected("no OAuth client for this flow")
        secret = request.client.client_secret or self._app_secret()
        fields = {
            "client_id": request.client.client_id,
            "client_secret": secret,
            "redirect_uri": request.redirect_uri,
            "code": code,
            "code_verifier": request.code_verifier,
        }
        with self._client() as http:
            data = token_call(http, self._version, fields, (secret, code))
        return self.complete_connection(credentials_from(data), request.params)

    def complete_connection(self, credentials: Credentials, params: Mapping[str, str]) -> Connected:
        """Trade the short-lived token for a long-lived one, then find the account."""
        long_lived = self._exchange(credentials)
        token = long_lived.access_token or ""
        with self._client() as http:
            account = self._discover(self._graph(http, token), params.get("instagram_account"))
        return Connected(credentials=long_lived, account=account)

    def _exchange(self, credentials: Credentials) -> Credentials:
        if not credentials.access_token:
            raise ProviderNeedsReauth(f"the {PLATFORM} connection has no access token")
        secret = self._app_secret()
        fields = {
            "grant_type": "fb_exchange_token",
            "client_id": self.context.settings.require("client_id", self.name),
            "client_secret": secret,
            "fb_exchange_token": credentials.access_token,
        }
        with self._client() as http:
            data = token_call(http, self._version, fields, (secret, credentials.access_token))
        return credentials_from(data, credentials)

    def _discover(self, graph: Graph, wanted: str | None) -> Account:
        found: list[dict[str, Any]] = []
        params = {"fields": "id,name,instagram_business_account{id,username,name}", "limit": "100"}
        for _ in range(MAX_PAGE_PAGES):
            body = graph.get("me/accounts", params)
            for page in body.get("data") or []:
                ig = page.get("instagram_business_account") if isinstance(page, dict) else None
                if isinstance(ig, dict) and ig.get("id"):
                    found.append({"page_id": str(page.get("id")), **ig})
            after = ((body.get("paging") or {}).get("cursors") or {}).get("after")
            if not after or not (body.get("paging") or {}).get("next"):
                break
            params = {**params, "after": str(after)}
        if not found:
            raise ProviderRejected(
                "none of your Facebook Pages has an Instagram professional account linked"
            )
        if wanted:
            wanted = wanted.removeprefix("@").lower()
            found = [a for a in found if wanted in (str(a["id"]), str(a.get("username")).lower())]
            if not found:
                raise ProviderRejected("that Instagram account is not linked to your Pages")
        if len(found) > 1:
            names = ", ".join(f"@{a.get('username')}" for a in found)
            raise ProviderRejected(f"several Instagram accounts are linked ({names}); name one")
        return self._account(found[0], page_id=found[0]["page_id"])

    @staticmethod
    def _account(ig: Mapping[str, Any], *, page_id: str | None) -> Account:
        username = str(ig.get("username") or "")
        settings = {"ig_user_id": str(ig["id"]), "username": username}
        if page_id:
            settings["page_id"] = page_id
        return Account(
            external_id=str(ig["id"]),
            display_name=f"@{username}" if username else str(ig.get("name") or ig["id"]),
            url=f"https://www.instagram.com/{username}/" if username else None,
            settings=settings,
        )

    # ---- token life cycle

    def refresh_lead(self, link: Link) -> timedelta:
        """Long-lived tokens (60 days) are re-exchanged a week ahead: a missed day of the
        background job, or a Facebook outage, then costs nothing.
        """
        del link
        return INSTAGRAM_REFRESH_LEAD

    def can_refresh(self, link: Link) -> bool:
        credentials = link.credentials
        return bool(credentials.access_token) and not credentials.expires_within(_NOW)

    def refresh(self, link: Link) -> Credentials:
        """Re-exchange the still-valid long-lived token for a fresh long-lived token."""
        current = link.credentials
        if not current.access_token or current.expires_within(_NOW):
            raise ProviderNeedsReauth(
                f"the {PLATFORM} token expired; Facebook cannot extend it, connect again"
            )
        renewed = self._exchange(current)
        extended = (
            current.expires_at is None
            or renewed.expires_at is None
            or renewed.expires_at > current.expires_at
        )
        if not extended and current.expires_within(REFRESH_MARGIN):
            raise ProviderNeedsReauth(
                f"Facebook did not extend the {PLATFORM} token before it expires; connect again"
            )
        return renewed

    def can_revoke(self, link: Link) -> bool:
        """``revoke`` de-authorizes the app whenever there is a token to do it with."""
        return bool(link.credentials.access_token)

    def revoke(self, link: Link) -> None:
        """``DELETE /me/permissions``: de-authorizes the app for this user."""
        token = link.credentials.access_token
        if not token:
            return
        with self._client() as http:
            try:
                self._graph(http, token).delete("me/permissions")
            except (ProviderNeedsReauth, ProviderTokenExpired):
                return  # the token is already dead: nothing left to revoke

    # ---- what a connection does

    def _token(self, link: Link) -> str:
        token = link.credentials.access_token
        if not token:
            raise ProviderNeedsReauth(f"the {PLATFORM} connection has no access token")
        return token

    def check_connection(self, link: Link) -> Account:
        with self._client() as http:
            graph = self._graph(http, self._token(link))
            body = graph.get(link.account.external_id, {"fields": "id,username,name"})
        if str(body.get("id")) != link.account.external_id:
            raise ProviderNeedsReauth(f"the token no longer reaches this {PLATFORM} account")
        return self._account(body, page_id=link.account.settings.get("page_id"))

    def publish(self, link: Link, post: Post) -> Published:
        ready = plan(post, self.limits_for(link.account))
        settings = self.context.settings
        with self._client() as http:
            publisher = Publisher(
                graph=self._graph(http, self._token(link)),
                ig_user_id=link.account.external_id,
                poll_interval=_float_setting(
                    settings.get("poll_interval_seconds"), DEFAULT_POLL_INTERVAL
                ),
                deadline=_float_setting(settings.get("publish_deadline_seconds"), DEFAULT_DEADLINE),
            )
            return publisher.publish(ready)

    def publishing_quota(self, link: Link) -> int | None:
        """What is left of the account's 24-hour publishing limit
        (``content_publishing_limit``: ``config.quota_total - quota_usage``), or None when
        Instagram's answer lacks either number.
        """
        with self._client() as http:
            quota = read_quota(self._graph(http, self._token(link)), link.account.external_id)
        return None if quota is None else quota.remaining

    def delete(self, link: Link, external_id: str) -> None:
        del link, external_id
        raise ProviderUnavailable(
            "the Instagram API cannot delete published media; delete it in the Instagram app"
        )

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        with self._client() as http:
            try:
                body = self._graph(http, self._token(link)).get(
                    external_id, {"fields": "id,permalink"}
                )
            except MissingObject:
                return PostStatus(PostState.DELETED, detail=f"{PLATFORM} no longer has it")
        link_url = body.get("permalink")
        return PostStatus(PostState.PUBLISHED, url=str(link_url) if link_url else None)
