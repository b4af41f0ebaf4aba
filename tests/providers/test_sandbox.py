"""The sandbox provider against the sandbox platform it is built for, served on loopback:
the shared contract tests, plus refresh-token rotation and revocation."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from plexus.providers.base import (
    Link,
    MediaItem,
    Post,
    ProviderContext,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderSettings,
    ProviderUnavailable,
)
from plexus.providers.sandbox import SandboxPlatform, SandboxProvider
from plexus.providers.testing import FAKE_RETRY_AFTER, Fault, ProviderContract

from fake_helpers import serve_app

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class SandboxControls:
    """The contract's platform controls, through the sandbox's own fault API and file."""

    def __init__(self, platform: SandboxPlatform, url: str) -> None:
        self.platform = platform
        self.url = url
        self.link: Link | None = None
        self.revoked: list[str] = []

    def arm(self, fault: Fault, times: int = 1) -> None:
        assert self.link is not None
        response = httpx.post(
            f"{self.url}/api/faults",
            json={"fault": fault.value, "times": times},
            headers={"authorization": f"Bearer {self.link.credentials.access_token}"},
        )
        assert response.status_code == 200, response.text

    def published_texts(self) -> list[str]:
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(self.platform.database)) as db:
            return [r[0] for r in db.execute("SELECT text FROM posts WHERE deleted = 0")]

    def revoked_tokens(self) -> list[str]:
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(self.platform.database)) as db:
            return [r[0] for r in db.execute("SELECT hash FROM tokens WHERE revoked = 1")]

    def secrets_in_use(self) -> list[str]:
        assert self.link is not None
        credentials = self.link.credentials
        return [t for t in (credentials.access_token, credentials.refresh_token) if t]


@pytest.fixture
def served(tmp_path: Path):
    platform = SandboxPlatform(
        tmp_path / "sandbox.db", timeout_seconds=3.0, fault_retry_after=FAKE_RETRY_AFTER
    )
    with serve_app(platform.app()) as url:
        yield platform, url


@pytest.fixture
def provider(served) -> SandboxProvider:
    _, url = served
    context = ProviderContext(
        settings=ProviderSettings({"api_url": f"{url}/api"}), timeout=httpx.Timeout(1.0)
    )
    return SandboxProvider(context)


@pytest.fixture
def fake(served) -> SandboxControls:
    platform, url = served
    return SandboxControls(platform, url)


@pytest.fixture
def link(provider: SandboxProvider, fake: SandboxControls) -> Link:
    connected = provider.connect_with_fields({"account_name": "Contract"})
    fake.link = Link(connected.credentials, connected.account)
    return fake.link


class TestSandboxContract(ProviderContract):
    pass


def test_images_reach_the_platform(provider, link, fake):
    post = Post(text="with a picture", media=(MediaItem("dot.png", "image/png", PNG, "a dot"),))
    published = provider.publish(link, post)
    assert published.url
    assert published.url.endswith(published.external_id)
    assert "with a picture" in fake.published_texts()


def test_refresh_rotates_and_the_old_refresh_token_is_refused(provider, link):
    fresh = provider.refresh(link)
    assert fresh.refresh_token != link.credentials.refresh_token
    assert fresh.access_token != link.credentials.access_token
    assert fresh.expires_at is not None
    with pytest.raises(ProviderNeedsReauth):
        provider.refresh(link)  # the spent refresh token: invalid_grant
    provider.check_connection(Link(fresh, link.account))


def test_idempotency_key_makes_a_retry_one_post(provider, link, fake):
    post = Post(text="exactly once", idempotency_key="publication-17")
    first = provider.publish(link, post)
    second = provider.publish(link, post)
    assert first.external_id == second.external_id
    assert fake.published_texts().count("exactly once") == 1


def test_revoked_tokens_need_reauth_afterwards(provider, link, fake):
    assert provider.can_revoke(link)
    assert not fake.revoked_tokens()
    provider.revoke(link)
    assert fake.revoked_tokens()
    with pytest.raises(ProviderNeedsReauth):
        provider.check_connection(link)


def test_not_offered_in_production_without_a_platform():
    production = SandboxProvider(ProviderContext(development=False))
    assert not production.is_configured()
    with pytest.raises(ProviderUnavailable):
        production.connect_with_fields({})


def _scripted_sandbox(
    monkeypatch, answer: dict[str, object], api_url: str = "https://sb.example/api"
):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=answer)

    provider = SandboxProvider(ProviderContext(settings=ProviderSettings({"api_url": api_url})))
    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(
        provider, "_client", lambda: httpx.Client(transport=transport, base_url=provider.api_url)
    )
    return provider, requests


ISSUED = {"access_token": "a", "refresh_token": "r", "expires_in": 60, "token_type": "Bearer"}


def test_overlong_account_id_is_refused_not_truncated(monkeypatch):
    provider, _ = _scripted_sandbox(
        monkeypatch, {**ISSUED, "account_id": "acct_" + "x" * 400, "name": "n"}
    )
    with pytest.raises(ProviderRejected):
        provider.connect_with_fields({"account_name": "n"})


def test_long_name_is_shortened_and_long_url_dropped(monkeypatch):
    provider, _ = _scripted_sandbox(
        monkeypatch,
        {**ISSUED, "account_id": "acct_1", "name": "n" * 4000},
        api_url="https://sb.example/" + "p" * 1000 + "/api",
    )
    account = provider.connect_with_fields({"account_name": "n"}).account
    assert account.external_id == "acct_1"
    assert len(account.display_name) <= 300
    assert account.url is None


def test_a_very_long_account_name_connects(provider):
    account = provider.connect_with_fields({"account_name": "x" * 4000}).account
    assert len(account.display_name) <= 300
