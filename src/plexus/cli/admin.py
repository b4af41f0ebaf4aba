"""``plexus create-admin`` and the development first-run administrator.

There are no default accounts (ASVS V6.3.2): an instance's first owner is created by
someone with access to the server, with a password they choose that passes the policy.
Only on a development machine does ``plexus serve`` make one itself, with a random
password it writes once to ``<data_dir>/first-admin.txt`` (mode 0600) and prints once.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from pathlib import Path
from typing import Annotated, Final

import typer

from plexus import schema
from plexus.accounts.service import (
    DEV_ADMIN_EMAIL,
    EmailTaken,
    any_user_exists,
    create_user,
    email_of,
)
from plexus.audit.events import Actor
from plexus.cli.common import fail, runtime_or_exit
from plexus.config import Environment
from plexus.db import unit_of_work
from plexus.errors import ValidationFailed
from plexus.kit.logging import get_logger
from plexus.kit.tokens import random_token
from plexus.models.base import utcnow
from plexus.runtime import Runtime
from plexus.workspaces.service import create_workspace

FIRST_ADMIN_FILE: Final = "first-admin.txt"
DEV_ADMIN_NAME: Final = "Development admin"
DEV_WORKSPACE: Final = "Development"
#: 24 random bytes: a 32-character password with 192 bits of entropy.
DEV_PASSWORD_BYTES: Final = 24
_PASSWORD_ATTEMPTS: Final = 5

log = get_logger("plexus.admin")


def _report(error: ValidationFailed) -> None:
    errors = error.extra.get("errors") or []
    if not errors:
        sys.stderr.write(f"plexus: {error.detail}\n")
    for item in errors:
        sys.stderr.write(f"plexus: {item.get('field', 'input')}: {item.get('message')}\n")


def _password_from_file(path: Path) -> str:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise fail(f"cannot read the password file {path}") from None
    # Only the line break an editor or `echo` adds is dropped: spaces are part of a password.
    password = raw.removesuffix("\n").removesuffix("\r")
    if not password:
        raise fail("the password file is empty")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        sys.stderr.write(
            f"plexus: warning: {path} is readable by other users; delete it once done\n"
        )
    return password


def _password_from_tty() -> str:
    if not sys.stdin.isatty():
        raise fail(
            "no terminal to ask for the password on: run this in a terminal, or pass "
            "--password-file FILE",
            code=2,
        )
    first = getpass.getpass("Password for the new administrator: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise fail("the two passwords differ")
    if not first:
        raise fail("the password is empty")
    return first


def create_admin(
    email: Annotated[str, typer.Option(help="The administrator's e-mail address (sign-in).")],
    workspace: Annotated[str, typer.Option(help="Name of the workspace to create.")],
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the password from this file (first line). Without it, the password "
            "is asked twice on the terminal.",
            exists=False,
            dir_okay=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Display name (default: the part before the @).")
    ] = None,
) -> None:
    """Create an instance administrator and their workspace, which they own.

    The password policy applies. Refuses an address that already has an account. Exit
    code 0 on success, 1 when refused, 2 for a configuration or usage problem.
    """
    rt = runtime_or_exit()
    if not schema.is_current(rt.engine):
        raise fail("the database schema is not at the latest migration: run `plexus migrate`")
    password = _password_from_file(password_file) if password_file else _password_from_tty()
    display_name = name if name is not None else email.strip().partition("@")[0]
    actor = Actor.system("cli")
    try:
        with unit_of_work(rt.sessions) as session:
            user = create_user(
                session,
                rt,
                email=email,
                display_name=display_name,
                password=password,
                instance_admin=True,
                actor=actor,
            )
            created = create_workspace(session, rt, name=workspace, owner=user, actor=actor)
    except EmailTaken:
        raise fail("an account with this e-mail address already exists") from None
    except ValidationFailed as error:
        _report(error)
        raise typer.Exit(1) from None
    typer.echo(
        f"created instance administrator {email_of(rt, user)} (user {user.id}), "
        f"owner of workspace {created.name!r} (id {created.id})"
    )


def _write_private(path: Path, body: str) -> None:
    """Write ``body`` to ``path`` readable by its owner only (never through a symlink)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(body)


def first_run_admin(rt: Runtime) -> Path | None:
    """In development only, when the database has no user at all: create an instance
    administrator ``admin@plexus.local`` with a random password, write it once to
    ``<data_dir>/first-admin.txt`` (0600) and print it once. Returns the file's path when
    it did. Never in test or production, where ``plexus create-admin`` is the only way.
    """
    if rt.settings.env is not Environment.DEVELOPMENT:
        return None
    path = rt.settings.data_dir / FIRST_ADMIN_FILE
    actor = Actor.system("serve")
    with unit_of_work(rt.sessions) as session:
        if any_user_exists(session):
            return None
        for _ in range(_PASSWORD_ATTEMPTS):
            password = random_token(DEV_PASSWORD_BYTES)
            try:
                user = create_user(
                    session,
                    rt,
                    email=DEV_ADMIN_EMAIL,
                    display_name=DEV_ADMIN_NAME,
                    password=password,
                    instance_admin=True,
                    actor=actor,
                )
            except ValidationFailed:
                # A random password can, very rarely, contain a word the policy refuses.
                continue
            break
        else:
            msg = "could not generate a password the policy accepts"
            raise RuntimeError(msg)
        create_workspace(session, rt, name=DEV_WORKSPACE, owner=user, actor=actor)
        # Written before the commit: if the file cannot be written, nothing is created and
        # the next start tries again; the password exists nowhere else.
        _write_private(
            path,
            "# Plexus development administrator (development only; change or remove it).\n"
            f"# Created {utcnow().isoformat(timespec='seconds')}. This file is written once.\n"
            f"email={DEV_ADMIN_EMAIL}\npassword={password}\n",
        )
    log.info("first_run_admin_created", email=DEV_ADMIN_EMAIL, file=str(path))
    sys.stderr.write(
        "\n"
        "  Plexus created a development administrator (this is shown only once):\n"
        f"    e-mail:   {DEV_ADMIN_EMAIL}\n"
        f"    password: {password}\n"
        f"  It is also in {path.resolve()} (mode 0600).\n"
        "\n"
    )
    return path
