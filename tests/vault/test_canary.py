"""The vault canary: sealed at first start, opened at every start; a wrong or replaced master
key stops ``plexus serve``, ``plexus worker`` and the CLI with a clear message and exit 2,
before anything is served or sealed under that key."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from plexus.config import load_settings
from plexus.kit.keyproviders import generate_master_key
from plexus.kit.vault import ENVELOPE_VERSION
from plexus.models.identity import VaultCanary
from plexus.vault.service import CANARY_PLAINTEXT

from auth_helpers import create_user
from conftest import run_cli
from server_helpers import free_port

MESSAGE = "the master key cannot decrypt this database's secrets: PLEXUS_MASTER_KEY is wrong"


def canaries(runtime) -> list[VaultCanary]:
    with runtime.sessions() as session:
        return list(session.scalars(select(VaultCanary)))


@pytest.fixture
def wrong_key_env(env_vars) -> dict[str, str]:
    return {**env_vars, "PLEXUS_MASTER_KEY": generate_master_key()}


def test_first_start_seals_the_canary_once(env_vars, runtime):
    assert canaries(runtime) == []
    first = run_cli(["keys", "status"], env_vars)
    assert first.returncode == 0, first.stderr
    stored = canaries(runtime)
    assert len(stored) == 1
    assert stored[0].sealed[0] == ENVELOPE_VERSION
    assert CANARY_PLAINTEXT not in stored[0].sealed
    assert run_cli(["keys", "status"], env_vars).returncode == 0
    again = canaries(runtime)
    assert [c.sealed for c in again] == [stored[0].sealed]


def _assert_refused(result, wrong_key: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert MESSAGE in result.stderr
    assert "Traceback" not in output
    assert wrong_key not in output


def test_v13_3_1_wrong_master_key_stops_serve_worker_and_cli(
    env_vars, wrong_key_env, runtime, tmp_path
):
    assert run_cli(["keys", "status"], env_vars).returncode == 0  # first start: canary
    wrong = wrong_key_env["PLEXUS_MASTER_KEY"]
    serve = run_cli(["serve", "--port", str(free_port()), "--worker-threads", "0"], wrong_key_env)
    _assert_refused(serve, wrong)
    _assert_refused(run_cli(["worker", "--threads", "1"], wrong_key_env), wrong)
    for command in (["keys", "status"], ["keys", "rotate"], ["audit", "verify"], ["migrate"]):
        _assert_refused(run_cli(command, wrong_key_env), wrong)
    # The right key still starts everything.
    assert run_cli(["keys", "status"], env_vars).returncode == 0


def test_wrong_key_on_first_start_with_secrets_seals_no_canary(wrong_key_env, runtime):
    """Secrets written before any CLI or server start (as these tests' users are) must open
    before a canary is sealed: a first start under a wrong key does not bless it."""
    create_user(runtime, "someone@example.com")
    result = run_cli(["keys", "status"], wrong_key_env)
    _assert_refused(result, wrong_key_env["PLEXUS_MASTER_KEY"])
    assert canaries(runtime) == []


def test_a_malformed_master_key_is_a_configuration_error(env_vars):
    for value in ("short", "test-master-key-" + "m" * 40):
        result = run_cli(["keys", "status"], {**env_vars, "PLEXUS_MASTER_KEY": value})
        assert result.returncode == 2
        assert "PLEXUS_MASTER_KEY is invalid" in result.stderr
        assert "32 random bytes, base64" in result.stderr
        assert value not in result.stdout + result.stderr


def test_previous_keys_must_be_long_enough(env_vars):
    result = run_cli(["keys", "status"], {**env_vars, "PLEXUS_MASTER_KEY_PREVIOUS": "tiny"})
    assert result.returncode == 2
    assert "PLEXUS_MASTER_KEY_PREVIOUS is invalid" in result.stderr
    assert "tiny" not in result.stderr


def test_generate_master_prints_a_new_usable_key(env_vars, runtime):
    keys = {run_cli(["keys", "generate-master"], env_vars).stdout.strip() for _ in range(2)}
    assert len(keys) == 2
    for key in keys:
        settings = load_settings(environ={**env_vars, "PLEXUS_MASTER_KEY": key})
        assert settings.secret("master_key") == key
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(VaultCanary)) == 0
