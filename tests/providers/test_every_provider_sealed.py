"""Issue 4, R9 acceptance: connect every registered provider through the HTTP API, then
read the raw database (the SQLite file and its WAL, or every value of every PostgreSQL
table) and find no token, key, password, webhook URL or TOTP secret in plain text; then
disconnect everything and see each platform that offers revocation receive its call.

Every platform is a local server: the fakes of ``tests/providers/*_fake.py``, the
sandbox platform, a real Synapse (``synapse_helpers``) and a real atproto PDS
(``pds_helpers``), the last two behind their recording proxies. ``CONNECTORS`` is the
table of "how to connect X"; a provider registered without an entry fails the test.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from plexus.app import create_app
from plexus.config import load_settings
from plexus.connections.calls import open_credentials
from plexus.db import unit_of_work
from plexus.models.connections import Connection
from plexus.providers.base import Credentials
from plexus.providers.registry import PROVIDERS
from plexus.runtime import Runtime, init_runtime

from airtable_fake import AirtableFake
from auth_helpers import SignedIn, sign_in
from conftest import BACKEND, CI
from connection_helpers import RecordingSandbox
from discord_fake import DiscordFake
from fake_helpers import running, serve_app
from imgbb_fake import ImgbbFake
from imgur_fake import ImgurFake
from instagram_fake import InstagramFake
from mastodon_fake import MastodonFake
from pds_helpers import PdsAccount, PdsNetwork, PdsProxy, create_account, start_network
from synapse_helpers import MatrixProxy, MatrixUser, SynapseServer, start_synapse, synapse_python
from telegram_fake import TelegramFake

# ``scripts/test`` runs pytest with ``--dist loadgroup``: this module shares the worker of
# the Synapse tests. A session fixture defined in (or imported into) a test module is not
# shared with other modules, so this module starts its own Synapse and PDS; they are
# module-scoped, so they stop as soon as it is done.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("synapse")]

CONNECTIONS = "/api/v1/connections"
CALLBACK = f"{CONNECTIONS}/oauth/callback"
PUBLIC_URL = "https://plexus.example.test"
DISCORD_SECRET = "discord-app-secret-" + "d" * 24
AIRTABLE_SECRET = "airtable-app-secret-" + "a" * 24
#: Shorter values could turn up by chance; every secret here is longer.
MIN_SECRET = 12


# --------------------------------------------------------------------------- real servers


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    if synapse_python() is None:
        message = "Synapse is not installed: run scripts/peers/synapse.sh"
        if CI:
            pytest.fail(f"{message} (CI=true: this must not be skipped)")
        pytest.skip(message)
    yield from start_synapse(tmp_path_factory.mktemp("synapse-sealed"))


@pytest.fixture(scope="module")
def pds_network() -> Iterator[PdsNetwork]:
    with start_network() as network:
        yield network


# --------------------------------------------------------------------------- the platforms


@dataclass
class Platforms:
    """Every platform server of one test, and the accounts set up on them."""

    sandbox: RecordingSandbox
    sandbox_url: str
    discord: DiscordFake = field(default_factory=DiscordFake)
    instagram: InstagramFake = field(default_factory=InstagramFake)
    imgur: ImgurFake = field(default_factory=ImgurFake)
    imgbb: ImgbbFake = field(default_factory=ImgbbFake)
    airtable: AirtableFake = field(
        default_factory=lambda: AirtableFake(client_secret=AIRTABLE_SECRET)
    )
    mastodon: MastodonFake = field(default_factory=MastodonFake)
    telegram: TelegramFake = field(default_factory=TelegramFake)
    matrix: MatrixProxy | None = None
    matrix_setup: MatrixSetup | None = None
    bluesky: PdsProxy | None = None
    bluesky_account: PdsAccount | None = None

    def fakes(self) -> list[Any]:
        return [
            self.discord,
            self.instagram,
            self.imgur,
            self.imgbb,
            self.airtable,
            self.mastodon,
            self.telegram,
        ]

    def environment(self, pds: PdsNetwork) -> dict[str, str]:
        """``PLEXUS_PROVIDER_<NAME>_<KEY>`` pointing every provider at its server."""
        assert self.bluesky is not None
        values = {
            "SANDBOX_API_URL": f"{self.sandbox_url}/api",
            "DISCORD_CLIENT_ID": self.discord.client_id,
            "DISCORD_CLIENT_SECRET": self.discord.client_secret,
            "DISCORD_API_URL": f"{self.discord.base_url}/api/v10",
            "INSTAGRAM_CLIENT_ID": self.instagram.client_id,
            "INSTAGRAM_CLIENT_SECRET": self.instagram.client_secret,
            "INSTAGRAM_GRAPH_URL": self.instagram.base_url,
            "IMGUR_CLIENT_ID": self.imgur.client_id,
            "IMGUR_CLIENT_SECRET": self.imgur.client_secret,
            "IMGUR_API_URL": self.imgur.base_url,
            "IMGBB_API_URL": self.imgbb.base_url,
            "AIRTABLE_CLIENT_ID": self.airtable.client_id,
            "AIRTABLE_CLIENT_SECRET": AIRTABLE_SECRET,
            "AIRTABLE_API_URL": self.airtable.base_url,
            "AIRTABLE_OAUTH_URL": self.airtable.base_url,
            "TELEGRAM_API_URL": self.telegram.base_url,
            "BLUESKY_SERVICE": self.bluesky.base_url,
            "BLUESKY_PLC_URL": pds.plc_url,
        }
        return {f"PLEXUS_PROVIDER_{key}": value for key, value in values.items()}


@pytest.fixture
def platforms(
    tmp_path: Path, synapse: SynapseServer, pds_network: PdsNetwork
) -> Iterator[Platforms]:
    sandbox = RecordingSandbox(tmp_path / "sandbox-platform.db")
    with contextlib.ExitStack() as stack:
        found = Platforms(sandbox, stack.enter_context(serve_app(sandbox.app())))
        found.discord.client_secret = DISCORD_SECRET
        for fake in found.fakes():
            stack.enter_context(running(fake))
        found.matrix, found.matrix_setup = _matrix(synapse)
        stack.enter_context(running(found.matrix))
        found.bluesky = PdsProxy(pds_network)
        stack.enter_context(running(found.bluesky))
        found.bluesky_account = _bluesky_account(pds_network, found.bluesky)
        yield found


@dataclass(frozen=True)
class MatrixSetup:
    """Two users, each in a room of their own: one connects by password, one by token."""

    alice: MatrixUser
    bob: MatrixUser
    bob_room: str


def _matrix(synapse: SynapseServer) -> tuple[MatrixProxy, MatrixSetup]:
    alice = synapse.register(f"alice{secrets.token_hex(4)}")
    bob = synapse.register(f"bob{secrets.token_hex(4)}")
    proxy = MatrixProxy(synapse, synapse.create_room(alice), alice)
    proxy.remember_secret(alice.password, alice.access_token, bob.password, bob.access_token)
    return proxy, MatrixSetup(alice, bob, synapse.create_room(bob))


def _bluesky_account(network: PdsNetwork, proxy: PdsProxy) -> PdsAccount:
    account = create_account(network, prefix="sealed")
    proxy.repos.append(account.did)
    proxy.secrets.extend([account.password, account.app_password, account.access_jwt])
    return account


# --------------------------------------------------------------------------- Plexus


@pytest.fixture
def rt(
    env_vars: dict[str, str], platforms: Platforms, pds_network: PdsNetwork
) -> Iterator[Runtime]:
    environ = {
        **env_vars,
        **platforms.environment(pds_network),
        "PLEXUS_PUBLIC_URL": PUBLIC_URL,
        "PLEXUS_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
    }
    runtime = init_runtime(load_settings(environ=environ))
    yield runtime
    runtime.dispose()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class Hub:
    """Plexus as the owner's browser and API client see it."""

    client: TestClient
    owner: SignedIn
    platforms: Platforms

    def connect(self, provider: str, name: str, fields: dict[str, str]) -> dict[str, Any]:
        response = self.post(provider, name, fields)
        assert response.status_code == 201, f"{provider}: {response.text}"
        return dict(response.json())

    def post(self, provider: str, name: str, fields: dict[str, str]) -> httpx.Response:
        body = {"provider": provider, "name": name, "fields": fields}
        return self.client.post(CONNECTIONS, json=body, headers=self.owner.headers)

    def oauth(
        self,
        provider: str,
        name: str,
        fields: dict[str, str],
        consent: Callable[[str], dict[str, str]],
    ) -> dict[str, Any]:
        """POST → 202 → the platform's consent (returns ``code`` and ``state``) → callback."""
        started = self.post(provider, name, fields)
        assert started.status_code == 202, f"{provider}: {started.text}"
        callback = consent(started.json()["authorization_url"])
        done = self.client.get(CALLBACK, params=callback, headers=self.owner.headers)
        assert done.status_code == 201, f"{provider}: {done.text}"
        return dict(done.json())


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def _follow_consent(authorize_url: str) -> dict[str, str]:
    """A browser on a platform's authorize page that redirects straight back to Plexus."""
    answer = httpx.get(authorize_url)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(PUBLIC_URL + CALLBACK), location
    return _query(location)


