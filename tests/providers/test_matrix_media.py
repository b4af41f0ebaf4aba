"""The matrix provider's parts that need no homeserver: image headers and post ids."""

from __future__ import annotations

import struct

import httpx
import pytest

from plexus.providers.base import (
    Account,
    Credentials,
    Link,
    Post,
    ProviderContext,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
)
from plexus.providers.matrix import MatrixProvider
from plexus.providers.matrix.media import image_size


def test_gif_size():
    assert image_size(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 8, "image/gif") == (
        640,
        480,
    )


def test_jpeg_size_skips_segments_before_the_frame():
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof2 = b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, 300, 400, 3) + b"\x00" * 3
    data = b"\xff\xd8" + app0 + sof2 + b"\xff\xd9"
    assert image_size(data, "image/jpeg") == (400, 300)


def test_webp_sizes():
    def riff(chunk: bytes, payload: bytes) -> bytes:
        body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
        return b"RIFF" + struct.pack("<I", len(body)) + body

    extended = riff(b"VP8X", b"\x00" * 4 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little"))
    assert image_size(extended, "image/webp") == (100, 50)
    bits = (20 - 1) | ((10 - 1) << 14)
    lossless = riff(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8)
    assert image_size(lossless, "image/webp") == (20, 10)
    lossy = riff(b"VP8 ", b"\x00" * 3 + b"\x9d\x01\x2a" + struct.pack("<HH", 32, 16))
    assert image_size(lossy, "image/webp") == (32, 16)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"", "image/png"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"\xff\xd8\x00\x00\x00\x00", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8X", "image/webp"),
        (b"GIF89a\x00\x00\x00\x00", "image/gif"),
        (b"anything", "image/svg+xml"),
    ],
)
def test_unreadable_headers_give_no_size(data, content_type):
    assert image_size(data, content_type) is None


@pytest.mark.parametrize("external_id", ["", "$event", "!room:hs", "!room:hs/", "!room:hs/$"])
def test_foreign_post_ids_are_refused_before_any_request(external_id):
    provider = MatrixProvider(ProviderContext())
    account = Account(
        "@a:hs", "a", settings={"base_url": "https://hs.example", "room_id": "!room:hs"}
    )
    link = Link(Credentials(access_token="t"), account)
    with pytest.raises(ProviderRejected):
        provider.fetch_status(link, external_id)
    with pytest.raises(ProviderRejected):
        provider.delete(link, external_id)


# --------------------------------------------------------------------------- a scripted homeserver
#
# Below, the provider talks to an httpx MockTransport standing in for a homeserver, so a test
# can say exactly what the server answers and see every request that reached it.


class ScriptedHomeserver:
    """Answers the few calls of a connect (and logout/refresh), recording every request."""

    def __init__(self, user_id: str = "@alice:hs.example") -> None:
        self.user_id = user_id
        self.requests: list[httpx.Request] = []
        self.expired_tokens: set[str] = set()
        self.failing_tokens: set[str] = set()

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def handler(self, request: httpx.Request) -> httpx.Response:  # noqa: PLR0911 - one per route
        self.requests.append(request)
        path = request.url.path
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in self.expired_tokens:
            return httpx.Response(
                401, json={"errcode": "M_UNKNOWN_TOKEN", "error": "expired", "soft_logout": True}
            )
        if path == "/_matrix/client/versions":
            return httpx.Response(200, json={"versions": ["v1.11"]})
        if path.endswith("/account/whoami"):
            return httpx.Response(200, json={"user_id": self.user_id, "device_id": "DEV"})
        if "/state/m.room.member/" in path:
            return httpx.Response(200, json={"membership": "join"})
        if path.endswith("/logout"):
            if token in self.failing_tokens:
                return httpx.Response(503, json={"errcode": "M_UNKNOWN", "error": "busy"})
            return httpx.Response(200, json={})
        if path.endswith("/refresh"):
            return httpx.Response(
                200, json={"access_token": "new", "refresh_token": "new-r", "expires_in_ms": 60000}
            )
        return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "no"})


