"""Alembic environment: runs against the connection Plexus hands it (see plexus.schema)."""

from __future__ import annotations

from alembic import context

import plexus.models  # noqa: F401 - registers every table on the metadata
from plexus.models.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    msg = "run migrations through `plexus migrate`, which supplies the connection"
    raise RuntimeError(msg)

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