# --------------------------------------------------------------------------- how to connect X


def connect_sandbox(hub: Hub) -> list[dict[str, Any]]:
    return [hub.connect("sandbox", "Sealed sandbox", {"account_name": "sealed"})]


def connect_discord(hub: Hub) -> list[dict[str, Any]]:
    fake = hub.platforms.discord
    pasted = hub.connect("discord", "Discord pasted", {"webhook_url": fake.webhook.discord_url})

    def consent(url: str) -> dict[str, str]:
        return {"code": fake.approve(url), "state": _query(url)["state"]}

    return [pasted, hub.oauth("discord", "Discord OAuth", {}, consent)]


def connect_instagram(hub: Hub) -> list[dict[str, Any]]:
    fake = hub.platforms.instagram
    user = fake.add_user()

    def consent(url: str) -> dict[str, str]:
        query = _query(url)
        code = fake.authorize(user, query["redirect_uri"], query.get("code_challenge"))
        return {"code": code, "state": query["state"]}

    return [hub.oauth("instagram", "Instagram", {}, consent)]


def connect_imgur(hub: Hub) -> list[dict[str, Any]]:
    fake = hub.platforms.imgur
    account = fake.add_user()

    def consent(url: str) -> dict[str, str]:
        return {"code": fake.authorize(account), "state": _query(url)["state"]}

    return [hub.oauth("imgur", "Imgur", {}, consent)]


