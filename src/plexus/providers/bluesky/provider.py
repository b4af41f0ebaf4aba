"""The ``bluesky`` provider: posts to an atproto PDS (bsky.social or a self-hosted one).

Two ways to connect: atproto OAuth (the declared ``AuthKind.OAUTH2``: PAR + PKCE + DPoP,
see ``atproto_oauth``; tokens are DPoP-bound, the per-connection key is kept in
``Credentials.secrets["dpop_key"]``), or an app password (``connect_with_fields`` with the
secret ``app_password`` field). ``Account.settings["auth"]`` says which a connection uses.

Why not the ``atproto`` SDK: what this provider needs is a dozen XRPC calls (sessions,
createRecord, uploadBlob, getRecord, deleteRecord, resolveHandle), which are small JSON
requests; the SDK would bring its own HTTP client (so no SSRF guard, timeouts or
redaction of ours), generated models for every lexicon, and session handling that
creates sessions behind our back. Facets, sessions and identity are a few hundred lines
here, against the lexicons and specs at atproto.com, with our outbound client throughout.

Sessions. The PDS allows few ``createSession`` calls per account (30 per 5 minutes, 300 per
day on bsky.social), so the stored credentials *are* the session: the access JWT (its
``exp`` read into ``Credentials.expires_at``), the refresh JWT, and the app password in
``Credentials.secrets`` for the day the refresh JWT dies. ``refresh`` uses
``refreshSession`` (which rotates the refresh JWT: the new one is returned and must be
stored); only if the PDS refuses the refresh JWT does it create a new session from the
app password; if that is refused too, the user must reconnect. The account's own password
is refused at connect time (its session has scope ``com.atproto.access``): Plexus keeps
only app passwords, which the user can revoke on their own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from plexus.providers.base import (
    Account,
    AuthKind,
    AuthorizationRequest,
    AuthorizationStart,
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
    ProviderTokenExpired,
    ProviderUnavailable,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
    TextSpan,
    text_length,
)
from plexus.providers.bluesky import atproto_oauth, identity, media, richtext
from plexus.providers.bluesky.dpop import DpopAuth, DpopKey, new_key_pem
from plexus.providers.bluesky.xrpc import BearerAuth, Xrpc, jwt_claims, jwt_expiry, jwt_time
from plexus.providers.spans import bluesky_link_facets, merge_facets, nfc_with_spans

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from plexus.providers.bluesky.xrpc import Authorizer

DEFAULT_SERVICE: Final = "https://bsky.social"
DEFAULT_WEB_URL: Final = "https://bsky.app"
POST_COLLECTION: Final = "app.bsky.feed.post"
MAX_GRAPHEMES: Final = 300
MAX_LANGS: Final = 3
#: The scope of a session created with the account's own password (app-password sessions
#: have ``com.atproto.appPass`` or ``com.atproto.appPassPrivileged``).
ACCOUNT_PASSWORD_SCOPE: Final = "com.atproto.access"  # noqa: S105 - a scope name
AUTH_APP_PASSWORD: Final = "app_password"  # noqa: S105 - a mode name, not a secret
AUTH_OAUTH: Final = "oauth"
#: What Plexus stores about an account (``Account`` columns): id, name, link.
MAX_EXTERNAL_ID: Final = 300
MAX_DISPLAY_NAME: Final = 300
MAX_ACCOUNT_URL: Final = 1000
_LANG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_post_uri(uri: str) -> tuple[str, str, str]:
    """``at://did/collection/rkey`` → its three parts."""
    if not uri.startswith("at://"):
        raise ProviderRejected("not an at:// URI")
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or not all(parts):  # noqa: PLR2004 - authority, collection, rkey
        raise ProviderRejected("not an at:// record URI")
    return parts[0], parts[1], parts[2]


def check_storable_did(did: str) -> None:
    """Refuse a DID that is invalid or too long to be the account's id (300 characters):
    a shortened DID could name another account.
    """
    if not identity.is_did(did):
        raise ProviderRejected("Bluesky answered without a valid DID")
    if len(did) > MAX_EXTERNAL_ID:
        raise ProviderRejected(f"DIDs longer than {MAX_EXTERNAL_ID} characters are not supported")


