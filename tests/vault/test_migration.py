"""Migration 0004 on a database that already has accounts: plaintext e-mail addresses are
sealed with a blind index and the plaintext columns dropped; the pre-vault TOTP secret still
opens and is moved into the vault by ``plexus keys rotate``; a wrong key stops the
migration and changes nothing. Run through ``plexus migrate`` on SQLite or PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from plexus.app import create_app
from plexus.auth.passwords import PasswordHasher
from plexus.config import load_settings
from plexus.kit.keyproviders import generate_master_key
from plexus.kit.secretbox import AesGcmSecretBox
from plexus.kit.tokens import TokenHasher
from plexus.runtime import init_runtime
from plexus.schema import current_revision, upgrade

from auth_helpers import PASSWORD
from conftest import BACKEND, PG_ADMIN_URL, TEST_SECRETS, require_service, run_cli
from vault_helpers import access_headers, database_blobs, login_with_totp

EMAIL = "pioneer@example.com"
INVITED = "newcomer@example.org"
SECRET = pyotp.random_base32(32)


@pytest.fixture
def clock():
    with time_machine.travel(time.time(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def old_database(tmp_path):
    """A database at revision 0003 (before the vault), private to this test."""
    if BACKEND == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        name = f"plexus_m_{uuid.uuid4().hex[:16]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0003")
    yield url, engine
    engine.dispose()
    if BACKEND == "postgres":
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _fill(engine, env) -> None:
    """Rows as Plexus wrote them before the vault: plaintext addresses, a TOTP secret sealed
    by the old secret box under HKDF of the master key setting."""
    now = datetime.now(UTC)
    hasher = PasswordHasher(env["PLEXUS_PASSWORD_PEPPER"].encode(), 4)
    tokens = TokenHasher(env["PLEXUS_TOKEN_KEY"].encode())
    box = AesGcmSecretBox(env["PLEXUS_MASTER_KEY"].encode())
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workspaces (id, name, mfa_policy, created_at)"
                " VALUES (1, 'Old', 'none', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO users (id, email, display_name, password_hash, password_changed_at,"
                " is_active, is_instance_admin, token_epoch, failed_logins, totp_secret,"
                " totp_confirmed_at, created_at) VALUES (1, :email, 'Pioneer', :hash, :t,"
                " true, false, 0, 0, :totp, :t, :t)"
            ),
            {
                "email": EMAIL,
                "hash": hasher.hash(PASSWORD),
                "t": now,
                "totp": box.seal(SECRET.encode(), "users:1:totp_secret"),
            },
        )
        conn.execute(
            text(
                "INSERT INTO memberships (id, workspace_id, user_id, role, created_at)"
                " VALUES (1, 1, 1, 'owner', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO invitations (id, workspace_id, email, role, token_hash, invited_by,"
                " created_at, expires_at) VALUES (1, 1, :email, 'viewer', :hash, 1, :t, :e)"
            ),
            {
                "email": INVITED,
                "hash": tokens.digest("invitation", "tok"),
                "t": now,
                "e": now + timedelta(days=3),
            },
        )
        if engine.dialect.name == "postgresql":
            for table in ("workspaces", "users", "memberships", "invitations"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1)"))


def test_migrate_seals_existing_addresses_and_keeps_every_account_working(
    old_database, env_vars, clock
):
    url, engine = old_database
    env = {**env_vars, "PLEXUS_DATABASE_URL": url}
    _fill(engine, env)

    result = run_cli(["migrate"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert current_revision(engine) is not None
    assert "0003" not in (current_revision(engine) or "")
    columns = {c["name"] for c in inspect(engine).get_columns("users")}
    assert "email" not in columns
    assert {"email_sealed", "email_index"} <= columns
    assert "email" not in {c["name"] for c in inspect(engine).get_columns("invitations")}
    # At rest: once no connection is open, SQLite has checkpointed its write-ahead log.
    engine.dispose()
    for blob in database_blobs(engine, url):
        for needle in (EMAIL.encode(), INVITED.encode(), SECRET.encode()):
            assert needle not in blob
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM vault_canary")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM memberships")).scalar() == 1

    status = run_cli(["keys", "status"], env)
    assert status.returncode == 0, status.stderr
    assert "legacy values remaining: 1" in status.stdout  # the TOTP secret
    rotated = run_cli(["keys", "rotate"], env)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "legacy values remaining: 0" in run_cli(["keys", "status"], env).stdout

    rt = init_runtime(load_settings(environ=env))
    try:
        with TestClient(create_app(rt.settings, rt)) as client:
            headers = access_headers(login_with_totp(client, EMAIL.upper(), PASSWORD, SECRET))
            assert client.get("/api/v1/me", headers=headers).json()["email"] == EMAIL
            listed = client.get("/api/v1/invitations", headers=headers).json()
            assert [i["email"] for i in listed] == [INVITED]
            again = client.post(
                "/api/v1/invitations", json={"email": INVITED, "role": "viewer"}, headers=headers
            )
            assert again.status_code == 409  # found through the blind index
    finally:
        rt.dispose()


def test_migrate_with_a_wrong_master_key_changes_nothing(old_database, env_vars):
    url, engine = old_database
    env = {**env_vars, "PLEXUS_DATABASE_URL": url}
    _fill(engine, env)
    wrong = {**env, "PLEXUS_MASTER_KEY": generate_master_key()}
    result = run_cli(["migrate"], wrong)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the master key cannot decrypt this database's secrets" in result.stderr
    assert "Traceback" not in result.stderr
    assert current_revision(engine) == "0003"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT email FROM users")).scalar() == EMAIL
        assert conn.execute(text("SELECT count(*) FROM memberships")).scalar() == 1
    assert TEST_SECRETS["PLEXUS_MASTER_KEY"] not in result.stderr


def test_an_empty_database_needs_no_keys_to_migrate(old_database):
    _, engine = old_database
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM vault_canary")).scalar() == 0


@pytest.mark.skipif(BACKEND == "postgres", reason="SQLite's write-ahead log")
def test_v14_2_4_no_plaintext_stays_in_the_main_file_while_another_connection_is_open(
    old_database, env_vars
):
    """The zeroed pages reach the main file (checkpointed) even while another process keeps
    the database open, and the keys come from the settings given, not the environment."""
    import sqlite3
    from pathlib import Path

    from plexus.db import build_engine

    url, engine = old_database
    env = {**env_vars, "PLEXUS_DATABASE_URL": url}
    _fill(engine, env)
    engine.dispose()
    path = Path(url.removeprefix("sqlite:///"))
    other = sqlite3.connect(path)  # the old server, a backup agent, an sqlite3 shell
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("SELECT 1 FROM users").fetchall()
    migrating = build_engine(load_settings(environ=env))
    try:
        upgrade(migrating, settings=load_settings(environ=env))
    finally:
        migrating.dispose()
    main = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    try:
        assert EMAIL.encode() not in main
        assert INVITED.encode() not in main
        assert not wal.exists() or wal.stat().st_size == 0
        assert "email_sealed" in [row[1] for row in other.execute("PRAGMA table_info(users)")]
    finally:
        other.close()


def test_migrate_reports_an_unreachable_key_service_in_one_line(old_database, env_vars):
    from server_helpers import free_port

    url, engine = old_database
    env = {**env_vars, "PLEXUS_DATABASE_URL": url}
    _fill(engine, env)
    transit = {
        **env,
        "PLEXUS_KEY_PROVIDER": "vault-transit",
        "PLEXUS_VAULT_ADDR": f"http://127.0.0.1:{free_port()}",
        "PLEXUS_VAULT_TOKEN": "hvs.unused-" + "u" * 20,
    }
    result = run_cli(["migrate"], transit)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "plexus: the key service failed during the migration (nothing was changed)" in output
    assert current_revision(engine) == "0003"
