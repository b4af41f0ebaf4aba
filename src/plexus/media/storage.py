"""Where media bytes live, behind a small interface keyed by the SHA-256 of the bytes.

``LocalStorage`` keeps them under ``<data_dir>/media/<aa>/<sha256>``: generated names
only (never a client's), outside every folder the application serves. Uploads are
written first to ``<data_dir>/media/tmp/`` (same file system, so storing is a rename).
``plexus.media.s3.S3Storage`` keeps them in an S3-compatible bucket instead; its uploads
are checked in the same local temporary folder.

A storage that cannot be reached raises ``MediaStorageUnavailable``, an OSError like the
ones a failing disk raises, so callers handle every storage the same way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from plexus.config import Settings

KEY_SHAPE: Final = re.compile(r"[0-9a-f]{64}")
TEMP_FOLDER: Final = "tmp"


class MediaStorageUnavailable(OSError):
    """The storage did not answer, or refused (never raised for a key that is absent)."""


class MediaStorage(Protocol):
    """Content-addressed storage of media bytes; ``key`` is a hex SHA-256."""

    @property
    def temp_dir(self) -> Path:
        """A local folder for uploads while they are checked (created on demand, 0700)."""

    def put(self, key: str, source: Path) -> None:
        """Store the file at ``source`` under ``key`` (consuming it); idempotent."""

    def open(self, key: str) -> BinaryIO:
        """The stored bytes, for reading; raises FileNotFoundError when absent."""

    def delete(self, key: str) -> None:
        """Remove the bytes under ``key``; nothing happens when they are absent."""

    def exists(self, key: str) -> bool:
        """Whether bytes are stored under ``key``."""


def checked_key(key: str) -> str:
    """``key`` itself; ValueError unless it is a lower-case hex SHA-256."""
    if not KEY_SHAPE.fullmatch(key):
        msg = "a media storage key is a lower-case hex SHA-256"
        raise ValueError(msg)
    return key


def temp_folder(media_root: Path) -> Path:
    """``<media_root>/tmp``, created 0700 when it is missing."""
    folder = media_root / TEMP_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


class LocalStorage:
    """Media in a local folder (a single machine, or a shared volume)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalStorage:
        return cls(settings.data_dir / "media")

    @property
    def temp_dir(self) -> Path:
        """Where uploads are written while they are checked (created on demand, 0700)."""
        return temp_folder(self.root)

    def path_of(self, key: str) -> Path:
        key = checked_key(key)
        return self.root / key[:2] / key

    def put(self, key: str, source: Path) -> None:
        target = self.path_of(key)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        source.chmod(0o600)
        # A rename within one file system is atomic: a reader sees all the bytes or none,
        # and storing the same content twice leaves the same file.
        source.replace(target)

    def open(self, key: str) -> BinaryIO:
        return self.path_of(key).open("rb")

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()