def scripted(monkeypatch: pytest.MonkeyPatch, server: ScriptedHomeserver) -> MatrixProvider:
    provider = MatrixProvider(ProviderContext())
    transport = httpx.MockTransport(server.handler)
    monkeypatch.setattr(provider, "_http", lambda: httpx.Client(transport=transport))
    return provider


def matrix_link(login: str, *, access: str = "old", refresh: str | None = "old-r") -> Link:
    settings = {"base_url": "https://hs.example", "room_id": "!room:hs.example", "login": login}
    return Link(
        Credentials(access_token=access, refresh_token=refresh),
        Account("@alice:hs.example", "alice", settings=settings),
    )


GOOD_FIELDS = {"homeserver": "https://hs.example", "room": "!room:hs.example"}


def test_scripted_homeserver_connects(monkeypatch):
    server = ScriptedHomeserver()
    connected = scripted(monkeypatch, server).connect_with_fields(
        {**GOOD_FIELDS, "access_token": "syt_token"}
    )
    assert connected.account.external_id == "@alice:hs.example"
    assert connected.account.url == "https://matrix.to/#/@alice:hs.example"


# ---- revoke never refreshes


def test_revoke_with_an_expired_token_raises_token_expired_without_refreshing(monkeypatch):
    server = ScriptedHomeserver()
    server.expired_tokens.add("old")
    provider = scripted(monkeypatch, server)
    with pytest.raises(ProviderTokenExpired):
        provider.revoke(matrix_link("password"))
    assert server.paths() == ["/_matrix/client/v3/logout"]
    assert not any(p.endswith("/refresh") for p in server.paths())


def test_revoke_that_fails_after_soft_logout_spends_no_refresh_token(monkeypatch):
    """The reviewer's case: the second logout fails; the stored refresh token must still
    be the live one, so revoke must not have refreshed at all."""
    server = ScriptedHomeserver()
    server.expired_tokens.add("old")
    server.failing_tokens.add("new")
    provider = scripted(monkeypatch, server)
    with pytest.raises(ProviderTokenExpired):
        provider.revoke(matrix_link("password"))
    assert "/_matrix/client/v3/refresh" not in server.paths()


def test_revoke_with_a_dead_token_and_no_refresh_token_is_done(monkeypatch):
    server = ScriptedHomeserver()
    server.expired_tokens.add("old")
    provider = scripted(monkeypatch, server)
    provider.revoke(matrix_link("password", refresh=None))  # NeedsReauth: nothing to revoke
    assert server.paths() == ["/_matrix/client/v3/logout"]


def test_revoke_failure_is_retryable(monkeypatch):
    server = ScriptedHomeserver()
    server.failing_tokens.add("old")
    with pytest.raises(ProviderRetryable):
        scripted(monkeypatch, server).revoke(matrix_link("password"))


# ---- can_revoke


@pytest.mark.parametrize(
    ("login", "revocable"),
    [("password", True), ("pasted", False), (None, False), ("something-else", False)],
)
def test_can_revoke_only_devices_plexus_logged_in(monkeypatch, login, revocable):
    server = ScriptedHomeserver()
    provider = scripted(monkeypatch, server)
    link = matrix_link(login) if login is not None else matrix_link("x")
    if login is None:
        settings = {k: v for k, v in link.account.settings.items() if k != "login"}
        link = Link(link.credentials, Account("@alice:hs.example", "alice", settings=settings))
    assert provider.can_revoke(link) is revocable
    provider.revoke(link)
    assert server.paths() == (["/_matrix/client/v3/logout"] if revocable else [])


# ---- bad input is refused before anything is sent

BAD_HOMESERVERS = [
    "https://[::1",
    "https://[::1/path",
    "https://exa mple.org",
    "https://example.org:99999",
    "https://example.org:-1",
    "https://example.org:0",
    "https://ex\x00ample.org",
    "https://example.org\x07",
    "https://exam\u200bple.org",
    "example.org\n.evil",
    "https://" + "a" * 600 + ".org",
    "ftp://example.org",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "https://user:pw@example.org",
    "https://example.org/?q=1",
    "https://",
    "   ",
]


