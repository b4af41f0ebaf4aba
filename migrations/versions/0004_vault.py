"""The vault: e-mail addresses sealed with a blind index, and the vault canary.

``users.email`` and ``invitations.email`` become ``email_sealed`` (the address sealed by the
vault, associated data ``<table>:email:<id>``) and ``email_index`` (a keyed HMAC of the
address; unique for users), and the plaintext columns are dropped. Existing rows are
converted here, which needs the instance's keys: they are read from the settings
``schema.upgrade`` is given (``PLEXUS_MASTER_KEY``, ``PLEXUS_INDEX_KEY``, ...) only
when there are rows to convert, so a new, empty database needs none. When rows are
converted the canary is sealed too, under the key that sealed them; on an empty database
the first start seals it. On SQLite the pages freed by dropping the plaintext are zeroed
(and ``schema.upgrade`` checkpoints the write-ahead log, so they reach the main file); on
PostgreSQL the old row versions stay in the table files until ``VACUUM FULL users,
invitations`` (docs/operations.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from plexus.kit.blindindex import BlindIndex
    from plexus.kit.vault import Vault

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLES = ("users", "invitations")
_EMAIL_PURPOSE = "email"


def _table(name: str, *columns: str) -> sa.TableClause:
    binary = {"email_sealed", "sealed", "totp_secret", "private_key"}
    return sa.table(
        name, *(sa.column(c, sa.LargeBinary if c in binary else sa.String) for c in columns)
    )


def _keys() -> tuple[Vault, BlindIndex]:
    """The vault and the blind index (PLEXUS_INDEX_KEY) of the running process's settings."""
    from plexus.config import get_settings
    from plexus.vault.service import build_blind_index, build_vault

    config = op.get_context().config
    # ``schema.upgrade(settings=...)`` passes them; only a bare `alembic upgrade` reads them
    # from the environment.
    settings = config.attributes.get("settings") if config is not None else None
    if settings is None:
        settings = get_settings()
    return build_vault(settings), build_blind_index(settings)


def _check_existing_secrets(connection: sa.Connection, vault: Vault) -> None:
    """Refuse to seal anything under a key that does not open the secrets already stored."""
    from plexus.kit.secretbox import SealedValueError
    from plexus.vault.service import MISMATCH_MESSAGE, MasterKeyMismatch
    from plexus.vault_columns import SIGNING_KEY, TOTP_SECRET

    for sealed in (TOTP_SECRET, SIGNING_KEY):
        table = _table(sealed.table, sealed.key, sealed.column)
        row = connection.execute(
            sa.select(table.c[sealed.key], table.c[sealed.column])
            .where(table.c[sealed.column].is_not(None))
            .limit(1)
        ).first()
        if row is None:
            continue
        try:
            vault.open(bytes(row[1]), sealed.context(row[0]))
        except SealedValueError:
            raise MasterKeyMismatch(MISMATCH_MESSAGE) from None


def _seal_existing(connection: sa.Connection) -> None:
    from plexus.vault.service import CANARY_ID, CANARY_PLAINTEXT
    from plexus.vault_columns import CANARY, INVITATION_EMAIL, USER_EMAIL

    rows: dict[str, list[Any]] = {}
    for name in _TABLES:
        table = _table(name, "id", "email")
        rows[name] = list(connection.execute(sa.select(table.c.id, table.c.email)).all())
    if not any(rows.values()):
        return
    vault, index = _keys()
    _check_existing_secrets(connection, vault)
    for name, sealed in (("users", USER_EMAIL), ("invitations", INVITATION_EMAIL)):
        table = _table(name, "id", "email_sealed", "email_index")
        for row_id, email in rows[name]:
            connection.execute(
                sa.update(table)
                .where(table.c.id == row_id)
                .values(
                    email_sealed=vault.seal(email.encode("utf-8"), sealed.context(row_id)),
                    email_index=index.digest(_EMAIL_PURPOSE, email),
                )
            )
    canary = sa.table(
        "vault_canary",
        sa.column("id", sa.Integer),
        sa.column("sealed", sa.LargeBinary),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    connection.execute(
        sa.insert(canary).values(
            id=CANARY_ID,
            sealed=vault.seal(CANARY_PLAINTEXT, CANARY.context(CANARY_ID)),
            created_at=datetime.now(UTC),
        )
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The plaintext addresses are about to be deleted: have SQLite overwrite the pages
        # it frees with zeros, so no copy of the database file still holds them.
        op.execute("PRAGMA secure_delete=ON")
    op.create_table(
        "vault_canary",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_canary")),
    )
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("email_sealed", sa.LargeBinary(), nullable=True))
            batch.add_column(sa.Column("email_index", sa.String(length=64), nullable=True))
    _seal_existing(op.get_bind())
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_email"), type_="unique")
        batch.drop_column("email")
        batch.alter_column("email_sealed", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("email_index", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint(op.f("uq_users_email_index"), ["email_index"])
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("email")
        batch.alter_column("email_sealed", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("email_index", existing_type=sa.String(length=64), nullable=False)
        batch.create_index(op.f("ix_invitations_email_index"), ["email_index"], unique=False)


def _open_existing(connection: sa.Connection) -> None:
    from plexus.vault_columns import INVITATION_EMAIL, USER_EMAIL

    rows: dict[str, list[Any]] = {}
    for name in _TABLES:
        table = _table(name, "id", "email_sealed")
        rows[name] = list(connection.execute(sa.select(table.c.id, table.c.email_sealed)).all())
    if not any(rows.values()):
        return
    vault, _ = _keys()
    for name, sealed in (("users", USER_EMAIL), ("invitations", INVITATION_EMAIL)):
        table = _table(name, "id", "email")
        for row_id, value in rows[name]:
            email = vault.open(bytes(value), sealed.context(row_id)).decode("utf-8")
            connection.execute(sa.update(table).where(table.c.id == row_id).values(email=email))


def downgrade() -> None:
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
    _open_existing(op.get_bind())
    with op.batch_alter_table("invitations") as batch:
        batch.drop_index(op.f("ix_invitations_email_index"))
        batch.drop_column("email_index")
        batch.drop_column("email_sealed")
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=False)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_email_index"), type_="unique")
        batch.drop_column("email_index")
        batch.drop_column("email_sealed")
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=False)
        batch.create_unique_constraint(op.f("uq_users_email"), ["email"])
    op.drop_table("vault_canary")
