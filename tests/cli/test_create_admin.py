"""``plexus create-admin`` and the development first-run administrator (ASVS V6.3.2: no
default accounts; V6.2.x: the password policy applies), run as real processes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

from plexus.accounts.service import email_index
from plexus.audit.events import AuditEventType
from plexus.cli.admin import first_run_admin
from plexus.models.audit import AuditEvent
from plexus.models.identity import Membership, User, Workspace

from conftest import PLEXUS_CMD, run_cli, subprocess_env
from server_helpers import free_port, serving

STRONG = "violet harbour engine tundra 58"
EMAIL = "root@example.com"


def login(client, email: str, password: str):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def count_users(runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(sql_select(func.count()).select_from(User)) or 0)


def stored_user(runtime, email: str) -> User | None:
    with runtime.sessions() as session:
        user = session.scalars(
            sql_select(User).where(User.email_index == email_index(runtime, email))
        ).one_or_none()
        if user is not None:
            session.expunge(user)
        return user


def owned_workspaces(runtime, user_id: int) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        rows = session.execute(
            sql_select(Workspace.name, Membership.role)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user_id)
        ).all()
        return [(name, role) for name, role in rows]


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-password"
    path.write_text(STRONG + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def create_admin(env_vars, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["create-admin", "--email", EMAIL, "--workspace", "Ops", *args], env_vars)


# create-admin -------------------------------------------------------------------------------


def test_create_admin_with_a_password_file(env_vars, password_file, runtime, client):
    result = create_admin(env_vars, "--password-file", str(password_file), "--name", "Root")
    assert result.returncode == 0, result.stderr
    assert EMAIL in result.stdout
    assert STRONG not in result.stdout + result.stderr
    user = stored_user(runtime, EMAIL)
    assert user is not None
    assert user.is_instance_admin is True
    assert user.display_name == "Root"
    assert owned_workspaces(runtime, user.id) == [("Ops", "owner")]

    response = login(client, EMAIL, STRONG)
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["role"] == "owner"
    assert "instance:security" in me["permissions"]

    with runtime.sessions() as session:
        events = session.scalars(sql_select(AuditEvent).order_by(AuditEvent.id)).all()
        created = [e for e in events if e.event == AuditEventType.USER_ACCOUNT_CREATED]
        assert [(e.actor_type, e.actor_id) for e in created] == [("system", "cli")]
        assert any(e.event == AuditEventType.WORKSPACE_WORKSPACE_CREATED for e in events)


def test_create_admin_refuses_an_existing_address(env_vars, password_file, runtime):
    assert create_admin(env_vars, "--password-file", str(password_file)).returncode == 0
    again = run_cli(
        [
            "create-admin",
            "--email",
            "ROOT@example.com",
            "--workspace",
            "Other",
            "--password-file",
            str(password_file),
        ],
        env_vars,
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert count_users(runtime) == 1


@pytest.mark.parametrize(
    ("password", "reason"),
    [("password123456", "common"), ("short9", "12"), ("root@example.com is mine", "")],
)
def test_create_admin_refuses_a_weak_password(env_vars, tmp_path, runtime, password, reason):
    path = tmp_path / "weak"
    path.write_text(password + "\n", encoding="utf-8")
    result = create_admin(env_vars, "--password-file", str(path))
    assert result.returncode == 1
    assert "plexus: password:" in result.stderr
    assert reason in result.stderr
    assert password not in result.stderr
    assert count_users(runtime) == 0


def test_create_admin_refuses_without_a_terminal_or_file(env_vars, runtime):
    """With no --password-file and no TTY there is nobody to ask: refuse (exit 2)."""
    result = subprocess.run(
        [*PLEXUS_CMD, "create-admin", "--email", EMAIL, "--workspace", "Ops"],
        env=subprocess_env(env_vars),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--password-file" in result.stderr
    assert count_users(runtime) == 0


def test_create_admin_refuses_an_invalid_address_or_name(env_vars, password_file, runtime):
    args = ["create-admin", "--email", "nope", "--workspace", "Ops"]
    bad_email = run_cli([*args, "--password-file", str(password_file)], env_vars)
    assert bad_email.returncode == 1
    assert "plexus: email:" in bad_email.stderr
    bad_name = create_admin(env_vars, "--password-file", str(password_file), "--name", "a\x07b")
    assert bad_name.returncode == 1
    assert count_users(runtime) == 0


def _drive_tty(args: list[str], env: dict[str, str], answers: list[str]) -> tuple[int, str]:
    """Run ``plexus ARGS`` on a pseudo-terminal, typing each answer after a prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes plexus, with the pty as its controlling terminal
        os.execve(sys.executable, [sys.executable, "-m", "plexus", *args], env)  # noqa: S606
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            # getpass turns echo off before it writes its prompt: answer each prompt once.
            prompts = output.lower().count(b"password") - output.lower().count(b"passwords")
            answered = len(answers) - len(pending)
            if pending and prompts > answered and output.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_create_admin_asks_twice_on_a_terminal(env_vars, runtime, client):
    args = ["create-admin", "--email", EMAIL, "--workspace", "Ops"]
    env = subprocess_env(env_vars)
    code, output = _drive_tty(args, env, [STRONG, STRONG + "x"])
    assert code == 1, output
    assert "differ" in output
    assert count_users(runtime) == 0

    code, output = _drive_tty(args, env, [STRONG, STRONG])
    assert code == 0, output
    assert output.count("assword") == 2
    assert STRONG not in output  # never echoed
    assert login(client, EMAIL, STRONG).status_code == 200


