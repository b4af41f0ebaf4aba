"""Platform connections, OAuth flows, per-instance OAuth clients and notifications.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = sa.DateTime(timezone=True)


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"],
        ["workspaces.id"],
        name=op.f(f"fk_{table}_workspace_id_workspaces"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("registration_key", sa.String(length=300), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=300), nullable=False),
        sa.Column("client_secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_clients")),
        sa.UniqueConstraint(
            "provider",
            "registration_key",
            "redirect_uri",
            name=op.f("uq_oauth_clients_provider_registration_key_redirect_uri"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "connections",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=300), nullable=False),
        sa.Column("display_name", sa.String(length=300), nullable=False),
        sa.Column("account_url", sa.String(length=1000), nullable=True),
        sa.Column("account_settings", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("credentials_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("credentials_version", sa.Integer(), nullable=False),
        sa.Column("oauth_client_id", _ID, nullable=True),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.Column("can_refresh", sa.Boolean(), nullable=False),
        sa.Column("refresh_due_at", _WHEN, nullable=True),
        sa.Column("last_refreshed_at", _WHEN, nullable=True),
        sa.Column("last_checked_at", _WHEN, nullable=True),
        sa.Column("rate_limited_until", _WHEN, nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_by", _ID, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        _workspace_fk("connections"),
        sa.ForeignKeyConstraint(
            ["oauth_client_id"],
            ["oauth_clients.id"],
            name=op.f("fk_connections_oauth_client_id_oauth_clients"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.UniqueConstraint(
            "workspace_id",
            "provider",
            "external_id",
            name=op.f("uq_connections_workspace_id_provider_external_id"),
        ),
        # Never reuse a deleted connection's id (a job or refresh in flight carries it).
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_connections_workspace_id"), "connections", ["workspace_id"], unique=False
    )
    op.create_index(
        "ix_connections_refresh_due", "connections", ["status", "refresh_due_at"], unique=False
    )
    op.create_table(
        "oauth_flows",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", _ID, nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        sa.Column("oauth_client_id", _ID, nullable=True),
        sa.Column("flow_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("used_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        _workspace_fk("oauth_flows"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_flows")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_flows_state_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_oauth_flows_workspace_id"), "oauth_flows", ["workspace_id"], unique=False
    )
    op.create_table(
        "notifications",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=1000), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("read_at", _WHEN, nullable=True),
        _workspace_fk("notifications"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_notifications_workspace_id"), "notifications", ["workspace_id"], unique=False
    )
    op.create_index(
        "ix_notifications_user_unread", "notifications", ["user_id", "read_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_user_unread", table_name="notifications")
    op.drop_index(op.f("ix_notifications_workspace_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index(op.f("ix_oauth_flows_workspace_id"), table_name="oauth_flows")
    op.drop_table("oauth_flows")
    op.drop_index("ix_connections_refresh_due", table_name="connections")
    op.drop_index(op.f("ix_connections_workspace_id"), table_name="connections")
    op.drop_table("connections")
    op.drop_table("oauth_clients")
