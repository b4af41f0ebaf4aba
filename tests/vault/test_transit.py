"""The HashiCorp Vault transit key provider against a fake Vault on 127.0.0.1: data keys
are wrapped by the transit key (Plexus never holds it), rotation makes a new key version
and re-wraps every data key, and the old version can then be disabled."""

from __future__ import annotations

import base64
import time

import pytest
import time_machine
from fastapi.testclient import TestClient

from plexus.app import create_app
from plexus.config import load_settings
from plexus.kit.keyproviders import decode_master_key, master_key_id
from plexus.runtime import init_runtime

from auth_helpers import PASSWORD, create_user, login
from conftest import TEST_SECRETS, run_cli
from transit_fake import FakeTransit
from vault_helpers import access_headers, enrol_totp, login_with_totp, serve_app, transit_env

TOKEN = "hvs.test-vault-token-" + "v" * 24
EMAIL = "transit@example.com"


@pytest.fixture
def clock():
    with time_machine.travel(time.time(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def fake_vault():
    fake = FakeTransit(TOKEN)
    fake.create_key("plexus")
    with serve_app(fake.app) as address:
        fake.address = address
        yield fake


@pytest.fixture
def env_vars(env_vars, fake_vault, request):
    if "local_first" in request.fixturenames:
        return env_vars
    return transit_env(env_vars, fake_vault.address, TOKEN)


@pytest.fixture
def local_first():
    """Requested by tests that start with local master keys and move to transit."""


def _status_lines(env) -> list[str]:
    result = run_cli(["keys", "status"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.strip() for line in result.stdout.splitlines()]


def test_v13_3_1_transit_wraps_data_keys_and_never_sees_a_secret(
    client, runtime, fake_vault, clock
):
    create_user(runtime, EMAIL)
    secret = enrol_totp(client, access_headers(login(client, EMAIL, PASSWORD)))
    clock.shift(30)
    signed_in = access_headers(login_with_totp(client, EMAIL, PASSWORD, secret))
    assert client.get("/api/v1/me", headers=signed_in).json()["email"] == EMAIL
    encrypts = fake_vault.calls_to("encrypt")
    assert encrypts, "every seal wraps its data key with the transit key"
    for call in encrypts:
        assert len(base64.b64decode(call.body["plaintext"])) == 32  # a data key, nothing else
    sent = repr([c.body for c in fake_vault.calls])
    assert EMAIL not in sent
    assert secret not in sent
    assert runtime.secretbox.current_key_id() == "vault-transit:transit/plexus:v1"


def test_v13_3_4_transit_rotation_rewraps_and_the_old_version_can_be_disabled(
    client, runtime, fake_vault, env_vars, clock
):
    create_user(runtime, EMAIL)
    secret = enrol_totp(client, access_headers(login(client, EMAIL, PASSWORD)))
    lines = _status_lines(env_vars)
    assert "vault-transit:transit/plexus:v1 (current): 4" in lines  # e-mail, TOTP, key, canary

    rotated = run_cli(["keys", "rotate"], env_vars)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "new key version: vault-transit:transit/plexus:v2" in rotated.stdout
    assert "re-wrapped 4 value(s) under vault-transit:transit/plexus:v2" in rotated.stdout
    assert fake_vault.keys["plexus"].latest == 2
    assert len(fake_vault.calls_to("rewrap")) == 4
    lines = _status_lines(env_vars)
    assert "vault-transit:transit/plexus:v2 (current): 4" in lines
    assert "not under the current key: 0" in lines

    # Version 1 may no longer decrypt: every secret still opens (with a fresh process, so
    # no data key is served from the cache).
    fake_vault.keys["plexus"].min_decryption_version = 2
    rt = init_runtime(load_settings(environ=env_vars))
    try:
        with TestClient(create_app(rt.settings, rt)) as fresh:
            clock.shift(30)
            headers = access_headers(login_with_totp(fresh, EMAIL, PASSWORD, secret))
            assert fresh.get("/api/v1/me", headers=headers).json()["email"] == EMAIL
    finally:
        rt.dispose()
    assert run_cli(["keys", "status"], env_vars).returncode == 0


def test_moving_from_local_master_keys_to_transit(
    local_first, client, runtime, env_vars, fake_vault, clock
):
    create_user(runtime, EMAIL)
    secret = enrol_totp(client, access_headers(login(client, EMAIL, PASSWORD)))
    local_id = master_key_id(decode_master_key(TEST_SECRETS["PLEXUS_MASTER_KEY"]))
    assert f"{local_id} (current): 4" in _status_lines(env_vars)

    transit = transit_env(env_vars, fake_vault.address, TOKEN)
    result = run_cli(["keys", "rotate", "--no-new-key"], transit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-wrapped 4 value(s) under vault-transit:transit/plexus:v1" in result.stdout
    assert "vault-transit:transit/plexus:v1 (current): 4" in _status_lines(transit)

    # The local master key is no longer needed: with another one set, everything opens.
    without_local = {**transit, "PLEXUS_MASTER_KEY": "anotherMasterKey" + "A" * 27 + "="}
    rt = init_runtime(load_settings(environ=without_local))
    try:
        with TestClient(create_app(rt.settings, rt)) as fresh:
            clock.shift(30)
            headers = access_headers(login_with_totp(fresh, EMAIL, PASSWORD, secret))
            assert fresh.get("/api/v1/me", headers=headers).json()["email"] == EMAIL
    finally:
        rt.dispose()


def test_a_refused_vault_token_stops_startup(env_vars, fake_vault):
    bad = {**env_vars, "PLEXUS_VAULT_TOKEN": "hvs.not-the-token-" + "x" * 20}
    result = run_cli(["keys", "status"], bad)
    assert result.returncode == 2
    assert "the key service failed" in result.stderr
    assert "permission denied" in result.stderr
    assert "hvs.not-the-token" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_transit_settings_are_checked(env_vars):
    missing = {k: v for k, v in env_vars.items() if k != "PLEXUS_VAULT_TOKEN"}
    result = run_cli(["keys", "status"], missing)
    assert result.returncode == 2
    assert "PLEXUS_VAULT_TOKEN" in result.stderr


def test_v11_3_3_a_key_id_relabelled_to_the_latest_version_is_refused(fake_vault):
    """The envelope's key id must name the version its transit ciphertext was made with: a
    value relabelled as current would otherwise be skipped by rotation and counted as done."""
    from plexus.kit.keyproviders import TransitKeyProvider
    from plexus.kit.secretbox import SealedValueError
    from plexus.kit.vault import Envelope, Vault

    provider = TransitKeyProvider.connect(
        address=fake_vault.address, token=TOKEN, key_name="plexus"
    )
    vault = Vault(provider)
    context = "connections:credentials:7"
    sealed = vault.seal(b"refresh-token", context)
    provider.rotate()
    envelope = Envelope.decode(sealed)
    assert envelope.key_id.endswith(":v1")
    relabelled = Envelope(
        provider.current_key_id(), envelope.wrapped, envelope.nonce, envelope.ciphertext
    ).encode()
    for attempt in (
        lambda: vault.key_id_of(relabelled),
        lambda: vault.open(relabelled, context),
        lambda: vault.rewrap(relabelled, context),
    ):
        with pytest.raises(SealedValueError, match=r"labelled .*:v2 but .* version 1"):
            attempt()
    assert vault.open(sealed, context) == b"refresh-token"  # the genuine one still opens
    assert vault.key_id_of(vault.rewrap(sealed, context)).endswith(":v2")


def test_rotate_reports_a_key_service_failure_mid_batch_in_one_line(
    client, runtime, fake_vault, env_vars
):
    create_user(runtime, EMAIL)
    assert run_cli(["keys", "status"], env_vars).returncode == 0
    fake_vault.outage_after["rewrap"] = 1
    result = run_cli(["keys", "rotate", "--batch-size", "1"], env_vars)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "plexus: the key service failed: HashiCorp Vault failed re-wrapping a data key" in (
        result.stderr
    )
    assert TOKEN not in output
    fake_vault.outage_after.clear()
    again = run_cli(["keys", "rotate", "--no-new-key"], env_vars)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "not under the current key: 0" in _status_lines(env_vars)
