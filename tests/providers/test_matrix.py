"""The matrix provider against a real Synapse homeserver (through a recording proxy that can
inject faults in Matrix's error format)."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from plexus.kit.http import DestinationPolicy
from plexus.providers.base import (
    Link,
    MediaItem,
    Post,
    PostState,
    ProviderContext,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
)
from plexus.providers.matrix import MatrixProvider
from plexus.providers.testing import ProviderContract

from conftest import CI
from fake_helpers import running, serve_app
from synapse_helpers import (
    MAX_UPLOAD_BYTES,
    TOKEN_LIFETIME_SECONDS,
    MatrixProxy,
    MatrixUser,
    SynapseServer,
    start_synapse,
    synapse_python,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("synapse")]

LOOPBACK = DestinationPolicy.from_strings(["127.0.0.0/8"])
#: Below the proxy's 3 s TIMEOUT delay, with room for a busy machine on real calls.
CLIENT_TIMEOUT = httpx.Timeout(2.0)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory):
    if synapse_python() is None:
        message = "Synapse is not installed: run scripts/peers/synapse.sh"
        if CI:
            pytest.fail(f"{message} (CI=true: this must not be skipped)")
        pytest.skip(message)
    yield from start_synapse(tmp_path_factory.mktemp("synapse"))


@pytest.fixture(scope="session")
def alice(synapse: SynapseServer) -> MatrixUser:
    return synapse.register("alice")


@pytest.fixture(scope="session")
def room_alias(synapse: SynapseServer, alice: MatrixUser) -> tuple[str, str]:
    room_id = synapse.create_room(alice, alias="plexus-contract")
    return room_id, f"#plexus-contract:{synapse.server_name}"


@pytest.fixture(scope="session")
def proxy(synapse: SynapseServer, alice: MatrixUser, room_alias: tuple[str, str]):
    fake = MatrixProxy(synapse, room_alias[0], alice)
    fake.remember_secret(alice.password, alice.access_token)
    with running(fake):
        yield fake


@pytest.fixture
def fake(proxy: MatrixProxy) -> MatrixProxy:
    proxy.disarm()
    return proxy


@pytest.fixture
def provider() -> MatrixProvider:
    return MatrixProvider(ProviderContext(destinations=LOOPBACK, timeout=CLIENT_TIMEOUT))


def password_link(
    provider: MatrixProvider, proxy: MatrixProxy, user: MatrixUser, room: str
) -> Link:
    fields = {
        "homeserver": proxy.base_url,
        "room": room,
        "user": user.localpart,
        "password": user.password,
    }
    connected = provider.connect_with_fields(fields)
    params = {k: v for k, v in fields.items() if k != "password"}
    return Link(connected.credentials, connected.account, params=params)


@pytest.fixture
def link(provider: MatrixProvider, fake: MatrixProxy, alice: MatrixUser, room_alias) -> Link:
    return password_link(provider, fake, alice, room_alias[1])


class TestMatrixContract(ProviderContract):
    """Connected by password login, so Plexus owns the device and revokes it."""

    supports_revocation = True


# --------------------------------------------------------------------------- connecting


def test_password_login_creates_a_device_and_keeps_only_tokens(
    provider, fake, alice, room_alias, synapse
):
    link = password_link(provider, fake, alice, room_alias[1])
    credentials = link.credentials
    assert credentials.access_token
    assert credentials.refresh_token, "Synapse issues refresh tokens on request"
    assert credentials.expires_at is not None
    assert credentials.expires_at > datetime.now(UTC)
    assert not credentials.secrets
    assert alice.password not in credentials.to_json().decode()
    settings = link.account.settings
    assert link.account.external_id == alice.user_id
    assert settings["login"] == "password"
    assert "password" not in settings
    devices = {d["device_id"]: d for d in synapse.devices(credentials.access_token)}
    assert devices[settings["device_id"]]["display_name"] == "Plexus"
    login = fake.requests_to("/_matrix/client/v3/login")[-1]
    assert b'"m.login.password"' in login.body


def test_pasted_token_is_kept_as_given_and_not_logged_out(provider, fake, synapse):
    bob = synapse.register(f"bob{uuid.uuid4().hex[:6]}")
    room_id = synapse.create_room(bob)
    connected = provider.connect_with_fields(
        {"homeserver": fake.base_url, "room": room_id, "access_token": bob.access_token}
    )
    assert connected.credentials.access_token == bob.access_token
    assert connected.credentials.refresh_token is None
    assert connected.account.settings["login"] == "pasted"
    assert connected.account.settings["room_id"] == room_id
    logouts = len(fake.requests_to("/logout"))
    provider.revoke(Link(connected.credentials, connected.account))
    assert len(fake.requests_to("/logout")) == logouts
    assert synapse.whoami_status(bob.access_token)[0] == 200


def test_room_alias_is_resolved(provider, fake, alice, room_alias):
    link = password_link(provider, fake, alice, room_alias[1])
    assert link.account.settings["room_id"] == room_alias[0]
    assert link.account.settings["room_alias"] == room_alias[1]
    assert fake.requests_to("/_matrix/client/v3/directory/room/")


def test_unknown_room_alias_is_refused(provider, fake, alice, synapse):
    with pytest.raises(ProviderRejected, match="unknown"):
        password_link(provider, fake, alice, f"#nowhere:{synapse.server_name}")


def test_connect_refuses_a_wrong_password(provider, fake, alice, room_alias):
    with pytest.raises(ProviderRejected, match="M_FORBIDDEN"):
        provider.connect_with_fields(
            {
                "homeserver": fake.base_url,
                "room": room_alias[1],
                "user": alice.localpart,
                "password": "not-the-password",
            }
        )


def test_connect_refuses_an_unknown_access_token(provider, fake, room_alias):
    with pytest.raises(ProviderRejected, match="does not accept this access token"):
        provider.connect_with_fields(
            {"homeserver": fake.base_url, "room": room_alias[1], "access_token": "syt_not_real"}
        )


def test_well_known_names_the_base_url(provider, fake, alice, room_alias):
    async def well_known(request):
        return JSONResponse({"m.homeserver": {"base_url": fake.base_url + "/"}})

    app = Starlette(routes=[Route("/.well-known/matrix/client", well_known)])
    with serve_app(app) as server_url:
        connected = provider.connect_with_fields(
            {"homeserver": server_url, "room": room_alias[1], "access_token": alice.access_token}
        )
    assert connected.account.settings["base_url"] == fake.base_url


def test_user_who_may_not_post_is_refused_at_connect(provider, fake, synapse, alice):
    carol = synapse.register(f"carol{uuid.uuid4().hex[:6]}")
    announcements = synapse.create_room(alice, members=[carol], power_levels={"events_default": 50})
    with pytest.raises(ProviderRejected, match="power level 0, the room needs 50"):
        provider.connect_with_fields(
            {
                "homeserver": fake.base_url,
                "room": announcements,
                "user": carol.localpart,
                "password": carol.password,
            }
        )
    # The device of the refused login was logged out again.
    assert all(d.get("display_name") != "Plexus" for d in synapse.devices(carol.access_token))


def test_user_outside_the_room_is_refused_at_connect(provider, fake, synapse, room_alias):
    dave = synapse.register(f"dave{uuid.uuid4().hex[:6]}")
    with pytest.raises(ProviderRejected, match="has not joined"):
        provider.connect_with_fields(
            {"homeserver": fake.base_url, "room": room_alias[1], "access_token": dave.access_token}
        )


def test_upload_limit_is_read_from_the_homeserver(provider, link):
    assert link.account.settings["max_upload_bytes"] == MAX_UPLOAD_BYTES
    assert provider.limits_for(link.account).media.max_image_bytes == MAX_UPLOAD_BYTES


def test_loopback_homeserver_is_refused_by_default(fake, alice, room_alias):
    guarded = MatrixProvider(ProviderContext(timeout=CLIENT_TIMEOUT))
    port = fake.base_url.rsplit(":", 1)[1]
    before = len(fake.requests)
    fields = {"room": room_alias[1], "access_token": alice.access_token}
    # A name: the SSRF guard refuses the address it resolves to, before connecting.
    with pytest.raises(ProviderRetryable, match="could not be reached"):
        guarded.connect_with_fields({**fields, "homeserver": f"https://localhost:{port}"})
    # An address: refused up front, with the reason.
    with pytest.raises(ProviderRejected, match="not a public address"):
        guarded.connect_with_fields({**fields, "homeserver": f"https://127.0.0.1:{port}"})
    assert len(fake.requests) == before


def test_plain_http_is_refused_outside_allowed_networks(alice, room_alias):
    allowed_elsewhere = MatrixProvider(
        ProviderContext(destinations=DestinationPolicy.from_strings(["10.0.0.0/8"]))
    )
    with pytest.raises(ProviderRejected, match="https"):
        allowed_elsewhere.connect_with_fields(
            {
                "homeserver": "http://matrix.example.org",
                "room": room_alias[1],
                "access_token": alice.access_token,
            }
        )


# --------------------------------------------------------------------------- posting


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x10\x80\xf0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_image_is_uploaded_and_sent_as_m_image(provider, link, synapse, alice, room_alias):
    image = _png(3, 2)
    text = f"With a picture {uuid.uuid4().hex}"
    post = Post(
        text=text,
        media=(MediaItem("dot.png", "image/png", image, alt_text="Three blue pixels"),),
    )
    published = provider.publish(link, post)
    room_id, text_event, image_event = published.external_id.split("/")
    assert room_id == room_alias[0]
    events = {e["event_id"]: e for e in synapse.events(room_id, alice, limit=50)}
    assert events[text_event]["content"] == {"msgtype": "m.text", "body": text}
    content = events[image_event]["content"]
    assert content["msgtype"] == "m.image"
    assert content["body"] == "Three blue pixels"
    assert content["info"] == {"mimetype": "image/png", "size": len(image), "w": 3, "h": 2}
    assert synapse.download(content["url"], alice) == image

    provider.delete(link, published.external_id)
    events = {e["event_id"]: e for e in synapse.events(room_id, alice, limit=50)}
    assert events[text_event]["content"] == {}
    assert events[image_event]["content"] == {}


def test_image_over_the_upload_limit_is_rejected(provider, link, fake):
    too_big = _png(1, 1) + b"\x00" * MAX_UPLOAD_BYTES
    before = len(fake.published_texts())
    with pytest.raises(ProviderRejected, match="M_TOO_LARGE"):
        provider.publish(link, Post(text="", media=(MediaItem("big.png", "image/png", too_big),)))
    assert len(fake.published_texts()) == before


def test_retry_with_the_same_idempotency_key_makes_one_event(provider, link, fake):
    text = f"Sent twice, seen once {uuid.uuid4().hex}"
    post = Post(text=text, idempotency_key=f"pub-{uuid.uuid4()}")
    first = provider.publish(link, post)
    second = provider.publish(link, post)
    assert first.external_id == second.external_id
    assert fake.published_texts().count(text) == 1
    third = provider.publish(link, replace(post, idempotency_key=f"pub-{uuid.uuid4()}"))
    assert third.external_id != first.external_id
    assert fake.published_texts().count(text) == 2


def test_redacted_post_reads_back_as_deleted(provider, link, synapse, alice):
    published = provider.publish(link, Post(text="Soon gone"))
    assert provider.fetch_status(link, published.external_id).state is PostState.PUBLISHED
    provider.delete(link, published.external_id)
    status = provider.fetch_status(link, published.external_id)
    assert status.state is PostState.DELETED
    assert status.url
    assert status.url.startswith("https://matrix.to/#/")


def test_post_to_another_room_through_options(provider, link, synapse, alice):
    other = synapse.create_room(alice)
    published = provider.publish(link, Post(text="Elsewhere", options={"room": other}))
    assert published.external_id.startswith(other + "/")
    assert synapse.texts(other, alice) == ["Elsewhere"]


# --------------------------------------------------------------------------- errors, for real


def test_real_rate_limit_is_retryable_with_synapse_delay(
    provider, fake, synapse, alice, room_alias
):
    rita = synapse.register(f"rita{uuid.uuid4().hex[:6]}")
    room_id = synapse.create_room(alice, members=[rita])
    link = password_link(provider, fake, rita, room_id)
    synapse.limit_messages(rita, per_second=1, burst_count=1)
    caught: ProviderRetryable | None = None
    for n in range(10):
        try:
            provider.publish(link, Post(text=f"burst {n}"))
        except ProviderRetryable as exc:
            caught = exc
            break
    assert caught is not None, "Synapse never rate limited the burst"
    assert caught.rate_limited
    assert caught.retry_after is not None
    assert 0 <= caught.retry_after <= 1.5


def test_expired_token_is_refreshed_and_rotates(provider, fake, alice, room_alias):
    link = password_link(provider, fake, alice, room_alias[1])
    assert link.credentials.expires_at is not None
    wait = (link.credentials.expires_at - datetime.now(UTC)).total_seconds() + 1
    assert 0 < wait <= TOKEN_LIFETIME_SECONDS + 1
    time.sleep(wait)
    with pytest.raises(ProviderTokenExpired):
        provider.publish(link, Post(text="too late"))
    fresh = provider.refresh(link)
    assert fresh.access_token != link.credentials.access_token
    assert fresh.refresh_token != link.credentials.refresh_token
    refreshed = replace(link, credentials=fresh)
    provider.publish(refreshed, Post(text="after refresh"))
    assert "after refresh" in fake.published_texts()


def test_logout_invalidates_the_token(provider, fake, alice, room_alias, synapse):
    link = password_link(provider, fake, alice, room_alias[1])
    token = link.credentials.access_token
    assert token
    assert synapse.whoami_status(token)[0] == 200
    provider.revoke(link)
    status, body = synapse.whoami_status(token)
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    with pytest.raises(ProviderNeedsReauth):
        provider.check_connection(link)
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)


def test_revoke_with_an_expired_token_never_refreshes(provider, fake, alice, room_alias, synapse):
    """``revoke`` must not refresh (that would rotate the refresh token outside the
    connection service's lock and lose the new one). Synapse accepts ``/logout`` with an
    expired access token, so the device is logged out without a refresh; a homeserver
    that answers a soft logout instead gets ProviderTokenExpired (test_matrix_media.py).
    """
    link = password_link(provider, fake, alice, room_alias[1])
    assert link.credentials.expires_at is not None
    wait = (link.credentials.expires_at - datetime.now(UTC)).total_seconds() + 1
    assert 0 < wait <= TOKEN_LIFETIME_SECONDS + 1
    time.sleep(wait)
    with pytest.raises(ProviderTokenExpired):
        provider.check_connection(link)  # the token really is expired
    refreshes = len(fake.requests_to("/refresh"))
    provider.revoke(link)
    assert len(fake.requests_to("/refresh")) == refreshes
    assert link.credentials.access_token in fake.revoked_tokens()
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)  # logging the device out ended its refresh token too


def test_can_revoke_password_login_but_not_pasted_token(provider, fake, alice, room_alias):
    password = password_link(provider, fake, alice, room_alias[1])
    assert provider.can_revoke(password)
    pasted = provider.connect_with_fields(
        {"homeserver": fake.base_url, "room": room_alias[1], "access_token": alice.access_token}
    )
    assert not provider.can_revoke(Link(pasted.credentials, pasted.account))
