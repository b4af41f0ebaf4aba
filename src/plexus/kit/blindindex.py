"""Keyed blind indexes: look up and deduplicate encrypted values without decrypting them.

An encrypted column cannot be searched, so next to it sits ``HMAC-SHA256(k, value)`` of the
normalised value, where ``k`` is derived with HKDF from the index key
(``PLEXUS_INDEX_KEY``) and a purpose label ("email"). Equal values give equal indexes, which
is what a lookup and a unique constraint need; without the key the index says nothing, and
a guess cannot be checked offline.

The index key is a secret of its own and must never change: every stored index was made
with it, so a new one would make every address unfindable (and let a second account be
made for one). It depends neither on the master key (rotated by ``plexus keys rotate``) nor
on the token key (changed to end every session), so both can be replaced freely.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO_PREFIX: Final = b"plexus blind index v1:"


class BlindIndex:
    def __init__(self, index_key: bytes) -> None:
        if len(index_key) < 16:  # noqa: PLR2004 - same floor as the token hasher
            msg = "the index key is too short"
            raise ValueError(msg)
        self._root = index_key
        self._keys: dict[str, bytes] = {}

    def _key(self, purpose: str) -> bytes:
        key = self._keys.get(purpose)
        if key is None:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=_INFO_PREFIX + purpose.encode("ascii"),
            ).derive(self._root)
            self._keys[purpose] = key
        return key

    def digest(self, purpose: str, value: str) -> str:
        """The index of ``value`` (already normalised by the caller), 64 hex digits."""
        return hmac.new(self._key(purpose), value.encode("utf-8"), hashlib.sha256).hexdigest()
