"""Mastodon, on any server the user names.

Connecting
    The user gives the server (connect field ``instance``); it is normalised to an origin
    ``https://host[:port]`` and every request to it goes through the SSRF-guarded client
    (``guards_oauth_endpoints`` is True). Mastodon has no global OAuth client: Plexus
    registers one app per server (``POST /api/v1/apps``) through ``register_client``, and
    the connection service caches it under ``client_registration_key`` (the origin).
    The authorization code flow uses the granular scopes ``read:accounts read:statuses
    write:statuses write:media`` and PKCE S256 whenever the server's
    ``/.well-known/oauth-authorization-server`` lists it (Mastodon 4.3 and later); older
    servers get the plain code flow (the choice travels to the callback in ``flow_data``).
    After the exchange, ``complete_connection`` reads the account
    (``verify_credentials``) and the server's configuration (``GET /api/v2/instance``):
    its character limit, media count, reserved URL length, media sizes and types are
    stored in ``Account.settings`` and ``limits_for`` builds the connection's
    capabilities from them. Mastodon's defaults (500 characters, 4 attachments) apply
    only to what a server leaves out.

Publishing
    Text is counted as Mastodon counts it (``status_length``: graphemes, any URL as
    ``characters_reserved_per_url``, remote mentions by their local part, content warning
    included) and refused locally when it is too long. Media go up first through
    ``POST /api/v2/media``; a 202 means the server is still processing, and
    ``GET /api/v1/media/:id`` is polled (bounded) until the attachment has a URL. The
    status is then created with ``Idempotency-Key`` set from ``Post.idempotency_key``, so
    a retry after a lost answer does not post twice. ``Post.options`` may carry
    ``visibility``, ``spoiler_text``, ``language`` and ``sensitive``.

Disconnecting
    ``revoke`` is RFC 7009 at ``/oauth/revoke`` with the per-server client's id and secret.

Why no SDK: ``Mastodon.py`` covers the whole client API, but what Plexus needs is a
dozen requests; the library is built on ``requests``, so it would bypass the SSRF guard
and the bounded timeouts that a user-chosen host requires, and it has its own retry and
rate-limit behaviour where Plexus needs its error classes. Our own httpx calls it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from typing import TYPE_CHECKING, Any, ClassVar, Final

from plexus.providers.base import (
    Account,
    AuthKind,
    AuthorizationStart,
    Capabilities,
    Connected,
    ConnectField,
    Credentials,
    Link,
    MediaItem,
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
    ProviderUnavailable,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
    TokenAuthMethod,
)
from plexus.providers.mastodon.api import call, json_object, raise_for_status
from plexus.providers.mastodon.instance import InstanceLimits, checked_origin
from plexus.providers.mastodon.text import status_length
from plexus.providers.oauth import authorization_url, exchange_code, refresh_tokens, revoke_token

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import httpx

    from plexus.providers.base import AuthorizationRequest

#: ``read:statuses`` because Mastodon refuses a presented token without it even for
#: public statuses, and ``fetch_status`` must also see unlisted and private ones.
SCOPES: Final = ("read:accounts", "read:statuses", "write:statuses", "write:media")
VISIBILITIES: Final = frozenset({"public", "unlisted", "private", "direct"})
OPTIONS: Final = frozenset({"visibility", "spoiler_text", "language", "sensitive"})
STATUS_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
LANGUAGE_RE: Final = re.compile(r"[a-z]{2,3}")
IDEMPOTENCY_KEY_RE: Final = re.compile(r"[\x21-\x7e]{1,128}")
DEFAULT_CLIENT_NAME: Final = "Plexus"


def _capabilities(limits: InstanceLimits) -> Capabilities:
    mimes = limits.supported_mime_types
    return Capabilities(
        text=TextRules(
            max_length=limits.max_characters,
            counting=TextCounting.MASTODON,
            url_length=limits.characters_reserved_per_url,
        ),
        media=MediaRules(
            max_items=limits.max_media_attachments,
            image_types=frozenset(m for m in mimes if m.startswith("image/")),
            video_types=frozenset(m for m in mimes if m.startswith("video/")),
            max_image_bytes=limits.image_size_limit,
            max_video_bytes=limits.video_size_limit,
            max_alt_text=limits.description_limit,
        ),
        # Mastodon's defaults: 300 calls per 5 minutes per account; media uploads 30 per
        # 30 minutes. Servers may differ; the X-RateLimit-* headers are authoritative.
        rate_limits=(RateLimit(300, 300, "connection"), RateLimit(30, 1800, "connection")),
    )


class MastodonProvider(Provider):
    """Statuses on any Mastodon server, with an OAuth client registered per server."""

    name = "mastodon"
    display_name = "Mastodon"
    auth_kind = AuthKind.OAUTH2
    capabilities: ClassVar[Capabilities] = _capabilities(InstanceLimits())
    connect_fields: ClassVar[tuple[ConnectField, ...]] = (
        ConnectField(
            "instance", "Mastodon server", help="Your server's address, e.g. mastodon.social."
        ),
    )
    #: ``client_name``: the app name users see on the consent screen (default "Plexus").
    settings_keys: ClassVar[tuple[str, ...]] = ("client_name",)
    #: Polling a processing attachment: first wait, then doubling up to 5 s, for at most
    #: ``media_poll_timeout`` seconds before the publication is retried later.
    media_poll_interval: ClassVar[float] = 0.5
    media_poll_timeout: ClassVar[float] = 60.0

    # ---- where the server is

    def _origin(self, params: Mapping[str, Any]) -> str:
        instance = params.get("instance")
        if not isinstance(instance, str) or not instance.strip():
            raise ProviderRejected("say which Mastodon server the account is on")
        return checked_origin(instance, self.context.destinations)

    def _link_origin(self, link: Link) -> str:
        return self._origin({**link.params, **link.account.settings})

    @contextlib.contextmanager
    def _http(self) -> Iterator[httpx.Client]:
        with self.context.client(guarded=True) as http:
            yield http

    def guards_oauth_endpoints(self) -> bool:
        return True

    def limits_for(self, account: Account) -> Capabilities:
        """The server's own limits, as read when the account was connected or checked."""
        return _capabilities(InstanceLimits.from_settings(account.settings))

    # ---- the OAuth client, registered per server

    @staticmethod
    def _spec(origin: str, *, pkce: bool) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=f"{origin}/oauth/authorize",
            token_url=f"{origin}/oauth/token",
            revoke_url=f"{origin}/oauth/revoke",
            scopes=SCOPES,
            pkce=pkce,
            token_auth_method=TokenAuthMethod.CLIENT_SECRET_POST,
        )

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        """The server's endpoints. PKCE is assumed here; ``start_authorization`` asks the
        server whether it supports S256 before using it.
        """
        return self._spec(self._origin(params), pkce=True)

    def oauth_client(self, params: Mapping[str, str]) -> OAuthClient:
        del params
        raise ProviderUnavailable("Mastodon clients are registered per server (register_client)")

    def client_registration_key(self, params: Mapping[str, str]) -> str | None:
        """The normalised server origin: one registered app per server."""
        return self._origin(params)

    def register_client(self, params: Mapping[str, str], redirect_uri: str) -> OAuthClient:
        """Register Plexus as an app at the server (``POST /api/v1/apps``)."""
        origin = self._origin(params)
        body = {
            "client_name": self.context.settings.get("client_name") or DEFAULT_CLIENT_NAME,
            "redirect_uris": redirect_uri,
            "scopes": " ".join(SCOPES),
            "website": self.context.public_url,
        }
        with self._http() as http:
            response = call(http, "POST", f"{origin}/api/v1/apps", data=body)
        raise_for_status(response, None)
        data = json_object(response)
        client_id, client_secret = data.get("client_id"), data.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            raise ProviderRetryable("the Mastodon server registered no usable client")
        return OAuthClient(client_id, client_secret)

    def _supports_pkce(self, http: httpx.Client, origin: str) -> bool:
        """Whether the server's authorization-server metadata lists S256 (Mastodon 4.3+);
        servers without the metadata document get the code flow without PKCE.
        """
        response = call(http, "GET", f"{origin}/.well-known/oauth-authorization-server")
        if response.status_code != 200:  # noqa: PLR2004
            if response.status_code == 429 or response.status_code >= 500:  # noqa: PLR2004
                raise_for_status(response, None)
            return False
        try:
            metadata = response.json()
        except ValueError:
            return False
        methods = (
            metadata.get("code_challenge_methods_supported") if isinstance(metadata, dict) else None
        )
        return isinstance(methods, list) and "S256" in methods

    def start_authorization(self, request: AuthorizationRequest) -> AuthorizationStart:
        """The server's authorization URL, with PKCE S256 when the server supports it."""
        origin = self._origin(request.params)
        with self._http() as http:
            pkce = self._supports_pkce(http, origin)
        url = authorization_url(self._spec(origin, pkce=pkce), request)
        return AuthorizationStart(url, {"instance": origin, "pkce": "S256" if pkce else "none"})

    def finish_authorization(
        self,
        request: AuthorizationRequest,
        callback: Mapping[str, str],
        flow_data: Mapping[str, str],
    ) -> Connected:
        """Exchange the code (with the verifier if the flow used PKCE), then connect."""
        origin = self._origin(request.params)
        if flow_data.get("instance", origin) != origin:
            raise ProviderRejected("the authorization finished at another Mastodon server")
        spec = self._spec(origin, pkce=flow_data.get("pkce", "S256") == "S256")
        with self._http() as http:
            credentials = exchange_code(http, spec, request, callback, self.name)
        granted = set((credentials.scope or " ".join(SCOPES)).split())
        if not set(SCOPES) <= granted and not {"read", "write"} <= granted:
            raise ProviderRejected("the Mastodon server granted fewer permissions than needed")
        return self.complete_connection(credentials, request.params)

    def complete_connection(self, credentials: Credentials, params: Mapping[str, str]) -> Connected:
        """Read the account and the server's limits; both are stored with the connection."""
        origin = self._origin(params)
        return Connected(credentials, self._read_account(origin, credentials))

    def _read_account(self, origin: str, credentials: Credentials) -> Account:
        with self._http() as http:
            response = call(
                http, "GET", f"{origin}/api/v1/accounts/verify_credentials", credentials=credentials
            )
            raise_for_status(response, credentials)
            me = json_object(response)
            limits = self._instance_limits(http, origin, credentials)
        account_id = me.get("id")
        if not isinstance(account_id, str | int) or not str(account_id):
            raise ProviderRetryable("the Mastodon server did not say whose token this is")
        netloc = origin.split("://", 1)[1]
        username = str(me.get("username") or me.get("acct") or account_id)
        url = me.get("url")
        return Account(
            # Account ids are only unique on their own server.
            external_id=f"{account_id}@{netloc}",
            display_name=f"@{username}@{netloc}",
            url=url if isinstance(url, str) else None,
            settings={"instance": origin, "account_id": str(account_id), **limits.as_settings()},
        )

    @staticmethod
    def _instance_limits(
        http: httpx.Client, origin: str, credentials: Credentials
    ) -> InstanceLimits:
        response = call(http, "GET", f"{origin}/api/v2/instance", credentials=credentials)
        if response.status_code == 404:  # noqa: PLR2004 - servers before Mastodon 4.0
            response = call(http, "GET", f"{origin}/api/v1/instance", credentials=credentials)
        raise_for_status(response, credentials)
        return InstanceLimits.from_instance(json_object(response))

    def check_connection(self, link: Link) -> Account:
        """``verify_credentials`` and a fresh read of the server's limits."""
        return self._read_account(self._link_origin(link), link.credentials)

    # ---- token life cycle

    def refresh(self, link: Link) -> Credentials:
        if link.client is None:
            raise ProviderNeedsReauth("the Mastodon connection has no registered client")
        spec = self._spec(self._link_origin(link), pkce=False)
        with self._http() as http:
            return refresh_tokens(http, spec, link.client, link.credentials, self.name)

    def revoke(self, link: Link) -> None:
        """RFC 7009 at the server's ``/oauth/revoke`` with the client the token belongs to."""
        if link.client is None:
            return
        spec = self._spec(self._link_origin(link), pkce=False)
        with self._http() as http:
            revoke_token(http, spec, link.client, link.credentials, self.name)

    # ---- publishing

    @staticmethod
    def _options_form(options: Mapping[str, str]) -> dict[str, Any]:
        """The status parameters ``Post.options`` may set, validated."""
        unknown = set(options) - OPTIONS
        if unknown:
            raise ProviderRejected(f"unknown Mastodon option(s): {', '.join(sorted(unknown))}")
        form: dict[str, Any] = {}
        visibility = options.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            allowed = ", ".join(sorted(VISIBILITIES))
            raise ProviderRejected(f"visibility must be one of {allowed}")
        language = options.get("language")
        if language is not None and not LANGUAGE_RE.fullmatch(language):
            raise ProviderRejected("language must be an ISO 639 code such as 'en'")
        sensitive = options.get("sensitive")
        if sensitive is not None and sensitive not in {"true", "false"}:
            raise ProviderRejected("sensitive must be 'true' or 'false'")
        for key in ("visibility", "language", "sensitive", "spoiler_text"):
            if options.get(key):
                form[key] = options[key]
        return form

    @classmethod
    def _status_form(cls, post: Post, limits: InstanceLimits, host: str) -> dict[str, Any]:
        """The ``POST /api/v1/statuses`` form, after the local length check."""
        text = post.text
        if post.link and post.link not in text:
            text = f"{text}\n\n{post.link}" if text.strip() else post.link
        form = {"status": text, **cls._options_form(post.options)}
        if not text.strip() and not post.media:
            raise ProviderRejected("a status needs text or media")
        spoiler = post.options.get("spoiler_text", "")
        length = status_length(spoiler + text, limits.characters_reserved_per_url)
        if length > limits.max_characters:
            raise ProviderRejected(
                f"the status counts {length} characters; {host} allows {limits.max_characters}"
            )
        return form

    @staticmethod
    def _check_media(media: tuple[MediaItem, ...], limits: InstanceLimits) -> None:
        if len(media) > limits.max_media_attachments:
            raise ProviderRejected(
                f"this server takes at most {limits.max_media_attachments} attachments"
            )
        if any(item.is_video for item in media) and len(media) > 1:
            raise ProviderRejected("a video must be a status's only attachment")
        for item in media:
            if item.content_type not in limits.supported_mime_types:
                raise ProviderRejected(f"this server does not take {item.content_type} files")
            is_image = item.content_type.startswith("image/")
            limit = limits.image_size_limit if is_image else limits.video_size_limit
            if len(item.data) > limit:
                raise ProviderRejected(
                    f"{item.filename} is larger than this server's {limit} bytes"
                )
            if item.alt_text and len(item.alt_text) > limits.description_limit:
                raise ProviderRejected(
                    f"alt text is limited to {limits.description_limit} characters here"
                )

    def _upload(
        self, http: httpx.Client, origin: str, credentials: Credentials, item: MediaItem
    ) -> str:
        """Upload one attachment; return its id once the server has processed it."""
        response = call(
            http,
            "POST",
            f"{origin}/api/v2/media",
            credentials=credentials,
            data={"description": item.alt_text} if item.alt_text else None,
            files={"file": (item.filename, item.data, item.content_type)},
        )
        raise_for_status(response, credentials)
        media = json_object(response)
        media_id = media.get("id")
        if not isinstance(media_id, str | int):
            raise ProviderRetryable("the Mastodon server accepted media but gave no id")
        if response.status_code == 200 and media.get("url"):  # noqa: PLR2004 - processed already
            return str(media_id)
        return self._await_media(http, origin, credentials, str(media_id))

    def _await_media(
        self, http: httpx.Client, origin: str, credentials: Credentials, media_id: str
    ) -> str:
        if not STATUS_ID_RE.fullmatch(media_id):
            raise ProviderRetryable("the Mastodon server gave a malformed media id")
        deadline = time.monotonic() + self.media_poll_timeout
        delay = self.media_poll_interval
        while True:
            time.sleep(delay)
            response = call(
                http, "GET", f"{origin}/api/v1/media/{media_id}", credentials=credentials
            )
            if response.status_code != 206:  # noqa: PLR2004 - 206: still processing
                raise_for_status(response, credentials)
                if json_object(response).get("url"):
                    return media_id
            if time.monotonic() + delay > deadline:
                raise ProviderRetryable(
                    "the Mastodon server is still processing the media", retry_after=30
                )
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _idempotency_key(post: Post) -> dict[str, str]:
        key = post.idempotency_key
        if not key:
            return {}
        if not IDEMPOTENCY_KEY_RE.fullmatch(key):
            # Stable across retries like the key itself, and always a valid header value.
            key = hashlib.sha256(key.encode()).hexdigest()
        return {"idempotency-key": key}

    def publish(self, link: Link, post: Post) -> Published:
        """Upload the media, then create the status (deduplicated by its idempotency key)."""
        origin = self._link_origin(link)
        limits = InstanceLimits.from_settings(link.account.settings)
        form = self._status_form(post, limits, origin.split("://", 1)[1])
        self._check_media(post.media, limits)
        with self._http() as http:
            media_ids = [self._upload(http, origin, link.credentials, m) for m in post.media]
            if media_ids:
                form["media_ids[]"] = media_ids
            response = call(
                http,
                "POST",
                f"{origin}/api/v1/statuses",
                credentials=link.credentials,
                data=form,
                headers=self._idempotency_key(post),
            )
        raise_for_status(response, link.credentials)
        status = json_object(response)
        status_id = status.get("id")
        if not isinstance(status_id, str | int):
            raise ProviderRetryable("the Mastodon server accepted the status but gave no id")
        url = status.get("url") or status.get("uri")
        return Published(external_id=str(status_id), url=url if isinstance(url, str) else None)

    @staticmethod
    def _status_path(origin: str, external_id: str) -> str:
        if not STATUS_ID_RE.fullmatch(external_id):
            raise ProviderRejected("that is not a Mastodon status id")
        return f"{origin}/api/v1/statuses/{external_id}"

    def delete(self, link: Link, external_id: str) -> None:
        """Delete the status; one that is already gone counts as deleted."""
        path = self._status_path(self._link_origin(link), external_id)
        with self._http() as http:
            response = call(http, "DELETE", path, credentials=link.credentials)
        if response.status_code == 404:  # noqa: PLR2004
            return
        raise_for_status(response, link.credentials)

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        """PUBLISHED while the server shows the status; DELETED once it answers 404."""
        path = self._status_path(self._link_origin(link), external_id)
        with self._http() as http:
            response = call(http, "GET", path, credentials=link.credentials)
        if response.status_code == 404:  # noqa: PLR2004
            return PostStatus(PostState.DELETED, detail="the server has no such status")
        raise_for_status(response, link.credentials)
        status = json_object(response)
        url = status.get("url") or status.get("uri")
        return PostStatus(PostState.PUBLISHED, url=url if isinstance(url, str) else None)
