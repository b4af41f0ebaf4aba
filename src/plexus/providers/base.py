"""The provider contract: what every platform integration declares and implements.

A provider is a class that mostly *declares* (its auth kind, OAuth endpoints and scopes,
what it can publish and within which limits) and implements a handful of methods against
the platform's API: ``publish``, ``delete``, ``fetch_status``, ``check_connection``, and
for OAuth providers the authorization hooks. Providers stand on the ground floor: they
import nothing of Plexus but ``plexus.providers`` and ``plexus.kit``; they never touch the
database or the vault. The connection service hands them decrypted ``Credentials`` for one
call and stores whatever new credentials they return (after ``refresh``).

Errors a provider raises are always one of the ``ProviderError`` subclasses below, so the
callers know what to do without knowing the platform:

- ``ProviderRetryable(retry_after)``: try again later (timeouts, 5xx, 429).
- ``ProviderTokenExpired``: the access token was refused as expired; refresh once, retry.
- ``ProviderNeedsReauth``: the user must connect the account again (revoked, invalid_grant).
- ``ProviderRejected(reason)``: the platform said no to this request; never retried.
- ``ProviderUnavailable``: the provider cannot be used here (not configured, unsupported).

Messages never carry a token, a key or a full URL with credentials in it.
"""

from __future__ import annotations

import json
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Final

import grapheme
import httpx

from plexus.kit.http import DestinationPolicy, outbound_client

if TYPE_CHECKING:
    from collections.abc import Mapping

#: How far ahead of expiry a token is refreshed.
REFRESH_MARGIN: Final = timedelta(minutes=5)
#: The longest reason text kept from a platform's error body.
MAX_REASON_CHARS: Final = 300


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """Base of every error a provider raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message[:MAX_REASON_CHARS])
        self.message = message[:MAX_REASON_CHARS]


class ProviderRetryable(ProviderError):
    """A temporary failure: timeouts, 5xx, throttling. ``retry_after`` in seconds if known."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        rate_limited: bool = False,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        #: The request may have reached the platform and been acted on (a read timeout, a
        #: dropped connection after the body was sent): a publish must then be reconciled,
        #: never blindly sent again.
        self.maybe_delivered = maybe_delivered


class ProviderTokenExpired(ProviderError):
    """The platform refused the access token as expired: refresh it once and retry."""


class ProviderNeedsReauth(ProviderError):
    """The credentials are no longer valid; only the user can fix it by reconnecting."""


class ProviderRejected(ProviderError):
    """The platform refused this request for good (validation, policy, missing object)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = self.message


class ProviderUnavailable(ProviderError):
    """The provider cannot be used: not configured here, or the feature is unsupported."""


# --------------------------------------------------------------------------- declarations


class AuthKind(StrEnum):
    """How an account of this platform is connected."""

    NONE = "none"
    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    ACCESS_TOKEN = "access_token"  # noqa: S105 - a kind name, not a secret
    APP_PASSWORD = "app_password"  # noqa: S105 - a kind name, not a secret
    BOT_TOKEN = "bot_token"  # noqa: S105 - a kind name, not a secret
    WEBHOOK_URL = "webhook_url"


class TextCounting(StrEnum):
    """How a platform counts the length of a post's text."""

    CODE_POINTS = "code_points"
    GRAPHEMES = "graphemes"
    UTF16 = "utf16"
    UTF8_BYTES = "utf8_bytes"
    #: X's weighted count: CJK and emoji weigh 2, any URL ``url_length`` (23).
    X_WEIGHTED = "x_weighted"
    #: Mastodon's: graphemes, any http(s) URL as ``url_length``, remote mentions by
    #: their local part.
    MASTODON = "mastodon"


