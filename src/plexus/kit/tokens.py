"""Random tokens and keyed hashes: how every unguessable value is made and stored.

Every token has at least 128 bits from the operating system's CSPRNG; the database keeps
only an HMAC-SHA256 of it under the server's token key, so a database dump yields nothing
that can be presented back. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

BASE62_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random string carrying ``nbytes`` bytes of entropy (at least 16)."""
    if nbytes < 16:  # noqa: PLR2004 - 128 bits is the floor (ASVS V7.2.3)
        msg = "tokens carry at least 128 bits"
        raise ValueError(msg)
    return secrets.token_urlsafe(nbytes)


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62_ALPHABET) for _ in range(length))


def base62(number: int, width: int = 0) -> str:
    """``number`` in base 62, left-padded with ``0`` to ``width`` characters."""
    if number < 0:
        msg = "base62 encodes non-negative integers"
        raise ValueError(msg)
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(max(width, 1), "0")


class TokenHasher:
    """HMAC-SHA256 under the server's token key, with a purpose label per kind of token.

    The label keeps a session id from ever matching as, say, an API key.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:  # noqa: PLR2004
            msg = "the token key is too short"
            raise ValueError(msg)
        self._key = key

    def digest(self, purpose: str, value: str) -> str:
        message = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def matches(self, purpose: str, value: str, expected: str) -> bool:
        return hmac.compare_digest(self.digest(purpose, value), expected)
