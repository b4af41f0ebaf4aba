"""Password hashing (R3): bcrypt over a peppered HMAC, so every byte of a password counts.

bcrypt reads at most 72 bytes (and pyca ``bcrypt`` 5 refuses longer input), so the
password is first reduced to HMAC-SHA256 under the server's pepper and base64-encoded
(44 bytes), as OWASP's password storage cheat sheet describes. Two passwords that share
their first 72 bytes therefore hash differently (ASVS V6.2.8), and a stolen database alone
cannot be attacked without the pepper.

Before that, the password is brought to Unicode normal form NFKC (NIST SP 800-63B,
5.1.1.2), so the same password typed on keyboards that compose accents differently
("é" as one code point or as "e" plus a combining accent) is the same password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from typing import Final

import bcrypt

_PREFIXES: Final = ("$2b$", "$2a$", "$2y$")
#: The variant bcrypt writes today; hashes of the older variants are rewritten at login.
_CURRENT_PREFIX: Final = "$2b$"


class PasswordHasher:
    """Hashes and verifies passwords; one instance per process, built from the settings."""

    def __init__(self, pepper: bytes, rounds: int) -> None:
        self._pepper = pepper
        self.rounds = rounds
        # Verified against when the account does not exist, so that path costs the same.
        self._dummy = self.hash("plexus-dummy-password-for-timing")

    def _prehash(self, password: str) -> bytes:
        normalized = unicodedata.normalize("NFKC", password)
        digest = hmac.new(self._pepper, normalized.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return base64.b64encode(digest.digest())

    def hash(self, password: str) -> str:
        """A new ``$2b$<rounds>$`` hash of ``password`` with a fresh salt."""
        return bcrypt.hashpw(self._prehash(password), bcrypt.gensalt(self.rounds)).decode()

    def verify(self, password: str, stored: str | None) -> bool:
        """Check ``password`` against ``stored``; with no stored hash, spend the same time."""
        if not stored or not stored.startswith(_PREFIXES):
            bcrypt.checkpw(self._prehash(password), self._dummy.encode())
            return False
        try:
            return bcrypt.checkpw(self._prehash(password), stored.encode())
        except ValueError:
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made at a lower cost than the configured one (or by an
        older bcrypt variant): the caller rehashes the password it has just verified.
        """
        try:
            cost = int(stored.split("$")[2])
        except (IndexError, ValueError):
            return True
        return cost < self.rounds or not stored.startswith(_CURRENT_PREFIX)