def text_length(text: str, counting: TextCounting, *, url_length: int = 23) -> int:
    """The length of ``text`` as a platform that counts by ``counting`` sees it;
    ``url_length`` is what one URL counts where the counting charges URLs a fixed length.
    """
    if counting is TextCounting.X_WEIGHTED:
        from plexus.providers.x_text import weighted_length

        return weighted_length(text, url_length)
    if counting is TextCounting.MASTODON:
        from plexus.providers.mastodon.text import status_length

        return status_length(text, url_length)
    normalized = unicodedata.normalize("NFC", text)
    if counting is TextCounting.GRAPHEMES:
        return int(grapheme.length(normalized))
    if counting is TextCounting.UTF16:
        return len(normalized.encode("utf-16-le")) // 2
    if counting is TextCounting.UTF8_BYTES:
        return len(normalized.encode("utf-8"))
    return len(normalized)


@dataclass(frozen=True, slots=True)
class TextRules:
    max_length: int | None
    counting: TextCounting = TextCounting.CODE_POINTS
    required: bool = False
    #: The most hashtags a post may carry (Instagram: 30), if limited.
    max_hashtags: int | None = None
    #: What one URL counts under X_WEIGHTED and MASTODON (a Mastodon server's
    #: ``characters_reserved_per_url``).
    url_length: int = 23


@dataclass(frozen=True, slots=True)
class MediaRules:
    max_items: int = 0
    image_types: frozenset[str] = frozenset()
    video_types: frozenset[str] = frozenset()
    max_image_bytes: int | None = None
    max_video_bytes: int | None = None
    #: The platform fetches media from a public URL instead of taking an upload.
    requires_public_url: bool = False
    #: At least one media item is required (Instagram).
    required: bool = False
    max_alt_text: int | None = None
    #: Width / height bounds for images (Instagram: 4:5 to 1.91:1), if any; videos are
    #: not held to them (a 9:16 reel is fine where a 9:16 photo is not).
    min_aspect_ratio: float | None = None
    max_aspect_ratio: float | None = None
    max_video_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``requests`` per ``per_seconds``; ``scope`` is "connection" or "app"."""

    requests: int
    per_seconds: int
    scope: str = "connection"


@dataclass(frozen=True, slots=True)
class Capabilities:
    text: TextRules
    media: MediaRules = field(default_factory=MediaRules)
    rate_limits: tuple[RateLimit, ...] = ()
    #: Posts per rolling 24 hours the platform allows for one account, if capped.
    daily_post_cap: int | None = None
    can_delete: bool = True
    #: ``fetch_status`` can read a published post back from the platform.
    can_read_back: bool = True
    inbound_webhooks: bool = False
    #: ``publish`` uses ``Post.spans`` (bold, links ...); otherwise a post's text is plain,
    #: with every link's address written out.
    rich_text: bool = False
    #: The platform honours ``Post.idempotency_key``: a publish sent twice with one key
    #: creates one post, so an unconfirmed publication may be sent again safely.
    idempotent_publish: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, for ``GET /api/v1/providers``."""
        media = self.media
        return {
            "text": {
                "max_length": self.text.max_length,
                "counting": self.text.counting.value,
                "required": self.text.required,
                "max_hashtags": self.text.max_hashtags,
                "url_length": self.text.url_length,
            },
            "media": {
                "max_items": media.max_items,
                "image_types": sorted(media.image_types),
                "video_types": sorted(media.video_types),
                "max_image_bytes": media.max_image_bytes,
                "max_video_bytes": media.max_video_bytes,
                "requires_public_url": media.requires_public_url,
                "required": media.required,
                "max_alt_text": media.max_alt_text,
                "min_aspect_ratio": media.min_aspect_ratio,
                "max_aspect_ratio": media.max_aspect_ratio,
                "max_video_seconds": media.max_video_seconds,
            },
            "rate_limits": [
                {"requests": r.requests, "per_seconds": r.per_seconds, "scope": r.scope}
                for r in self.rate_limits
            ],
            "daily_post_cap": self.daily_post_cap,
            "can_delete": self.can_delete,
            "can_read_back": self.can_read_back,
            "inbound_webhooks": self.inbound_webhooks,
            "rich_text": self.rich_text,
            "idempotent_publish": self.idempotent_publish,
        }


