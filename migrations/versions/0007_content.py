"""Content: items and their versions, publications, public upload links.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "content_items",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("excerpt", sa.String(length=1000), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("hashtags", sa.Text(), nullable=False),
        sa.Column("media_ids", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("overrides", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("approved_version", sa.Integer(), nullable=True),
        sa.Column("approved_by", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("updated_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_content_items_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_items")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_content_items_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_content_items_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "content_versions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["content_items.id"],
            name=op.f("fk_content_versions_content_id_content_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_versions")),
        sa.UniqueConstraint(
            "content_id", "version", name=op.f("uq_content_versions_content_id_version")
        ),
    )
    with op.batch_alter_table("content_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_content_versions_content_id"), ["content_id"], unique=False
        )

    op.create_table(
        "publications",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", _WHEN, nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_attempt_at", _WHEN, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", _WHEN, nullable=True),
        sa.Column("lease_until", _WHEN, nullable=True),
        sa.Column("reconcile_attempts", sa.Integer(), nullable=False),
        sa.Column("remote_id", sa.String(length=500), nullable=True),
        sa.Column("remote_url", sa.String(length=1000), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("published_at", _WHEN, nullable=True),
        sa.Column("deleted_at", _WHEN, nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_publications_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["content_items.id"],
            name=op.f("fk_publications_content_id_content_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_publications_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_publications_idempotency_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("publications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_publications_connection_claimed", ["connection_id", "claimed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_publications_content_id"), ["content_id"], unique=False
        )
        batch_op.create_index("ix_publications_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_publications_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "upload_links",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("allowed_kinds", sa.String(length=40), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["content_items.id"],
            name=op.f("fk_upload_links_content_id_content_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_upload_links_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_upload_links_token_hash")),
    )
    with op.batch_alter_table("upload_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_links_content_id"), ["content_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_upload_links_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "upload_submissions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("link_id", sa.BigInteger(), nullable=False),
        sa.Column("media_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitter_name", sa.String(length=200), nullable=True),
        sa.Column("reviewed_by", sa.BigInteger(), nullable=True),
        sa.Column("reviewed_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["upload_links.id"],
            name=op.f("fk_upload_submissions_link_id_upload_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media.id"],
            name=op.f("fk_upload_submissions_media_id_media"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_upload_submissions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_submissions")),
    )
    with op.batch_alter_table("upload_submissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_submissions_link_id"), ["link_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_upload_submissions_media_id"), ["media_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_upload_submissions_workspace_id"), ["workspace_id"], unique=False
        )

    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("publish_claims", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("media") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="ready")
        )
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(
            sa.Column("require_approval", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("require_approval")
    with op.batch_alter_table("media") as batch:
        batch.drop_column("status")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("publish_claims")
    for table in ("upload_submissions", "upload_links", "publications", "content_versions"):
        op.drop_table(table)
    op.drop_table("content_items")
