"""R9, R22: ``plexus keys rotate`` re-wraps every sealed secret under a new master key while
the service runs, ``plexus keys status`` counts them, and afterwards the old key can be
removed with every secret still opening (sign-in with TOTP included). Run as real CLI
processes."""

from __future__ import annotations

import base64
import time

import pytest
import time_machine
from sqlalchemy import select, update

from plexus.audit.events import AuditEventType
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.kit.keyproviders import decode_master_key, master_key_id
from plexus.kit.secretbox import AesGcmSecretBox
from plexus.models.audit import AuditEvent
from plexus.models.identity import SigningKey, User
from plexus.runtime import init_runtime
from plexus.vault.repository import SealedColumnRepository
from plexus.vault_columns import SIGNING_KEY, TOTP_SECRET, USER_EMAIL

from auth_helpers import PASSWORD, create_user, login
from conftest import TEST_SECRETS, run_cli
from vault_helpers import access_headers, enrol_totp, login_with_totp

OLD_KEY = TEST_SECRETS["PLEXUS_MASTER_KEY"]
OWNER = "owner@example.com"
LEGACY_USER = "legacy@example.com"


@pytest.fixture
def clock():
    with time_machine.travel(time.time(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def new_key(env_vars) -> str:
    result = run_cli(["keys", "generate-master"], env_vars)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert len(base64.b64decode(key)) == 32
    assert key != OLD_KEY
    return key


def _status(env) -> dict[str, str]:
    result = run_cli(["keys", "status"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    by_key = lines[lines.index("sealed values by key:") + 1 :]
    counts = {}
    for line in by_key:
        if ": " not in line or line.startswith(("legacy values", "not under", "run ")):
            continue
        key, _, count = line.rpartition(": ")
        counts[key.removesuffix(" (current)")] = count
    counts["legacy remaining"] = next(
        line.rpartition(": ")[2] for line in lines if line.startswith("legacy values remaining")
    )
    counts["not current"] = next(
        line.rpartition(": ")[2] for line in lines if line.startswith("not under the current")
    )
    counts["current"] = next(line.split(": ", 1)[1] for line in lines if line.startswith("current"))
    return counts


def _make_legacy(runtime, user_id: int) -> None:
    """Seal this user's TOTP secret and the JWT signing key as Plexus did before the vault."""
    legacy = AesGcmSecretBox(OLD_KEY.encode())
    with unit_of_work(runtime.sessions) as session:
        user = session.get(User, user_id)
        plain = runtime.secretbox.open(user.totp_secret, TOTP_SECRET.context(user_id))
        user.totp_secret = legacy.seal(plain, TOTP_SECRET.context(user_id))
        for key in session.scalars(select(SigningKey)):
            der = runtime.secretbox.open(key.private_key, SIGNING_KEY.context(key.kid))
            key.private_key = legacy.seal(der, SIGNING_KEY.context(key.kid))
    runtime.keyring.forget()


@pytest.fixture
def world(client, runtime, clock):
    """Two users with TOTP on (one of them, and the signing key, sealed the pre-vault way),
    and a pending invitation; all under the test master key."""
    _, workspace = create_user(runtime, OWNER)
    legacy_id, _ = create_user(runtime, LEGACY_USER, workspace_id=workspace)
    headers = access_headers(login(client, OWNER, PASSWORD))
    owner_secret = enrol_totp(client, headers)
    legacy_secret = enrol_totp(client, access_headers(login(client, LEGACY_USER, PASSWORD)))
    _make_legacy(runtime, legacy_id)
    clock.shift(30)
    headers = access_headers(login_with_totp(client, OWNER, PASSWORD, owner_secret))
    invited = client.post(
        "/api/v1/invitations", json={"email": "new@example.com", "role": "viewer"}, headers=headers
    )
    assert invited.status_code == 201, invited.text
    return {"workspace": workspace, OWNER: owner_secret, LEGACY_USER: legacy_secret}


def test_v13_3_4_rotate_rewraps_everything_and_the_old_key_can_go(
    world, env_vars, new_key, clock, runtime
):
    old_id = master_key_id(decode_master_key(OLD_KEY))
    new_id = master_key_id(decode_master_key(new_key))
    # users' e-mails (2) + owner TOTP + invitation e-mail + canary, and 2 legacy values.
    before = _status(env_vars)
    assert before["current"] == old_id
    assert before[old_id] == "5"
    assert before["legacy"] == "2"
    assert before["legacy remaining"] == "2"

    rotating = {**env_vars, "PLEXUS_MASTER_KEY": new_key, "PLEXUS_MASTER_KEY_PREVIOUS": OLD_KEY}
    # Until `keys rotate` adopts the new key, nothing else starts with it.
    refused = run_cli(["keys", "status"], rotating)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"the canary is sealed under {old_id}, not the current key {new_id}" in refused.stderr

    result = run_cli(["keys", "rotate", "--batch-size", "2"], rotating)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"the vault canary is now sealed under {new_id}" in result.stdout
    assert f"re-wrapped 7 value(s) under {new_id}" in result.stdout
    assert OLD_KEY not in result.stdout + result.stderr
    assert new_key not in result.stdout + result.stderr

    after = _status(rotating)
    assert after == {
        new_id: "7",
        "legacy remaining": "0",
        "not current": "0",
        "current": new_id,
    }
    again = run_cli(["keys", "rotate"], rotating)
    assert again.returncode == 0
    assert "re-wrapped 0 value(s)" in again.stdout

    # The old key is removed from the environment: everything still opens.
    only_new = {**env_vars, "PLEXUS_MASTER_KEY": new_key}
    assert _status(only_new)[new_id] == "7"
    rt = init_runtime(load_settings(environ=only_new))
    try:
        from fastapi.testclient import TestClient

        from plexus.app import create_app

        with TestClient(create_app(rt.settings, rt)) as fresh:
            clock.shift(30)
            for email in (OWNER, LEGACY_USER):
                signed_in = login_with_totp(fresh, email, PASSWORD, world[email])
                headers = access_headers(signed_in)
                assert fresh.get("/api/v1/me", headers=headers).json()["email"] == email
            listed = fresh.get("/api/v1/invitations", headers=headers).json()
            assert [i["email"] for i in listed] == ["new@example.com"]
            members = fresh.get(f"/api/v1/workspaces/{world['workspace']}/members", headers=headers)
            assert sorted(m["email"] for m in members.json()) == [LEGACY_USER, OWNER]
    finally:
        rt.dispose()

    # And the old key alone no longer opens this database: it is refused at startup.
    stale = run_cli(["keys", "status"], env_vars)
    assert stale.returncode == 2
    assert "the master key cannot decrypt this database's secrets" in stale.stderr

    with runtime.sessions() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventType.SYSTEM_VAULT_KEY_ROTATED)
        ).all()
    assert [e.actor_id for e in events] == ["cli", "cli"]


def test_rotation_never_overwrites_a_value_written_meanwhile(runtime, client):
    """The re-wrapped value is written only where the row still holds what was read."""
    user_id, _ = create_user(runtime, "racer@example.com")
    with runtime.sessions() as session:
        repo = SealedColumnRepository(session, USER_EMAIL)
        key, read = repo.batch(None, 10)[0]
        rewrapped = runtime.secretbox.rewrap(read, USER_EMAIL.context(key))
        # The application changes the address between the rotation's read and its write.
        written = runtime.secretbox.seal(b"changed@example.com", USER_EMAIL.context(user_id))
        session.execute(update(User).where(User.id == user_id).values(email_sealed=written))
        assert repo.replace(key, read, rewrapped) is False
        assert repo.replace(key, written, rewrapped) is True
        session.rollback()
    assert key == user_id


def test_status_and_rotate_need_the_current_schema(env_vars, tmp_path):
    fresh = {**env_vars, "PLEXUS_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    for command in (["keys", "status"], ["keys", "rotate"]):
        result = run_cli(command, fresh)
        assert result.returncode == 1
        assert "plexus migrate" in result.stderr


# Values written meanwhile, unreadable values, and the key service's round trips ----------


def _rotating_vault(env_vars):
    from plexus.vault.service import build_vault

    key = run_cli(["keys", "generate-master"], env_vars).stdout.strip()
    env = {**env_vars, "PLEXUS_MASTER_KEY": key, "PLEXUS_MASTER_KEY_PREVIOUS": OLD_KEY}
    return env, build_vault(load_settings(environ=env))


def _stale_write(runtime, user_id: int) -> None:
    """A process not restarted yet (the old key current) seals the user's address anew."""
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(
                email_sealed=runtime.secretbox.seal(b"a@example.com", USER_EMAIL.context(user_id))
            )
        )


def test_v13_3_4_a_row_rewritten_meanwhile_under_the_old_key_is_read_again_and_rewrapped(
    env_vars, runtime, monkeypatch
):
    from plexus.vault import service as vault

    user_id, _ = create_user(runtime, "a@example.com")
    _env, rotating = _rotating_vault(env_vars)
    real_rewrap = rotating.rewrap
    stale_writes: list[int] = []

    def rewrap_while_the_old_process_writes(sealed, context=None):
        if not stale_writes:  # between the rotation's read and its write
            stale_writes.append(user_id)
            _stale_write(runtime, user_id)
        return real_rewrap(sealed, context)

    monkeypatch.setattr(rotating, "rewrap", rewrap_while_the_old_process_writes)
    result = vault.rotate_batch(
        lambda: unit_of_work(runtime.sessions), rotating, USER_EMAIL, after=None
    )
    monkeypatch.undo()
    assert result.failed == []
    assert result.changed_meanwhile == 1
    assert result.rewrapped == 1
    assert result.unsettled == []
    with unit_of_work(runtime.sessions) as session:
        status = vault.vault_status(session, rotating)
    assert status.not_current == sum(n for k, n in status.by_key.items() if k != status.current_key)
    column = next(c for c in status.columns if c.name == USER_EMAIL.name)
    assert column.by_key == {rotating.current_key_id(): 1}


def test_v13_3_4_rotate_exits_1_while_a_process_keeps_sealing_under_the_old_key(
    env_vars, runtime, monkeypatch
):
    """The last pass finds the value still under the old key: exit 1, saying what to do."""
    from typer.testing import CliRunner

    from plexus.cli import app

    user_id, _ = create_user(runtime, "a@example.com")
    env, _vault = _rotating_vault(env_vars)
    assert run_cli(["keys", "status"], env_vars).returncode == 0  # the canary
    real_replace = SealedColumnRepository.replace

    def stale_writer_wins(self, key, old, new):
        if self.sealed is USER_EMAIL:  # the old process writes just before every attempt
            written = runtime.secretbox.seal(b"a@example.com", USER_EMAIL.context(key))
            self.session.execute(update(User).where(User.id == key).values(email_sealed=written))
        return real_replace(self, key, old, new)

    monkeypatch.setattr(SealedColumnRepository, "replace", stale_writer_wins)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["keys", "rotate"])
    assert result.exit_code == 1, result.output
    assert f"users.email_sealed[{user_id}] kept changing" in result.output
    assert (
        "1 sealed value(s) are still not under "
        f"{master_key_id(decode_master_key(env['PLEXUS_MASTER_KEY']))}: a process still runs "
        "with the old key: restart it with the new configuration and run `plexus keys rotate` "
        "again"
    ) in result.output


def test_status_counts_an_unreadable_value_as_not_current_and_rotate_fails(env_vars, runtime):
    user_id, _ = create_user(runtime, "a@example.com")
    assert run_cli(["keys", "status"], env_vars).returncode == 0  # the canary
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(User).where(User.id == user_id).values(email_sealed=b"\x02\x00garbage")
        )
    status = run_cli(["keys", "status"], env_vars)
    assert "unreadable=1" in status.stdout
    assert "not under the current key: 1" in status.stdout
    rotated = run_cli(["keys", "rotate"], env_vars)
    assert rotated.returncode == 1, rotated.stdout + rotated.stderr
    assert f"could not re-wrap users.email_sealed[{user_id}]" in rotated.stderr
    assert "1 sealed value(s) cannot be read with the configured keys" in rotated.stderr