class TokenAuthMethod(StrEnum):
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - RFC 7591 method name
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - RFC 7591 method name
    NONE = "none"


@dataclass(frozen=True, slots=True)
class OAuthSpec:
    """The OAuth2 endpoints and scopes of a platform (or of one instance of it)."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    revoke_url: str | None = None
    pkce: bool = True
    oidc: bool = False
    scope_separator: str = " "
    token_auth_method: TokenAuthMethod = TokenAuthMethod.CLIENT_SECRET_POST
    extra_authorize_params: tuple[tuple[str, str], ...] = ()
    #: The authorization server's issuer identifier (RFC 9207 ``iss`` in the callback);
    #: by default the origin of ``authorize_url``.
    issuer: str | None = None

    @property
    def expected_issuer(self) -> str:
        if self.issuer:
            return self.issuer.rstrip("/")
        from urllib.parse import urlsplit

        parts = urlsplit(self.authorize_url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class ConnectField:
    """One value the user supplies to connect (an instance URL, a bot token, a channel)."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    help: str = ""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """The client a flow runs as: configured by the operator or registered per instance."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Credentials:
    """Secret material for one connection. Serialised whole into the vault, never logged.

    ``secrets`` holds anything else a provider needs to keep secret (an API key, a bot
    token, a webhook URL, a DPoP private key).
    """

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 scheme name
    scope: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: When the access token was issued (so its lifetime is known), if the platform said.
    issued_at: datetime | None = None

    @property
    def lifetime(self) -> timedelta | None:
        if self.expires_at is None or self.issued_at is None:
            return None
        return self.expires_at - self.issued_at

    def expires_within(self, margin: timedelta, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return self.expires_at <= (now or datetime.now(UTC)) + margin

    def refreshed(
        self,
        *,
        access_token: str,
        expires_in: float | None,
        refresh_token: str | None = None,
        scope: str | None = None,
        now: datetime | None = None,
    ) -> Credentials:
        """New credentials after a refresh; a response without a refresh token keeps ours."""
        moment = now or datetime.now(UTC)
        expires_at = None
        if expires_in is not None:
            expires_at = moment + timedelta(seconds=float(expires_in))
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token or self.refresh_token,
            expires_at=expires_at,
            scope=scope or self.scope,
            issued_at=moment,
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "token_type": self.token_type,
                "scope": self.scope,
                "secrets": dict(self.secrets),
                "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Credentials:
        data = json.loads(raw)
        expires = data.get("expires_at")
        issued = data.get("issued_at")
        return cls(
            issued_at=datetime.fromisoformat(issued) if issued else None,
            access_token=data.get("access_token"),
            refresh_token=data.get("refresh_token"),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            token_type=data.get("token_type") or "Bearer",
            scope=data.get("scope"),
            secrets=dict(data.get("secrets") or {}),
        )

    def require_secret(self, name: str) -> str:
        value = self.secrets.get(name)
        if not value:
            raise ProviderNeedsReauth(f"the connection has no {name}; connect it again")
        return value


@dataclass(frozen=True, slots=True)
class Account:
    """Who a connection posts as. ``settings`` holds non-secret facts (ids, instance URL,
    limits read from the platform) the provider needs again on later calls.
    """

    external_id: str
    display_name: str
    url: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Connected:
    """The result of connecting: what to store secretly and what to show."""

    credentials: Credentials
    account: Account


@dataclass(frozen=True, slots=True)
class Link:
    """What a provider gets for one call on an existing connection: the decrypted
    credentials, the account, the non-secret values the user connected with, and (for
    OAuth2 connections) the client the tokens were issued to.
    """

    credentials: Credentials
    account: Account
    params: Mapping[str, str] = field(default_factory=dict)
    client: OAuthClient | None = None


@dataclass(frozen=True, slots=True)
class MediaItem:
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    alt_text: str | None = None
    #: Where the platform can fetch this item, for providers that need a public URL.
    public_url: str | None = None

    @property
    def is_video(self) -> bool:
        return self.content_type.startswith("video/")


class SpanKind(StrEnum):
    """Formatting a span of a post's text carries (from the Markdown it was written in)."""

    BOLD = "bold"
    ITALIC = "italic"
    STRIKE = "strike"
    CODE = "code"
    PRE = "pre"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class TextSpan:
    """``text[start:end]`` (code point offsets into ``Post.text``) is formatted as ``kind``;
    a LINK span has its (http, https or mailto) ``url``. Spans may nest but never cross.
    Each provider turns them into its platform's form (Telegram entities in UTF-16 units,
    Bluesky facets in UTF-8 bytes, Discord Markdown).
    """

    kind: SpanKind
    start: int
    end: int
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Post:
    text: str
    media: tuple[MediaItem, ...] = ()
    #: Formatting of ``text``; given only to providers whose capabilities say ``rich_text``.
    spans: tuple[TextSpan, ...] = ()
    link: str | None = None
    #: Provider-specific choices (a Matrix room, an Instagram "reel"), validated by it.
    options: Mapping[str, str] = field(default_factory=dict)
    #: Stable across retries of one publication, for platforms that deduplicate.
    idempotency_key: str | None = None


class PostState(StrEnum):
    PENDING = "pending"
    PUBLISHED = "published"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Published:
    external_id: str
    url: str | None = None
    state: PostState = PostState.PUBLISHED


@dataclass(frozen=True, slots=True)
class PostStatus:
    state: PostState
    url: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """What the connection service prepared for one authorization flow.

    ``state``, ``code_verifier`` and ``nonce`` are fresh and single-use; ``params`` are the
    non-secret values the user gave (e.g. an instance URL or a handle).
    """

    redirect_uri: str
    state: str
    code_verifier: str = field(repr=False)
    nonce: str | None
    params: Mapping[str, str]
    client: OAuthClient | None


@dataclass(frozen=True, slots=True)
class AuthorizationStart:
    """Where to send the user, and what the provider needs again at the callback (kept
    server-side, sealed, until the flow ends).
    """

    url: str
    flow_data: Mapping[str, str] = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """The operator's configuration of one provider (``PLEXUS_PROVIDER_<NAME>_<KEY>``)."""

    values: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key)
        return value or default

    def require(self, key: str, provider: str) -> str:
        value = self.get(key)
        if value is None:
            var = f"PLEXUS_PROVIDER_{provider.upper()}_{key.upper()}"
            raise ProviderUnavailable(f"{provider} is not configured here: set {var}")
        return value


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider instance is built with: its settings and the outbound HTTP policy."""

    settings: ProviderSettings = field(default_factory=ProviderSettings)
    #: Networks guarded clients may reach besides public ones (tests allow loopback).
    destinations: DestinationPolicy = field(default_factory=DestinationPolicy)
    #: This Plexus's public base URL (for client metadata and links), without a slash.
    public_url: str = "http://127.0.0.1:8000"
    timeout: httpx.Timeout | None = None
    #: Plexus runs outside production (the built-in sandbox platform is served).
    development: bool = False

    def client(self, *, guarded: bool, base_url: str = "") -> httpx.Client:
        """An outbound client; ``guarded`` whenever the host came from a user."""
        kwargs: dict[str, Any] = {"timeout": self.timeout} if self.timeout else {}
        return outbound_client(
            guarded=guarded, policy=self.destinations, base_url=base_url, **kwargs
        )


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def raise_for_transport(exc: httpx.HTTPError, platform: str) -> ProviderRetryable:
    """The error to raise for a timeout or connection failure talking to ``platform``."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    # Once the whole request was written, the platform may have acted on it even though
    # no answer came back; before that (no connection, a full pool) it cannot have.
    sent = isinstance(exc, httpx.ReadTimeout | httpx.ReadError | httpx.RemoteProtocolError)
    return ProviderRetryable(f"{platform} {kind}", maybe_delivered=sent)