def connect_imgbb(hub: Hub) -> list[dict[str, Any]]:
    return [hub.connect("imgbb", "ImgBB", {"api_key": hub.platforms.imgbb.new_key()})]


def connect_airtable(hub: Hub) -> list[dict[str, Any]]:
    """A personal access token on one base, OAuth2 with PKCE on another (two accounts)."""
    fake = hub.platforms.airtable
    other = fake.add_base("Second calendar")
    table = {"table": "Posts", "text_field": "Text"}
    pat = {"base_id": fake.base.id, **table, "personal_access_token": fake.issue_pat()}
    with_pat = hub.connect("airtable", "Airtable PAT", pat)
    oauth = {"base_id": other.id, **table}
    return [with_pat, hub.oauth("airtable", "Airtable OAuth", oauth, _follow_consent)]


def connect_mastodon(hub: Hub) -> list[dict[str, Any]]:
    fields = {"instance": hub.platforms.mastodon.base_url}
    return [hub.oauth("mastodon", "Mastodon", fields, _follow_consent)]


def connect_telegram(hub: Hub) -> list[dict[str, Any]]:
    fields = {"bot_token": hub.platforms.telegram.bot.token, "chat": "@plexus_news"}
    return [hub.connect("telegram", "Telegram", fields)]


def connect_matrix(hub: Hub) -> list[dict[str, Any]]:
    """``user`` + ``password`` (Plexus logs in, owns the device) and a pasted token."""
    proxy, setup = hub.platforms.matrix, hub.platforms.matrix_setup
    assert proxy is not None
    assert setup is not None
    home = {"homeserver": proxy.base_url}
    alice = {"user": setup.alice.localpart, "password": setup.alice.password}
    pasted = {**home, "room": setup.bob_room, "access_token": setup.bob.access_token}
    return [
        hub.connect("matrix", "Matrix login", {**home, "room": proxy.room_id, **alice}),
        hub.connect("matrix", "Matrix token", pasted),
    ]


