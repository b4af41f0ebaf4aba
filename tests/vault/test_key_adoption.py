"""V13.3.1, V13.3.4: a process starts only when the vault canary is sealed under its *current*
key. A host given a new master key (the old one as previous) refuses to start until
``plexus keys rotate`` adopts that key; the first host to rotate wins, and a host with a
different new key is then refused as having the wrong key. Run as real CLI processes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.kit.keyproviders import decode_master_key, generate_master_key, master_key_id
from plexus.models.identity import VaultCanary
from plexus.vault.repository import CanaryRepository
from plexus.vault.service import (
    CanaryNotCurrent,
    MasterKeyMismatch,
    build_vault,
    check_canary,
)

from auth_helpers import create_user
from conftest import TEST_SECRETS, run_cli
from server_helpers import free_port, serving_on

OLD_KEY = TEST_SECRETS["PLEXUS_MASTER_KEY"]
MISMATCH = "the master key cannot decrypt this database's secrets: PLEXUS_MASTER_KEY is wrong"


def _kid(key: str) -> str:
    return master_key_id(decode_master_key(key))


def _host(env_vars: dict[str, str]) -> tuple[dict[str, str], str]:
    """A host's environment with a new current key and the old one as previous."""
    key = generate_master_key()
    return {**env_vars, "PLEXUS_MASTER_KEY": key, "PLEXUS_MASTER_KEY_PREVIOUS": OLD_KEY}, key


def _canary_key(runtime) -> str:
    with runtime.sessions() as session:
        sealed = session.scalars(select(VaultCanary.sealed)).one()
    return runtime.secretbox.key_id_of(sealed)


def _refused(result, message: str, *secrets: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in result.stderr
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output


def test_v13_3_1_a_new_current_key_starts_nothing_until_keys_rotate_adopts_it(
    env_vars, runtime, tmp_path
):
    create_user(runtime, "someone@example.com")
    assert run_cli(["keys", "status"], env_vars).returncode == 0  # the canary, under OLD
    host, key = _host(env_vars)
    stale = (
        f"the canary is sealed under {_kid(OLD_KEY)}, not the current key {_kid(key)}: "
        "run `plexus keys rotate` with the new key as PLEXUS_MASTER_KEY and the old one in "
        "PLEXUS_MASTER_KEY_PREVIOUS before starting services"
    )
    serve = run_cli(["serve", "--port", str(free_port()), "--worker-threads", "0"], host)
    _refused(serve, stale, key, OLD_KEY)
    _refused(run_cli(["worker", "--threads", "1"], host), stale, key, OLD_KEY)
    for command in (["keys", "status"], ["audit", "verify"], ["migrate"]):
        _refused(run_cli(command, host), stale, key, OLD_KEY)
    assert _canary_key(runtime) == _kid(OLD_KEY)

    rotated = run_cli(["keys", "rotate"], host)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert f"the vault canary is now sealed under {_kid(key)}" in rotated.stdout
    assert _canary_key(runtime) == _kid(key)
    # The normal rotation flow: once rotated, the service starts with the new key ...
    with serving_on(free_port(), host, tmp_path) as url:
        assert url
    # ... and also once the old key is gone from the configuration.
    assert run_cli(["keys", "status"], {**env_vars, "PLEXUS_MASTER_KEY": key}).returncode == 0


def test_v13_3_1_two_hosts_with_different_new_keys_the_first_to_rotate_wins(env_vars, runtime):
    assert run_cli(["keys", "status"], env_vars).returncode == 0
    host_a, key_a = _host(env_vars)
    host_b, key_b = _host(env_vars)
    assert run_cli(["keys", "rotate"], host_a).returncode == 0
    # Host B's keys (its own new one, and the old one) no longer open the canary: it is
    # the wrong key now, for services and for `keys rotate` alike.
    for command in (["keys", "status"], ["keys", "rotate"], ["worker", "--threads", "1"]):
        _refused(run_cli(command, host_b), MISMATCH, key_b, OLD_KEY)
    assert _canary_key(runtime) == _kid(key_a)
    assert run_cli(["keys", "status"], host_a).returncode == 0
    # A wrong key is refused as before.
    wrong = {**env_vars, "PLEXUS_MASTER_KEY": generate_master_key()}
    _refused(run_cli(["keys", "status"], wrong), MISMATCH, wrong["PLEXUS_MASTER_KEY"])


def test_adopting_the_canary_is_conditional_so_only_one_new_key_wins(
    env_vars, runtime, monkeypatch
):
    """Two `keys rotate` at once: the second one's conditional write finds the canary moved,
    reads it again, and is refused because it cannot open what the first one sealed."""
    with unit_of_work(runtime.sessions) as session:
        assert check_canary(session, runtime.secretbox) == "created"
    with runtime.sessions() as session:
        old_sealed = session.scalars(select(VaultCanary.sealed)).one()
    host_a, _ = _host(env_vars)
    host_b, _ = _host(env_vars)
    vault_a = build_vault(load_settings(environ=host_a))
    vault_b = build_vault(load_settings(environ=host_b))
    with unit_of_work(runtime.sessions) as session:
        assert check_canary(session, vault_a, adopt=True) == "adopted"

    # B read the canary before A's write landed: its first read still sees the old one.
    real_get = CanaryRepository.get
    reads: list[int] = []

    def stale_first_read(self, canary_id):
        reads.append(canary_id)
        if len(reads) == 1:
            return VaultCanary(id=canary_id, sealed=old_sealed)
        return real_get(self, canary_id)

    monkeypatch.setattr(CanaryRepository, "get", stale_first_read)
    with unit_of_work(runtime.sessions) as session, pytest.raises(MasterKeyMismatch) as caught:
        check_canary(session, vault_b, adopt=True)
    assert not isinstance(caught.value, CanaryNotCurrent)
    assert len(reads) == 2
    monkeypatch.undo()
    with unit_of_work(runtime.sessions) as session:
        assert check_canary(session, vault_a) == "verified"


def test_a_first_start_under_an_unadopted_key_seals_no_canary(env_vars, runtime):
    """Secrets exist but no canary yet: a start whose current key is not the secrets' key
    must not seal a canary that would bless it."""
    create_user(runtime, "first@example.com")
    host, key = _host(env_vars)
    result = run_cli(["keys", "status"], host)
    _refused(result, f"not the current key {_kid(key)}", key)
    with runtime.sessions() as session:
        assert session.scalars(select(VaultCanary)).all() == []
    assert run_cli(["keys", "rotate"], host).returncode == 0
    assert _canary_key(runtime) == _kid(key)