# --------------------------------------------------------------------------- the class


class Provider(ABC):
    """Base class of every provider. Subclasses set the class attributes and override the
    methods their auth kind and capabilities call for; what a platform cannot do raises
    ``ProviderUnavailable`` here.
    """

    #: The registry key and the value of ``provider`` in the API.
    name: ClassVar[str]
    display_name: ClassVar[str]
    auth_kind: ClassVar[AuthKind]
    capabilities: ClassVar[Capabilities]
    #: OAuth2 endpoints and scopes, for ``AuthKind.OAUTH2`` providers with fixed endpoints.
    oauth: ClassVar[OAuthSpec | None] = None
    #: What the user supplies to connect (secret ones go to the vault, the rest are params).
    connect_fields: ClassVar[tuple[ConnectField, ...]] = ()
    #: The settings keys the operator may set (``PLEXUS_PROVIDER_<NAME>_<KEY>``).
    settings_keys: ClassVar[tuple[str, ...]] = ()
    #: Settings keys whose values are secrets (redacted from logs, never shown).
    secret_settings_keys: ClassVar[tuple[str, ...]] = ()
    #: Refresh tokens are rotated: each refresh returns a new one and the old one dies.
    rotates_refresh_tokens: ClassVar[bool] = False

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    # ---- description

    def is_configured(self) -> bool:
        """Whether the operator gave this provider what it needs to be offered."""
        return True

    def limits_for(self, account: Account) -> Capabilities:
        """The rules that apply to this account (some platforms vary by instance)."""
        del account
        return self.capabilities

    # ---- connecting with OAuth2

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        """The endpoints for this flow; instance-based platforms derive them from params."""
        del params
        if self.oauth is None:
            raise ProviderUnavailable(f"{self.name} does not connect with OAuth2")
        return self.oauth

    def oauth_client(self, params: Mapping[str, str]) -> OAuthClient:
        """The configured OAuth client (instance-registered providers override this)."""
        del params
        client_id = self.context.settings.require("client_id", self.name)
        return OAuthClient(client_id, self.context.settings.get("client_secret"))

    def client_registration_key(self, params: Mapping[str, str]) -> str | None:
        """For platforms that register a client per instance: which instance this is."""
        del params
        return None

    def register_client(self, params: Mapping[str, str], redirect_uri: str) -> OAuthClient:
        """Register a client at the instance in ``params`` (Mastodon's apps API)."""
        del params, redirect_uri
        raise ProviderUnavailable(f"{self.name} does not register OAuth clients")

    def start_authorization(self, request: AuthorizationRequest) -> AuthorizationStart:
        """The authorization URL: authorization code with PKCE S256, state and (OIDC) nonce."""
        from plexus.providers.oauth import authorization_url

        spec = self.oauth_spec(request.params)
        return AuthorizationStart(authorization_url(spec, request))

    def finish_authorization(
        self,
        request: AuthorizationRequest,
        callback: Mapping[str, str],
        flow_data: Mapping[str, str],
    ) -> Connected:
        """Exchange the code for tokens, then find out which account they belong to."""
        from plexus.providers.oauth import exchange_code

        del flow_data
        spec = self.oauth_spec(request.params)
        with self.context.client(guarded=self.guards_oauth_endpoints()) as http:
            credentials = exchange_code(http, spec, request, callback, self.name)
        return self.complete_connection(credentials, request.params)

    def complete_connection(self, credentials: Credentials, params: Mapping[str, str]) -> Connected:
        """After the token exchange: upgrade tokens if the platform wants (long-lived
        tokens) and read the account's identity.
        """
        del credentials, params
        raise ProviderUnavailable(f"{self.name} does not connect with OAuth2")

    def guards_oauth_endpoints(self) -> bool:
        """Whether the OAuth endpoints came from a user (an instance URL): then guarded."""
        return False

    # ---- connecting with a secret the user pastes

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        """Connect with the values of ``connect_fields`` and check them at the platform."""
        del fields
        raise ProviderUnavailable(f"{self.name} connects through OAuth2")

    # ---- token life cycle

    def refresh(self, link: Link) -> Credentials:
        """New credentials from the refresh token (RFC 6749 §6 by default)."""
        from plexus.providers.oauth import refresh_tokens

        spec = self.oauth_spec(link.params)
        client = link.client or self.oauth_client(link.params)
        with self.context.client(guarded=self.guards_oauth_endpoints()) as http:
            return refresh_tokens(http, spec, client, link.credentials, self.name)

    def can_refresh(self, link: Link) -> bool:
        return link.credentials.refresh_token is not None

    def refresh_lead(self, link: Link) -> timedelta:
        """How long before expiry the token is refreshed: ``REFRESH_MARGIN``, or a quarter
        of the token's lifetime when that is shorter (a five-minute token is not refreshed
        before every call).
        """
        lifetime = link.credentials.lifetime
        if lifetime is None:
            return REFRESH_MARGIN
        return min(REFRESH_MARGIN, lifetime / 4)

    def needs_refresh(self, link: Link, lead: timedelta | None = None) -> bool:
        """The token is refreshable and expires within ``lead`` (default: refresh_lead)."""
        if not self.can_refresh(link):
            return False
        return link.credentials.expires_within(lead or self.refresh_lead(link))

    def can_revoke(self, link: Link) -> bool:
        """Whether ``revoke`` really revokes something at the platform for this link (the
        audit log records the difference). By default: an OAuth2 link whose spec has a
        revocation endpoint. Providers with their own revocation call override this.
        """
        if self.auth_kind is not AuthKind.OAUTH2:
            return False
        try:
            return self.oauth_spec(link.params).revoke_url is not None
        except ProviderUnavailable:
            return False

    def revoke(self, link: Link) -> None:
        """Revoke the credentials at the platform (RFC 7009 by default); a no-op when
        ``can_revoke`` is False. Raises ProviderRetryable when the platform cannot be
        reached, ProviderRejected when it refuses the revocation, and ProviderNeedsReauth
        or ProviderTokenExpired when the credentials are already dead (or must be refreshed
        first: the caller then refreshes under its lock and retries once).
        """
        from plexus.providers.oauth import revoke_token

        if self.auth_kind is not AuthKind.OAUTH2:
            return
        spec = self.oauth_spec(link.params)
        if spec.revoke_url is None:
            return
        client = link.client or self.oauth_client(link.params)
        with self.context.client(guarded=self.guards_oauth_endpoints()) as http:
            revoke_token(http, spec, client, link.credentials, self.name)

    # ---- what a connection does

    @abstractmethod
    def check_connection(self, link: Link) -> Account:
        """Confirm the credentials work; return the account as the platform sees it now."""

    @abstractmethod
    def publish(self, link: Link, post: Post) -> Published:
        """Publish ``post``; the platform's id (and URL) of what it now holds."""

    def delete(self, link: Link, external_id: str) -> None:
        del link, external_id
        raise ProviderUnavailable(f"{self.name} cannot delete posts")

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        del link, external_id
        raise ProviderUnavailable(f"{self.name} cannot read posts back")

    def find_published(self, link: Link, post: Post, since: datetime) -> Published | None:
        """Look for ``post`` among what the account published since ``since`` (by its
        idempotency key where the platform keeps one, else by its content): the post when
        found, None when the platform certainly does not hold it. Used to settle a publish
        whose answer was lost. Raises ProviderUnavailable when the platform offers no way
        to tell (the publication then waits for a person).
        """
        del link, post, since
        raise ProviderUnavailable(f"{self.name} cannot look up recent posts")

    def publishing_quota(self, link: Link) -> int | None:
        """How many more posts the platform will accept from this account today, where it
        says (Instagram's ``content_publishing_limit``); None when it does not.
        """
        del link
        return None

    def verify_inbound_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """Whether an inbound webhook request really comes from the platform."""
        del headers, body, secret
        raise ProviderUnavailable(f"{self.name} sends no inbound webhooks")