def connect_bluesky(hub: Hub) -> list[dict[str, Any]]:
    """An app password (atproto OAuth needs a browser on the PDS's sign-in page)."""
    account, proxy = hub.platforms.bluesky_account, hub.platforms.bluesky
    assert account is not None
    assert proxy is not None
    fields = {
        "identifier": account.handle,
        "app_password": account.app_password,
        "service": proxy.base_url,
    }
    return [hub.connect("bluesky", "Bluesky", fields)]


CONNECTORS: dict[str, Callable[[Hub], list[dict[str, Any]]]] = {
    "sandbox": connect_sandbox,
    "discord": connect_discord,
    "instagram": connect_instagram,
    "imgur": connect_imgur,
    "imgbb": connect_imgbb,
    "airtable": connect_airtable,
    "mastodon": connect_mastodon,
    "telegram": connect_telegram,
    "matrix": connect_matrix,
    "bluesky": connect_bluesky,
}


# --------------------------------------------------------------------------- what to look for


def platform_secrets(platforms: Platforms) -> list[str]:
    """Every secret the platforms issued or accepted, and the operator's client secrets."""
    found = [secret for fake in platforms.fakes() for secret in fake.secrets_in_use()]
    assert platforms.matrix is not None
    assert platforms.bluesky is not None
    # MatrixProxy also records the login body's ``"refresh_token": true`` flag as "True".
    found += [s for s in platforms.matrix.secrets_in_use() if s != "True"]
    found += platforms.bluesky.secrets_in_use()
    found += [DISCORD_SECRET, AIRTABLE_SECRET, platforms.imgur.client_secret]
    return found


def stored_credentials(rt: Runtime) -> dict[str, Credentials]:
    """Each connection's decrypted credentials, by connection name."""
    with unit_of_work(rt.sessions) as session:
        rows = session.scalars(select(Connection)).all()
        return {row.name: open_credentials(rt, row) for row in rows}


def secret_values(credentials: Credentials) -> list[str]:
    values = (credentials.access_token, credentials.refresh_token, *credentials.secrets.values())
    return [v for v in values if v]