# The development first-run administrator --------------------------------------------------


def _serve_once(env: dict[str, str], cwd: Path) -> str:
    """Start ``plexus serve``, wait until it answers, stop it; return its stderr."""
    port = free_port()
    with serving(["--port", str(port), "--worker-threads", "0"], env, cwd) as server:
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz", timeout=30)
    return server.stderr()


def test_development_first_run_creates_one_admin_once(env_vars, runtime, client, tmp_path):
    """V6.3.2: a random password, in a 0600 file and on the console once; never again.
    The account signs in with it."""
    env = {**env_vars, "PLEXUS_ENV": "development"}
    data_dir = Path(env["PLEXUS_DATA_DIR"])
    secret_file = data_dir / "first-admin.txt"

    console = _serve_once(env, tmp_path)
    assert secret_file.is_file()
    assert secret_file.stat().st_mode & 0o777 == 0o600
    content = secret_file.read_text()
    lines = dict(line.split("=", 1) for line in content.splitlines() if "=" in line)
    assert lines["email"] == "admin@plexus.local"
    password = lines["password"]
    assert len(password) >= 32
    assert password in console
    assert str(secret_file.resolve()) in console

    user = stored_user(runtime, "admin@plexus.local")
    assert user is not None
    assert user.is_instance_admin is True
    assert runtime.passwords.verify(password, user.password_hash)
    assert owned_workspaces(runtime, user.id) == [("Development", "owner")]
    signed_in = client.post(
        "/api/v1/auth/login", json={"email": "admin@plexus.local", "password": password}
    )
    assert signed_in.status_code == 200, signed_in.text

    console = _serve_once(env, tmp_path)
    assert secret_file.read_text() == content
    assert password not in console
    assert "first-admin" not in console
    assert count_users(runtime) == 1


def test_no_first_run_admin_outside_development(env_vars, runtime, tmp_path):
    """In test (and production) serve creates no account; create-admin is the only way."""
    console = _serve_once(env_vars, tmp_path)
    assert "admin@plexus.local" not in console
    assert not (Path(env_vars["PLEXUS_DATA_DIR"]) / "first-admin.txt").exists()
    assert count_users(runtime) == 0
    assert first_run_admin(runtime) is None
    assert count_users(runtime) == 0
