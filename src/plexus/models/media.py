"""Media a workspace uploaded: one row per distinct (cleaned) file in the workspace.

The bytes live in the media storage under their SHA-256 (``plexus.media.storage``); the
row holds what was learnt checking them. Two workspaces uploading the same file share the
stored bytes but not the row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from plexus.models.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")

MAX_FILENAME_CHARS = 200
MAX_ALT_TEXT_CHARS = 1500


class Media(Base):
    """One image or video of a workspace."""

    __tablename__ = "media"
    __table_args__ = (
        UniqueConstraint("workspace_id", "sha256"),
        # Ids are never reused: a post referencing deleted media must not find another.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    #: Hex SHA-256 of the stored (cleaned) bytes: also their storage key.
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    #: "image" or "video".
    kind: Mapped[str] = mapped_column(String(8))
    #: Decided from the bytes, never from the client.
    content_type: Mapped[str] = mapped_column(String(40))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    #: The name the client gave, sanitised; shown only, never used to store or serve.
    original_filename: Mapped[str | None] = mapped_column(String(MAX_FILENAME_CHARS))
    alt_text: Mapped[str | None] = mapped_column(String(MAX_ALT_TEXT_CHARS))
    #: "ready", or "pending_review" while it waits for an editor (public upload links).
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
