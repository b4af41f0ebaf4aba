"""Sealing secrets at rest (TOTP seeds, JWT signing keys) behind one small interface.

``SecretBox.seal(plaintext, context)`` returns bytes that only ``open`` with the same
context gives back; the context (table, column and row) is authenticated, so a sealed
value copied to another row or column does not open. Today the box is AES-256-GCM under a
key derived from ``PLEXUS_MASTER_KEY``; the vault (envelope encryption with per-record
data keys and rotation, R9) replaces the implementation behind the same two methods.
"""

from __future__ import annotations

import os
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12


class SealedValueError(Exception):
    """A sealed value is corrupt, was moved to another context, or needs another key."""


class SecretBox(Protocol):
    def seal(self, plaintext: bytes, context: str) -> bytes: ...

    def open(self, sealed: bytes, context: str) -> bytes: ...


class AesGcmSecretBox:
    """AES-256-GCM with a random 96-bit nonce per value and the context as associated data."""

    def __init__(self, master_key: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"plexus secretbox v1"
        ).derive(master_key)
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise SealedValueError("not a sealed value of this version")
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], context.encode())
        except InvalidTag:
            raise SealedValueError("the sealed value does not open in this context") from None
