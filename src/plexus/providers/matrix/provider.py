"""The Matrix provider: posts to a room on any homeserver (Synapse, Dendrite, Conduit...).

**Auth kind: ``ACCESS_TOKEN``.** Matrix has no OAuth2 client registration that every
homeserver offers yet, so a connection holds a client-server API access token. The user
gives either

- an access token they already have (``access_token``): Plexus stores it as given and, on
  disconnect, does *not* log it out, because that token is the session of another client
  (Element shows it under Settings, Help & About) and logging it out would sign that
  client out as well. The user ends that session themselves; or
- a user name and password (``user`` + ``password``): Plexus logs in once with
  ``m.login.password``, as a new device of its own (display name "Plexus", a fresh device
  id, so two connections never replace each other's token), asks for a refresh token, and
  keeps only the tokens it got back; the password is never stored. Homeservers that issue
  refresh tokens return short-lived access tokens: an expired one is answered with
  ``M_UNKNOWN_TOKEN`` + ``soft_logout``, which this provider raises as
  ``ProviderTokenExpired`` so the caller refreshes (``POST /refresh``; refresh tokens
  rotate) and retries. On disconnect Plexus logs that device out, which kills its tokens.

The homeserver address comes from the user, so every request goes through the guarded
(SSRF-checked) client; ``/.well-known/matrix/client`` is honoured when the server has one.

**Posting.** Text goes out as one ``m.text`` event with a plain ``body``; Plexus sends no
``formatted_body`` HTML because it does not sanitise HTML for Matrix. Images are uploaded
to the media repository and sent as one ``m.image`` event each, after the text. Every
event's transaction id is derived from ``Post.idempotency_key``, so a retried publication
is deduplicated by the homeserver (per device) instead of posted twice. Deleting redacts
every event of the post; a redacted event reads back as ``DELETED``.

No platform SDK: matrix-nio and mautrix are asyncio clients built around sync loops and
end-to-end encryption state; the few REST calls here do not need them.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import quote

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
    PostState,
    PostStatus,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderTokenExpired,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
)
from plexus.providers.matrix.client import (
    MatrixClient,
    has_control_or_space,
    normalise_homeserver,
    origin_of,
    path_segment,
)
from plexus.providers.matrix.events import (
    event_url,
    parse_post_id,
    post_id,
    redaction_transaction_id,
    transaction_ids,
)
from plexus.providers.matrix.media import IMAGE_TYPES, image_size
from plexus.providers.matrix.rooms import (
    MESSAGE_EVENT,
    check_room,
    require_can_post,
    resolve_room,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from plexus.providers.base import MediaItem

#: Matrix caps a whole event (JSON, with signatures, hashes and references) at 65536
#: bytes; it has no limit on text as such. 60000 bytes of text leaves room for the rest
#: of the event. JSON escaping can still push a text full of quotes or line breaks over:
#: the homeserver then answers ``M_TOO_LARGE``, raised as ``ProviderRejected``.
MAX_TEXT_BYTES: Final = 60_000
#: Matrix has no album event: each image is an event of its own. Ten keeps one post from
#: flooding a room.
MAX_IMAGES: Final = 10
#: ``Account.settings`` keys.
BASE_URL: Final = "base_url"
ROOM_ID: Final = "room_id"
ROOM_ALIAS: Final = "room_alias"
DEVICE_ID: Final = "device_id"
LOGIN: Final = "login"
MAX_UPLOAD_BYTES: Final = "max_upload_bytes"
#: ``LOGIN`` values: who created the access token.
LOGIN_PASSWORD: Final = "password"  # noqa: S105 - a mode name, not a secret
LOGIN_PASTED: Final = "pasted"
#: Matrix user ids are at most 255 bytes; the longest Plexus stores as an account id.
MAX_USER_ID_LENGTH: Final = 255
#: What Plexus stores about an account (``Account`` columns): id, name, link.
MAX_EXTERNAL_ID: Final = 300
MAX_DISPLAY_NAME: Final = 300
MAX_ACCOUNT_URL: Final = 1000
#: The longest access token accepted (Synapse's are about 40 characters).
MAX_TOKEN_LENGTH: Final = 4096


class MatrixProvider(Provider):
    """Post to one Matrix room; see the module docstring for how connecting works."""

    name: ClassVar[str] = "matrix"
    display_name: ClassVar[str] = "Matrix"
    auth_kind: ClassVar[AuthKind] = AuthKind.ACCESS_TOKEN
    capabilities: ClassVar[Capabilities] = Capabilities(
        text=TextRules(max_length=MAX_TEXT_BYTES, counting=TextCounting.UTF8_BYTES),
        media=MediaRules(max_items=MAX_IMAGES, image_types=IMAGE_TYPES),
        # Synapse's default ``rc_message`` (0.2 per second, bursts of 10); homeservers
        # differ, and a 429 carries the server's own delay.
        rate_limits=(RateLimit(requests=10, per_seconds=50),),
    )
    connect_fields: ClassVar[tuple[ConnectField, ...]] = (
        ConnectField(
            "homeserver",
            "Homeserver",
            help="Your server name or homeserver URL, e.g. example.org or https://matrix.example.org",
        ),
        ConnectField("room", "Room", help="A room id (!abc…) or alias (#room:example.org)"),
        ConnectField(
            "access_token",
            "Access token",
            secret=True,
            required=False,
            help="An existing session's token; or give a user name and password instead",
        ),
        ConnectField(
            "user",
            "User",
            required=False,
            help="@you:example.org or your user name, to let Plexus log in as its own device",
        ),
        ConnectField(
            "password",
            "Password",
            secret=True,
            required=False,
            help="Used once to log in; only the resulting token is kept",
        ),
    )
    rotates_refresh_tokens: ClassVar[bool] = True

    # ---- description

    def limits_for(self, account: Account) -> Capabilities:
        """The homeserver's upload size (``m.upload.size``, read at connect) caps images."""
        limit = account.settings.get(MAX_UPLOAD_BYTES)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            return self.capabilities
        media = replace(self.capabilities.media, max_image_bytes=limit)
        return replace(self.capabilities, media=media)

    # ---- connecting

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        """Find the homeserver, get a token (as given, or by logging in once), check that
        the user is joined to the room and may post there, and read the upload limit.
        """
        homeserver = normalise_homeserver(fields.get("homeserver", ""), self.context.destinations)
        room = check_room(fields.get("room", ""))
        token = fields.get("access_token", "").strip()
        user = fields.get("user", "").strip()
        password = fields.get("password", "")
        if token and (user or password):
            raise ProviderRejected("give either an access token or a user name and password")
        if not token and not (user and password):
            raise ProviderRejected("give an access token, or a user name and password")
        if token and not _plausible_token(token):
            raise ProviderRejected("that is not a Matrix access token")
        if user and (len(user.encode()) > MAX_USER_ID_LENGTH or has_control_or_space(user)):
            raise ProviderRejected("that is not a Matrix user name or user id")

        with self._http() as http:
            base_url = self._discover(http, homeserver)
            if token:
                credentials = Credentials(access_token=token)
                login = LOGIN_PASTED
            else:
                credentials = self._login(http, base_url, user, password)
                login = LOGIN_PASSWORD
            client = self._client(http, base_url, credentials)
            try:
                account = self._account(client, room, login)
            except (ProviderNeedsReauth, ProviderTokenExpired):
                # While connecting, a refused token is the user's input being wrong.
                raise ProviderRejected("the homeserver does not accept this access token") from None
            except ProviderError:
                if login == LOGIN_PASSWORD:
                    # Leave no device behind for a connection that is not made.
                    self._logout_quietly(client)
                raise
        return Connected(credentials=credentials, account=account)

    def _discover(self, http: httpx.Client, homeserver: str) -> str:
        """The client API base URL: from ``/.well-known/matrix/client`` when the server has
        one, else the address itself; either way it must answer ``/versions``.
        """
        base_url = homeserver
        try:
            known = MatrixClient(http, origin_of(homeserver)).request(
                "GET", "/.well-known/matrix/client", authenticated=False
            )
        except ProviderRejected:
            known = {}  # no (readable) well-known document: use the address as given
        announced = known.get("m.homeserver")
        if isinstance(announced, dict) and isinstance(announced.get("base_url"), str):
            base_url = normalise_homeserver(announced["base_url"], self.context.destinations)
        try:
            versions = MatrixClient(http, base_url).request(
                "GET", "/_matrix/client/versions", authenticated=False
            )
        except ProviderRejected:
            versions = {}
        if not isinstance(versions.get("versions"), list):
            raise ProviderRejected(f"{base_url} does not answer as a Matrix homeserver")
        return base_url

    def _login(self, http: httpx.Client, base_url: str, user: str, password: str) -> Credentials:
        device_id = "PLEXUS" + secrets.token_hex(5).upper()
        answer = MatrixClient(http, base_url).request(
            "POST",
            "/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
                "device_id": device_id,
                "initial_device_display_name": "Plexus",
                "refresh_token": True,
            },
            authenticated=False,
        )
        return _credentials(answer, Credentials())

    def _account(self, client: MatrixClient, room: str, login: str) -> Account:
        me = client.request("GET", "/account/whoami")
        user_id = me.get("user_id")
        if not isinstance(user_id, str) or not user_id.startswith("@"):
            raise ProviderRejected("the homeserver did not say whose token this is")
        if len(user_id) > MAX_EXTERNAL_ID or has_control_or_space(user_id):
            # Never truncated: a shortened id could name another account.
            raise ProviderRejected("the homeserver answered with an invalid user id")
        room_id, alias = resolve_room(client, room)
        require_can_post(client, room_id, user_id)
        settings: dict[str, Any] = {
            BASE_URL: client.base_url,
            ROOM_ID: room_id,
            LOGIN: login,
        }
        if alias:
            settings[ROOM_ALIAS] = alias
        if isinstance(me.get("device_id"), str):
            settings[DEVICE_ID] = me["device_id"]
        upload = _upload_limit(client)
        if upload is not None:
            settings[MAX_UPLOAD_BYTES] = upload
        display_name = f"{user_id} in {alias or room_id}"
        if len(display_name) > MAX_DISPLAY_NAME:
            display_name = display_name[: MAX_DISPLAY_NAME - 1] + "…"
        profile = f"https://matrix.to/#/{quote(user_id, safe='@:')}"
        # Too long to store: no link rather than a shortened one pointing elsewhere.
        url = profile if len(profile) <= MAX_ACCOUNT_URL else None
        return Account(external_id=user_id, display_name=display_name, url=url, settings=settings)

    # ---- token life cycle

    def refresh(self, link: Link) -> Credentials:
        """A new access token from the refresh token (``POST /refresh``); it rotates."""
        refresh_token = link.credentials.refresh_token
        if not refresh_token:
            raise ProviderNeedsReauth("the connection has no refresh token; connect it again")
        with self._http() as http:
            client = MatrixClient(http, self._base_url(link))
            # An unknown or spent refresh token is M_UNKNOWN_TOKEN: ProviderNeedsReauth.
            answer = client.request(
                "POST", "/refresh", json={"refresh_token": refresh_token}, authenticated=False
            )
        return _credentials(answer, link.credentials)

    def can_revoke(self, link: Link) -> bool:
        """Only a device Plexus created by password login is logged out on disconnect."""
        return link.account.settings.get(LOGIN) == LOGIN_PASSWORD

    def revoke(self, link: Link) -> None:
        """Log out the device Plexus created by password login; a pasted token is left
        alone (it is another client's session, see the module docstring).

        Never refreshes: an expired access token (soft logout) raises
        ``ProviderTokenExpired``, and the caller refreshes under its lock, stores the
        rotated tokens and calls ``revoke`` again with them.
        """
        if not self.can_revoke(link):
            return
        with self._http() as http:
            try:
                self._client(http, self._base_url(link), link.credentials).request(
                    "POST", "/logout", json={}
                )
            except ProviderNeedsReauth:
                return  # the homeserver already forgot the token: nothing left to revoke

    def check_connection(self, link: Link) -> Account:
        """``whoami`` must name the connected user, who must still be able to post."""
        with self._http() as http:
            client = self._client(http, self._base_url(link), link.credentials)
            me = client.request("GET", "/account/whoami")
            if me.get("user_id") != link.account.external_id:
                raise ProviderNeedsReauth("the access token now belongs to another user")
            room_id = self._room_id(link)
            require_can_post(client, room_id, link.account.external_id)
            settings = dict(link.account.settings)
            upload = _upload_limit(client)
            if upload is not None:
                settings[MAX_UPLOAD_BYTES] = upload
        return replace(link.account, settings=settings)

    # ---- posting

    def publish(self, link: Link, post: Post) -> Published:
        """Send the text, then each image, to the room; one event each."""
        text = post.text
        if post.link and post.link not in text:
            text = f"{text}\n\n{post.link}" if text.strip() else post.link
        if not text.strip() and not post.media:
            raise ProviderRejected("a Matrix post needs text or an image")
        if len(post.media) > MAX_IMAGES:
            raise ProviderRejected(f"Matrix posts take at most {MAX_IMAGES} images")
        for item in post.media:
            if item.content_type not in IMAGE_TYPES:
                raise ProviderRejected(f"Matrix posts take images only, not {item.content_type}")

        with self._http() as http:
            client = self._client(http, self._base_url(link), link.credentials)
            room_id = self._post_room(client, link, post)
            txn_ids = transaction_ids(room_id, post.idempotency_key)
            event_ids: list[str] = []
            if text.strip():
                content = {"msgtype": "m.text", "body": text}
                event_ids.append(self._send(client, room_id, next(txn_ids), content))
            for item in post.media:
                content = self._image_content(client, item)
                event_ids.append(self._send(client, room_id, next(txn_ids), content))
        return Published(
            external_id=post_id(room_id, event_ids),
            url=event_url(room_id, event_ids[0]),
        )

    def _post_room(self, client: MatrixClient, link: Link, post: Post) -> str:
        chosen = post.options.get("room")
        if not chosen:
            return self._room_id(link)
        room_id, _ = resolve_room(client, chosen)
        return room_id

    def _send(
        self, client: MatrixClient, room_id: str, txn_id: str, content: Mapping[str, Any]
    ) -> str:
        answer = client.request(
            "PUT",
            f"/rooms/{path_segment(room_id)}/send/{MESSAGE_EVENT}/{path_segment(txn_id)}",
            json=content,
        )
        event_id = answer.get("event_id")
        if not isinstance(event_id, str) or not event_id.startswith("$"):
            raise ProviderRejected("the homeserver did not return an event id")
        return event_id

    def _image_content(self, client: MatrixClient, item: MediaItem) -> dict[str, Any]:
        # The upload endpoint stayed at /_matrix/media/v3 when authenticated media moved
        # downloads to /_matrix/client/v1/media (Matrix 1.11); it always took a token.
        uploaded = client.request(
            "POST",
            "/_matrix/media/v3/upload",
            content=item.data,
            params={"filename": item.filename},
            headers={"content-type": item.content_type},
        )
        mxc = uploaded.get("content_uri")
        if not isinstance(mxc, str) or not mxc.startswith("mxc://"):
            raise ProviderRejected("the homeserver did not return a media URI for the image")
        info: dict[str, Any] = {"mimetype": item.content_type, "size": len(item.data)}
        size = image_size(item.data, item.content_type)
        if size is not None:
            info["w"], info["h"] = size
        return {
            "msgtype": "m.image",
            # Clients read ``body`` as the image's description (its alt text).
            "body": item.alt_text or item.filename,
            "filename": item.filename,
            "url": mxc,
            "info": info,
        }

    def delete(self, link: Link, external_id: str) -> None:
        """Redact every event of the post (the homeserver keeps an empty shell of each)."""
        room_id, event_ids = parse_post_id(external_id)
        with self._http() as http:
            client = self._client(http, self._base_url(link), link.credentials)
            for event_id in event_ids:
                txn_id = redaction_transaction_id(event_id)
                client.request(
                    "PUT",
                    f"/rooms/{path_segment(room_id)}/redact/{path_segment(event_id)}"
                    f"/{path_segment(txn_id)}",
                    json={"reason": "Deleted from Plexus"},
                )

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        """Read the post's first event back; a redacted event is ``DELETED``."""
        room_id, event_ids = parse_post_id(external_id)
        with self._http() as http:
            client = self._client(http, self._base_url(link), link.credentials)
            event = client.request(
                "GET", f"/rooms/{path_segment(room_id)}/event/{path_segment(event_ids[0])}"
            )
        url = event_url(room_id, event_ids[0])
        unsigned = event.get("unsigned")
        redacted = "redacted_because" in event or (
            isinstance(unsigned, dict) and "redacted_because" in unsigned
        )
        if redacted or not event.get("content"):
            return PostStatus(PostState.DELETED, url=url, detail="redacted")
        return PostStatus(PostState.PUBLISHED, url=url)

    # ---- helpers

    def _http(self) -> httpx.Client:
        return self.context.client(guarded=True)

    def _client(self, http: httpx.Client, base_url: str, credentials: Credentials) -> MatrixClient:
        return MatrixClient(
            http,
            base_url,
            access_token=credentials.access_token,
            can_refresh=credentials.refresh_token is not None,
        )

    def _base_url(self, link: Link) -> str:
        base_url = link.account.settings.get(BASE_URL)
        if not isinstance(base_url, str) or not base_url:
            raise ProviderNeedsReauth("the connection has no homeserver; connect it again")
        # Stored at connect; checked again so a tampered row cannot point Plexus elsewhere
        # over plain HTTP.
        return normalise_homeserver(base_url, self.context.destinations)

    def _room_id(self, link: Link) -> str:
        room_id = link.account.settings.get(ROOM_ID)
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise ProviderNeedsReauth("the connection has no room; connect it again")
        return room_id

    def _logout_quietly(self, client: MatrixClient) -> None:
        try:
            client.request("POST", "/logout", json={})
        except ProviderError:
            return


def _credentials(answer: Mapping[str, Any], previous: Credentials) -> Credentials:
    """Credentials from a login or refresh answer (``expires_in_ms`` when tokens expire)."""
    access_token = answer.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderRejected("the homeserver returned no access token")
    refresh_token = answer.get("refresh_token")
    expires_ms = answer.get("expires_in_ms")
    expires_in = None
    if isinstance(expires_ms, int) and not isinstance(expires_ms, bool) and expires_ms > 0:
        expires_in = expires_ms / 1000
    return previous.refreshed(
        access_token=access_token,
        expires_in=expires_in,
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
    )


def _plausible_token(token: str) -> bool:
    """An access token travels in a header: printable ASCII, no spaces, not huge."""
    return (
        len(token) <= MAX_TOKEN_LENGTH
        and token.isascii()
        and token.isprintable()
        and " " not in token
    )


def _upload_limit(client: MatrixClient) -> int | None:
    """``m.upload.size`` from the media config (authenticated media first, then legacy)."""
    for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config"):
        try:
            config = client.request("GET", path)
        except ProviderRejected:
            continue
        size = config.get("m.upload.size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size
        return None
    return None