def totp_needles(secret: str) -> list[bytes]:
    """The base32 secret as shown, and its raw bytes in every usual encoding."""
    raw = base64.b32decode(secret)
    return [
        secret.encode(),
        secret.lower().encode(),
        raw,
        raw.hex().encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


def raw_database(rt: Runtime) -> bytes:
    """What someone holding the database reads: the SQLite file (and its WAL and journal),
    or, on PostgreSQL, every value of every table."""
    if BACKEND != "postgres":
        path = Path(rt.settings.resolved_database_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    with unit_of_work(rt.sessions) as session:
        query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        chunks: list[bytes] = []
        for table in session.scalars(text(query)).all():
            for row in session.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the catalogue
                chunks += [_as_bytes(value) for value in row if value is not None]
        return b"\n".join(chunks)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    return str(value).encode()


# --------------------------------------------------------------------------- the test


def test_every_provider_connected_leaves_no_secret_in_the_database_and_is_revoked(
    rt: Runtime, client: TestClient, platforms: Platforms
) -> None:
    assert set(CONNECTORS) == set(PROVIDERS), "every registered provider needs a connector"
    owner = sign_in(rt, client, "owner@example.com")
    started = client.post("/api/v1/me/mfa/totp", headers=owner.headers)
    assert started.status_code == 200, started.text
    totp_secret = started.json()["secret"]
    code = pyotp.TOTP(totp_secret).now()
    confirmed = client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": code}, headers=owner.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    recovery_codes = confirmed.json()["recovery_codes"]

    hub = Hub(client, owner, platforms)
    connected = {name: connect(hub) for name, connect in CONNECTORS.items()}
    listing = client.get(CONNECTIONS, headers=owner.headers)
    assert listing.status_code == 200, listing.text
    assert sorted(c["provider"] for c in listing.json()["items"]) == sorted(
        c["provider"] for made in connected.values() for c in made
    )

    # The secrets in play: what the platforms issued and accepted, what the vault holds.
    stored = stored_credentials(rt)
    assert set(stored) == {c["name"] for made in connected.values() for c in made}
    assert all(secret_values(c) for c in stored.values()), "a connection without credentials"
    in_vault = [s for c in stored.values() for s in secret_values(c)]
    needles = {s.encode() for s in [*platform_secrets(platforms), *recovery_codes, *in_vault]}
    needles.update(totp_needles(totp_secret))
    assert [n for n in needles if len(n) < MIN_SECRET] == [], "too short to search for"

    dump = raw_database(rt)
    # The dump is real: what is not secret is there in plain text.
    for name in stored:
        assert name.encode() in dump, f"{name!r} missing: the dump is not the database"
    leaked = [n for n in needles if n in dump]
    assert not leaked, f"{len(leaked)} secret(s) in plain text in the database"
    for answer in (listing.text, *(str(made) for made in connected.values())):
        assert not [n for n in needles if n.decode("latin-1") in answer]

    revoke_probes = _revocation_probes(platforms, stored)
    for made in connected.values():
        for connection in made:
            removed = client.delete(f"{CONNECTIONS}/{connection['id']}", headers=owner.headers)
            assert removed.status_code == 204, f"{connection['name']}: {removed.text}"
    _assert_revoked(platforms, revoke_probes)

    assert client.get(CONNECTIONS, headers=owner.headers).json()["items"] == []
    with unit_of_work(rt.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


# --------------------------------------------------------------------------- revocation


@dataclass(frozen=True)
class Probes:
    """What each platform should see revoked, read before disconnecting."""

    discord_tokens: set[str]
    discord_oauth_hook: str
    instagram_token: str
    mastodon_token: str
    matrix_login_token: str
    matrix_pasted_token: str
    bluesky_refresh: str


def _revocation_probes(platforms: Platforms, stored: dict[str, Credentials]) -> Probes:
    discord_oauth = next(h for h in platforms.discord.webhooks.values() if h.application_id)
    return Probes(
        discord_tokens=_tokens(stored["Discord OAuth"]),
        discord_oauth_hook=discord_oauth.id,
        instagram_token=str(stored["Instagram"].access_token),
        mastodon_token=str(stored["Mastodon"].access_token),
        matrix_login_token=str(stored["Matrix login"].access_token),
        matrix_pasted_token=str(stored["Matrix token"].access_token),
        bluesky_refresh=str(stored["Bluesky"].refresh_token),
    )


def _tokens(credentials: Credentials) -> set[str]:
    return {t for t in (credentials.access_token, credentials.refresh_token) if t}


def _assert_revoked(platforms: Platforms, probes: Probes) -> None:
    """RFC 7009 (sandbox, Discord, Mastodon), Instagram's ``DELETE /me/permissions``,
    the Discord webhook Plexus created, Matrix logout of its own device, Bluesky
    ``deleteSession``. ImgBB, Telegram, Airtable and Imgur offer no revocation."""
    assert platforms.sandbox.count("/api/oauth/revoke") >= 1
    assert platforms.sandbox.revoked_count() >= 1
    assert set(platforms.discord.revoked_tokens()) & probes.discord_tokens
    assert platforms.discord.webhooks[probes.discord_oauth_hook].deleted
    assert not platforms.discord.webhook.deleted, "a pasted webhook is the user's own"
    deletes = [
        r for r in platforms.instagram.requests_to("/me/permissions") if r.method == "DELETE"
    ]
    assert deletes
    assert probes.instagram_token in platforms.instagram.revoked_tokens()
    assert probes.mastodon_token in platforms.mastodon.revoked_tokens()
    matrix, bluesky = platforms.matrix, platforms.bluesky
    assert matrix is not None
    assert bluesky is not None
    assert probes.matrix_login_token in matrix.revoked_tokens()
    assert matrix.synapse.whoami_status(probes.matrix_login_token)[0] == 401
    assert matrix.synapse.whoami_status(probes.matrix_pasted_token)[0] == 200
    assert probes.bluesky_refresh in bluesky.revoked_tokens()