def test_a_rotation_batch_holds_no_transaction_during_key_service_calls(env_vars, runtime):
    """A key service answers in tens of milliseconds per value: no connection (so no SQLite
    write lock) is held meanwhile, and the application's writes go through at once."""
    from plexus.kit.keyproviders import LocalKeyProvider
    from plexus.kit.vault import Vault
    from plexus.vault import service as vault

    ids = [create_user(runtime, f"u{i}@example.com")[0] for i in range(3)]
    checked_out: list[int] = []
    app_writes: list[float] = []

    class Watching(LocalKeyProvider):
        def rewrap(self, key_id, wrapped):
            checked_out.append(runtime.engine.pool.checkedout())
            started = time.monotonic()
            with unit_of_work(runtime.sessions) as session:  # the application, meanwhile
                session.execute(update(User).where(User.id == ids[0]).values(display_name="x"))
            app_writes.append(time.monotonic() - started)
            return super().rewrap(key_id, wrapped)

    env, _ = _rotating_vault(env_vars)
    new = decode_master_key(env["PLEXUS_MASTER_KEY"])
    watched = Vault(Watching(new, [decode_master_key(OLD_KEY)]))
    result = vault.rotate_batch(
        lambda: unit_of_work(runtime.sessions), watched, USER_EMAIL, after=None
    )
    assert result.rewrapped == 3
    assert checked_out == [0, 0, 0]
    assert max(app_writes) < 1.0