@pytest.mark.parametrize("homeserver", BAD_HOMESERVERS)
@pytest.mark.parametrize("auth", ["token", "password"])
def test_bad_homeserver_is_rejected_before_any_request(monkeypatch, homeserver, auth):
    server = ScriptedHomeserver()
    fields = {"homeserver": homeserver, "room": "!room:hs.example"}
    if auth == "token":
        fields["access_token"] = "syt_token"
    else:
        fields |= {"user": "alice", "password": "pw"}
    with pytest.raises(ProviderRejected):
        scripted(monkeypatch, server).connect_with_fields(fields)
    assert server.requests == []


@pytest.mark.parametrize(
    "room",
    [
        "",
        "!",
        "#",
        "#alias",
        "#:hs.example",
        "#alias:",
        "room:hs.example",
        "!ro om:hs.example",
        "!room\x00:hs.example",
        "#al\nias:hs.example",
        "!" + "r" * 300 + ":hs.example",
        "#" + "é" * 130 + ":hs",  # 260 bytes: over the 255-byte limit
    ],
)
def test_bad_room_is_rejected_before_any_request(monkeypatch, room):
    server = ScriptedHomeserver()
    with pytest.raises(ProviderRejected):
        scripted(monkeypatch, server).connect_with_fields(
            {**GOOD_FIELDS, "room": room, "access_token": "syt_token"}
        )
    assert server.requests == []


@pytest.mark.parametrize(
    "token", ["syt tok", "syt\x00tok", "syt\ntok", "sytö", "x" * 5000, "syt\u202etok"]
)
def test_bad_access_token_is_rejected_before_any_request(monkeypatch, token):
    server = ScriptedHomeserver()
    with pytest.raises(ProviderRejected):
        scripted(monkeypatch, server).connect_with_fields({**GOOD_FIELDS, "access_token": token})
    assert server.requests == []


@pytest.mark.parametrize("user", ["al ice", "al\x00ice", "a\nb", "@" + "a" * 300 + ":hs"])
def test_bad_user_is_rejected_before_any_request(monkeypatch, user):
    server = ScriptedHomeserver()
    with pytest.raises(ProviderRejected):
        scripted(monkeypatch, server).connect_with_fields(
            {**GOOD_FIELDS, "user": user, "password": "pw"}
        )
    assert server.requests == []


def test_bad_room_in_post_options_is_rejected_before_any_request(monkeypatch):
    server = ScriptedHomeserver()
    with pytest.raises(ProviderRejected):
        scripted(monkeypatch, server).publish(
            matrix_link("password"), Post(text="hi", options={"room": "!a b\x00"})
        )
    assert server.requests == []


def test_invalid_well_known_base_url_is_rejected(monkeypatch):
    server = ScriptedHomeserver()
    handler = server.handler

    def with_well_known(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/matrix/client":
            server.requests.append(request)
            return httpx.Response(200, json={"m.homeserver": {"base_url": "https://[::1"}})
        return handler(request)

    provider = MatrixProvider(ProviderContext())
    transport = httpx.MockTransport(with_well_known)
    monkeypatch.setattr(provider, "_http", lambda: httpx.Client(transport=transport))
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields({**GOOD_FIELDS, "access_token": "syt_token"})
    assert server.paths() == ["/.well-known/matrix/client"]


# ---- what the homeserver chooses fits the account columns


def test_overlong_user_id_is_refused_not_truncated(monkeypatch):
    server = ScriptedHomeserver(user_id="@" + "a" * 320 + ":hs.example")
    with pytest.raises(ProviderRejected, match="invalid user id"):
        scripted(monkeypatch, server).connect_with_fields(
            {**GOOD_FIELDS, "access_token": "syt_token"}
        )


def test_long_user_id_drops_the_url_and_shortens_the_name(monkeypatch):
    user_id = "@" + "é" * 280 + ":hs.example"  # fits 300 characters; its URL does not fit 1000
    server = ScriptedHomeserver(user_id=user_id)
    account = (
        scripted(monkeypatch, server)
        .connect_with_fields({**GOOD_FIELDS, "access_token": "syt_token"})
        .account
    )
    assert account.external_id == user_id
    assert account.url is None
    assert len(account.display_name) <= 300
    assert account.display_name.startswith(user_id)