class BlueskyProvider(Provider):
    """Bluesky (atproto): atproto OAuth (PAR + PKCE + DPoP) or app-password sessions;
    posts with facets and up to four images. The author's links (LINK spans of
    ``Post.spans``) become link facets; links, mentions and tags detected in the text are
    added where they overlap none of those.
    """

    name = "bluesky"
    display_name = "Bluesky"
    auth_kind = AuthKind.OAUTH2
    capabilities = Capabilities(
        text=TextRules(max_length=MAX_GRAPHEMES, counting=TextCounting.GRAPHEMES),
        media=MediaRules(
            max_items=media.MAX_IMAGES,
            image_types=media.IMAGE_TYPES,
            max_image_bytes=media.MAX_IMAGE_BYTES,
        ),
        # Bluesky's PDS: 5,000 write points per hour and 35,000 per day, a record
        # creation costing 3 (docs.bsky.app, "Rate Limits").
        rate_limits=(RateLimit(1666, 3600), RateLimit(11666, 86400)),
        daily_post_cap=11666,
        # Only links: Bluesky has no bold or italic; a span's link becomes a facet.
        rich_text=True,
    )
    #: What the user gives to start atproto OAuth: who they are and, optionally, where
    #: their handle is resolved (their PDS or entryway).
    #: OAuth2 needs the identifier (and a service for a self-hosted PDS); an app password,
    #: when given, connects without OAuth (the connection service treats an OAuth2
    #: provider's secret fields as that alternative).
    connect_fields = (
        ConnectField(
            "identifier",
            "Handle or DID",
            help="Your handle (alice.bsky.social) or DID.",
        ),
        ConnectField(
            "service",
            "Hosting provider",
            required=False,
            help="Leave empty for bsky.social; otherwise the https:// address of your PDS.",
        ),
        ConnectField(
            "app_password",
            "App password",
            secret=True,
            required=False,
            help="Instead of signing in through Bluesky: create one under Settings → Privacy"
            " and security → App passwords. Your account password is refused.",
        ),
    )
    #: ``service``: the default entryway; ``plc_url``: the PLC directory DIDs are resolved
    #: at; ``web_url``: where links to posts and profiles point.
    settings_keys = ("service", "plc_url", "web_url")
    rotates_refresh_tokens = True

    # ---- small helpers

    def _http(self) -> httpx.Client:
        # Every host here comes from a user or from a DID document: always guarded.
        return self.context.client(guarded=True)

    @property
    def _plc_url(self) -> str:
        plc = self.context.settings.get("plc_url", identity.DEFAULT_PLC_URL)
        return identity.service_url(plc or identity.DEFAULT_PLC_URL, "PLC directory")

    @property
    def _web_url(self) -> str:
        return (self.context.settings.get("web_url", DEFAULT_WEB_URL) or DEFAULT_WEB_URL).rstrip(
            "/"
        )

    def _default_service(self) -> str:
        return self.context.settings.get("service", DEFAULT_SERVICE) or DEFAULT_SERVICE

    @staticmethod
    def _is_oauth(link: Link) -> bool:
        return link.account.settings.get("auth") == AUTH_OAUTH

    def _authorizer(self, link: Link) -> Authorizer:
        token = link.credentials.access_token
        if not token:
            raise ProviderTokenExpired("the Bluesky session has no access token")
        if self._is_oauth(link):
            return DpopAuth(DpopKey(link.credentials.require_secret("dpop_key")), token)
        return BearerAuth(token)

    @staticmethod
    def _pds_url(link: Link) -> str:
        pds = link.account.settings.get("pds_url")
        if not isinstance(pds, str) or not pds:
            raise ProviderNeedsReauth("the Bluesky connection does not know its PDS")
        return pds

    def _pds(self, http: httpx.Client, link: Link) -> Xrpc:
        return Xrpc(http, self._pds_url(link), self._authorizer(link))

    @staticmethod
    def _did(link: Link) -> str:
        did = link.account.settings.get("did") or link.account.external_id
        return str(did)

    def _account(self, did: str, handle: str, settings: Mapping[str, Any]) -> Account:
        """The account as stored: the DID is its id (refused, never shortened, when too
        long to store), the handle its name when it is a valid one (else the DID).
        """
        check_storable_did(did)
        handle = handle.lower()
        name = handle if identity.is_handle(handle) else did
        display_name = f"@{name}" if name == handle else name
        if len(display_name) > MAX_DISPLAY_NAME:
            display_name = display_name[: MAX_DISPLAY_NAME - 1] + "…"
        profile = f"{self._web_url}/profile/{name}"
        return Account(
            external_id=did,
            display_name=display_name,
            # Too long to store: no link rather than a shortened one pointing elsewhere.
            url=profile if len(profile) <= MAX_ACCOUNT_URL else None,
            settings={**settings, "did": did, "handle": name},
        )

    def post_url(self, uri: str) -> str:
        did, _, rkey = parse_post_uri(uri)
        return f"{self._web_url}/profile/{did}/post/{rkey}"

    # ---- connecting with an app password

    @staticmethod
    def _session_credentials(data: Mapping[str, Any], password: str) -> Credentials:
        access, refresh = data.get("accessJwt"), data.get("refreshJwt")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise ProviderRejected("Bluesky answered without session tokens")
        scope = jwt_claims(access).get("scope")
        return Credentials(
            access_token=access,
            refresh_token=refresh,
            expires_at=jwt_expiry(access),
            issued_at=jwt_time(access, "iat"),
            scope=scope if isinstance(scope, str) else None,
            secrets={"app_password": password},
        )

    def _create_session(
        self, http: httpx.Client, service: str, identifier: str, password: str
    ) -> tuple[dict[str, Any], Credentials]:
        data = Xrpc(http, service).procedure(
            "com.atproto.server.createSession", {"identifier": identifier, "password": password}
        )
        return data, self._session_credentials(data, password)

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        """Create a session with the app password and find the account's PDS."""
        identifier = identity.normalize_identifier(fields.get("identifier", ""))
        if identifier.startswith("did:"):
            check_storable_did(identifier)
        password = fields.get("app_password", "").strip()
        if not password:
            raise ProviderRejected("an app password is required")
        service = identity.service_url(
            fields.get("service") or self._default_service(), "hosting provider address"
        )
        with self._http() as http:
            try:
                data, credentials = self._create_session(http, service, identifier, password)
            except (ProviderNeedsReauth, ProviderTokenExpired):
                raise ProviderRejected("Bluesky refused the handle or app password") from None
            if credentials.scope == ACCOUNT_PASSWORD_SCOPE:
                self._delete_session(http, service, credentials)
                raise ProviderRejected(
                    "that is the account password: create an app password and use it instead"
                )
            did, handle = str(data.get("did") or ""), str(data.get("handle") or "")
            try:
                check_storable_did(did)
            except ProviderRejected:
                self._delete_session(http, service, credentials)  # leave no session behind
                raise
            did_doc = data.get("didDoc")
            pds, _ = identity.find_pds(
                http, did, did_doc if isinstance(did_doc, dict) else None, self._plc_url
            )
        account = self._account(
            did, handle, {"pds_url": pds, "service": service, "auth": AUTH_APP_PASSWORD}
        )
        return Connected(credentials=credentials, account=account)

    def _delete_session(self, http: httpx.Client, service: str, credentials: Credentials) -> None:
        if not credentials.refresh_token:
            return
        try:
            Xrpc(http, service, BearerAuth(credentials.refresh_token)).procedure(
                "com.atproto.server.deleteSession"
            )
        except (ProviderTokenExpired, ProviderNeedsReauth, ProviderRejected):
            return  # already gone

    # ---- connecting with atproto OAuth

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        """Not used: atproto's endpoints are discovered per account, from its PDS, in
        ``start_authorization``.
        """
        del params
        raise ProviderUnavailable("Bluesky's OAuth endpoints are discovered per account")

    def oauth_client(self, params: Mapping[str, str]) -> OAuthClient:
        """The public client: no secret; its id is the client-metadata URL (or, for a
        loopback Plexus, atproto's loopback client, finished per flow).
        """
        del params
        return OAuthClient(atproto_oauth.client_id_for(self.context.public_url, ""))

    def start_authorization(self, request: AuthorizationRequest) -> AuthorizationStart:
        """Resolve the account, discover its authorization server, push the request (PAR
        with PKCE S256, state, login_hint and a DPoP proof) and return where to send the
        user, keeping the DPoP key and the expected issuer and DID in ``flow_data``.
        """
        raw = request.params.get("identifier", "")
        ident = identity.normalize_identifier(raw)
        service = identity.service_url(
            request.params.get("service") or self._default_service(), "hosting provider address"
        )
        client_id = atproto_oauth.client_id_for(self.context.public_url, request.redirect_uri)
        with self._http() as http:
            did = ident
            if not ident.startswith("did:"):
                resolved = identity.resolve_handle(Xrpc(http, service), ident)
                if resolved is None:
                    raise ProviderRejected(f"the handle {ident} does not resolve to an account")
                did = resolved
            check_storable_did(did)
            doc = identity.resolve_did(http, did, self._plc_url)
            handle = identity.handle_of(doc)
            if not ident.startswith("did:") and handle != ident:
                raise ProviderRejected(f"the account's DID document does not confirm {ident}")
            pds = identity.pds_endpoint(doc, did)
            if pds is None:
                raise ProviderRejected("the account's DID document names no PDS")
            endpoints = atproto_oauth.discover(http, pds)
            key_pem = new_key_pem()
            request_uri = atproto_oauth.push_authorization(
                http,
                DpopKey(key_pem),
                endpoints,
                {
                    "client_id": client_id,
                    "response_type": "code",
                    "redirect_uri": request.redirect_uri,
                    "scope": atproto_oauth.SCOPE,
                    "state": request.state,
                    "code_challenge": atproto_oauth.pkce_challenge(request.code_verifier),
                    "code_challenge_method": "S256",
                    "login_hint": handle or did,
                },
            )
        query = urlencode({"client_id": client_id, "request_uri": request_uri})
        flow = {
            "dpop_key": key_pem,
            "client_id": client_id,
            "did": did,
            "handle": handle or "",
            "pds_url": pds,
            "service": service,
            **{k: v for k, v in endpoints.items() if k != "par_endpoint"},
        }
        return AuthorizationStart(f"{endpoints['authorization_endpoint']}?{query}", flow)

    def finish_authorization(
        self,
        request: AuthorizationRequest,
        callback: Mapping[str, str],
        flow_data: Mapping[str, str],
    ) -> Connected:
        """Check ``state`` and ``iss``, exchange the code with DPoP, check ``sub``."""
        if callback.get("error"):
            raise ProviderRejected(f"Bluesky did not authorize ({callback['error']})")
        if callback.get("state") != request.state:
            raise ProviderRejected("the callback's state does not match this flow")
        issuer = flow_data.get("issuer")
        if not issuer or callback.get("iss") != issuer:
            raise ProviderRejected("the callback comes from another authorization server")
        code = callback.get("code")
        if not code:
            raise ProviderRejected("the callback carries no authorization code")
        key_pem, did = flow_data["dpop_key"], flow_data["did"]
        with self._http() as http:
            data = atproto_oauth.token_request(
                http,
                DpopKey(key_pem),
                flow_data["token_endpoint"],
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": request.redirect_uri,
                    "code_verifier": request.code_verifier,
                    "client_id": flow_data["client_id"],
                },
            )
        credentials = atproto_oauth.token_credentials(data, key_pem, did)
        settings = {
            "auth": AUTH_OAUTH,
            "pds_url": flow_data["pds_url"],
            "service": flow_data.get("service", ""),
            "issuer": issuer,
            "token_endpoint": flow_data["token_endpoint"],
            "revocation_endpoint": flow_data.get("revocation_endpoint", ""),
            "client_id": flow_data["client_id"],
        }
        account = self._account(did, flow_data.get("handle") or did, settings)
        return Connected(credentials=credentials, account=account)

    def _oauth_refresh(self, link: Link) -> Credentials:
        credentials = link.credentials
        if not credentials.refresh_token:
            raise ProviderNeedsReauth("the Bluesky connection has no refresh token")
        key_pem = credentials.require_secret("dpop_key")
        settings = link.account.settings
        with self._http() as http:
            data = atproto_oauth.token_request(
                http,
                DpopKey(key_pem),
                str(settings["token_endpoint"]),
                {
                    "grant_type": "refresh_token",
                    "refresh_token": credentials.refresh_token,
                    "client_id": str(settings["client_id"]),
                },
            )
        return atproto_oauth.token_credentials(data, key_pem, self._did(link), credentials)

    def _oauth_revoke(self, link: Link) -> None:
        settings = link.account.settings
        endpoint = str(settings.get("revocation_endpoint") or "")
        token = link.credentials.refresh_token or link.credentials.access_token
        if not endpoint or not token:
            return
        key = DpopKey(link.credentials.require_secret("dpop_key"))
        with self._http() as http:
            atproto_oauth.revoke(http, key, endpoint, str(settings["client_id"]), token)

    # ---- token life cycle

    def can_refresh(self, link: Link) -> bool:
        return bool(link.credentials.refresh_token or link.credentials.secrets.get("app_password"))

    def refresh(self, link: Link) -> Credentials:
        """``refreshSession`` (rotating the refresh JWT); a new session from the app
        password only when the PDS refuses the refresh JWT.
        """
        if self._is_oauth(link):
            return self._oauth_refresh(link)
        credentials = link.credentials
        did = self._did(link)
        with self._http() as http:
            refresh_token = credentials.refresh_token
            expiry = jwt_expiry(refresh_token) if refresh_token else None
            if refresh_token and (expiry is None or expiry > datetime.now(UTC)):
                try:
                    data = Xrpc(http, self._pds_url(link), BearerAuth(refresh_token)).procedure(
                        "com.atproto.server.refreshSession"
                    )
                except (ProviderTokenExpired, ProviderNeedsReauth):
                    data = None  # the refresh JWT is dead: fall back to the app password
                if data is not None:
                    if data.get("did") != did:
                        raise ProviderNeedsReauth("the Bluesky session belongs to another account")
                    fresh = self._session_credentials(
                        data, credentials.secrets.get("app_password", "")
                    )
                    return replace(fresh, secrets=dict(credentials.secrets))
            password = credentials.secrets.get("app_password")
            if not password:
                raise ProviderNeedsReauth("the Bluesky session ended; connect the account again")
            service = str(link.account.settings.get("service") or self._default_service())
            try:
                data, fresh = self._create_session(http, service, did, password)
            except (ProviderTokenExpired, ProviderNeedsReauth, ProviderRejected) as exc:
                raise ProviderNeedsReauth(
                    "Bluesky refused the app password; connect the account again"
                ) from exc
            if data.get("did") != did:
                raise ProviderNeedsReauth("the app password belongs to another account")
            return fresh

    def can_revoke(self, link: Link) -> bool:
        """What ``revoke`` reaches: the revocation endpoint (OAuth, when the authorization
        server has one) or ``deleteSession`` at the PDS (app-password sessions).
        """
        credentials = link.credentials
        settings = link.account.settings
        if self._is_oauth(link):
            token = credentials.refresh_token or credentials.access_token
            return bool(settings.get("revocation_endpoint")) and bool(token)
        return bool(settings.get("pds_url")) and bool(credentials.refresh_token)

    def revoke(self, link: Link) -> None:
        """End the session: ``deleteSession`` with the refresh JWT for app-password
        sessions, token revocation at the authorization server for OAuth ones.
        """
        if self._is_oauth(link):
            self._oauth_revoke(link)
            return
        with self._http() as http:
            pds = str(link.account.settings.get("pds_url") or "")
            if not pds:
                return
            self._delete_session(http, pds, link.credentials)

    # ---- what a connection does

    def check_connection(self, link: Link) -> Account:
        with self._http() as http:
            data = self._pds(http, link).query("com.atproto.server.getSession")
        did, handle = str(data.get("did") or ""), str(data.get("handle") or "")
        if did != self._did(link):
            raise ProviderNeedsReauth("the Bluesky session belongs to another account")
        return self._account(did, handle, link.account.settings)

    def _post_text(self, post: Post) -> str:
        return self._rich_text(post)[0]

    @staticmethod
    def _rich_text(post: Post) -> tuple[str, tuple[TextSpan, ...]]:
        """The text as published (NFC, the link after it) and the spans moved to match."""
        text, spans = nfc_with_spans(post.text, post.spans)
        if post.link and post.link not in text:
            # After the text: the spans' offsets hold.
            text = f"{text}\n\n{post.link}" if text.strip() else post.link
        return text, spans

    @staticmethod
    def _langs(options: Mapping[str, str]) -> list[str] | None:
        unknown = set(options) - {"langs"}
        if unknown:
            raise ProviderRejected(f"unknown Bluesky options: {', '.join(sorted(unknown))}")
        raw = options.get("langs", "").strip()
        if not raw:
            return None
        langs = [lang.strip() for lang in raw.split(",") if lang.strip()]
        if len(langs) > MAX_LANGS:
            raise ProviderRejected(f"a Bluesky post names at most {MAX_LANGS} languages")
        for lang in langs:
            primary = lang.split("-", 1)[0]
            if not set(lang) <= _LANG_CHARS or not primary.isalpha() or len(primary) > 8:  # noqa: PLR2004
                raise ProviderRejected(f"{lang!r} is not a language tag (BCP 47, like en or pt-BR)")
        return langs

    def validate(self, post: Post) -> str:
        """Check ``post`` against Bluesky's rules locally; returns the text to publish."""
        text = self._post_text(post)
        length = text_length(text, TextCounting.GRAPHEMES)
        if length > MAX_GRAPHEMES:
            raise ProviderRejected(
                f"the text is {length} graphemes; Bluesky allows {MAX_GRAPHEMES}"
            )
        if not text.strip() and not post.media:
            raise ProviderRejected("a Bluesky post needs text or an image")
        media.check_images(post.media)
        self._langs(post.options)
        return text

    def publish(self, link: Link, post: Post) -> Published:
        text = self.validate(post)
        spans = self._rich_text(post)[1]
        langs = self._langs(post.options)
        did = self._did(link)
        with self._http() as http:
            pds = self._pds(http, link)
            record: dict[str, Any] = {
                "$type": POST_COLLECTION,
                "text": text,
                "createdAt": _now_iso(),
            }
            # The author's links win over links, tags and mentions found in the text.
            facets = merge_facets(
                bluesky_link_facets(text, spans),
                richtext.detect_facets(text, lambda h: identity.resolve_handle(pds, h)),
            )
            if facets:
                record["facets"] = facets
            if langs:
                record["langs"] = langs
            if post.media:
                images = []
                for item in post.media:
                    uploaded = pds.procedure(
                        "com.atproto.repo.uploadBlob",
                        data=item.data,
                        content_type=item.content_type,
                    )
                    blob = uploaded.get("blob")
                    if not isinstance(blob, dict):
                        raise ProviderRejected("Bluesky answered the upload without a blob")
                    images.append({"image": blob, "alt": item.alt_text or ""})
                record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
            created = pds.procedure(
                "com.atproto.repo.createRecord",
                {"repo": did, "collection": POST_COLLECTION, "record": record},
            )
        uri = created.get("uri")
        if not isinstance(uri, str):
            raise ProviderRejected("Bluesky answered without the post's URI")
        return Published(external_id=uri, url=self.post_url(uri))

    def _own_record(self, link: Link, external_id: str) -> tuple[str, str]:
        repo, collection, rkey = parse_post_uri(external_id)
        if repo != self._did(link) or collection != POST_COLLECTION:
            raise ProviderRejected("that post does not belong to this Bluesky account")
        return repo, rkey

    def delete(self, link: Link, external_id: str) -> None:
        repo, rkey = self._own_record(link, external_id)
        with self._http() as http:
            self._pds(http, link).procedure(
                "com.atproto.repo.deleteRecord",
                {"repo": repo, "collection": POST_COLLECTION, "rkey": rkey},
            )

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        repo, rkey = self._own_record(link, external_id)
        with self._http() as http:
            try:
                self._pds(http, link).query(
                    "com.atproto.repo.getRecord",
                    {"repo": repo, "collection": POST_COLLECTION, "rkey": rkey},
                )
            except ProviderRejected as exc:
                if "RecordNotFound" in exc.reason:
                    return PostStatus(PostState.DELETED, detail="the post is gone from the PDS")
                raise
        return PostStatus(PostState.PUBLISHED, url=self.post_url(external_id))
