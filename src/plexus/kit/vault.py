"""Envelope encryption (R9): a fresh data key per secret, wrapped by a key-encryption key.

``Vault`` is the ``SecretBox`` the runtime hands out. Each ``seal`` draws a new 256-bit
data key, encrypts the plaintext with it (AES-256-GCM, the caller's context string as
associated data) and has the key provider wrap the data key under the current
key-encryption key (KEK). The result is one self-describing byte string, stored inline in
the column it belongs to::

    0x02 | len(key id): 1 byte | key id (ASCII) | len(wrapped): 2 bytes, big-endian
         | wrapped data key | nonce: 12 bytes | ciphertext and 16-byte GCM tag

The associated data is the version byte, a zero byte and the context (``table:column:row``
or, for older callers, ``table:row:column``), so a value copied to another row or column
does not open. The key id is not part of it: ``rewrap`` moves a value to another KEK by
re-wrapping only its data key, without ever decrypting the secret itself.

Values sealed before the vault existed (version byte 0x01, see ``AesGcmSecretBox``) still
open through the ``legacy`` boxes; ``rewrap`` with their context turns them into
envelopes, which is how ``plexus keys rotate`` moves them in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from plexus.kit.secretbox import SealedValueError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from plexus.kit.secretbox import SecretBox

ENVELOPE_VERSION: Final = 0x02
LEGACY_VERSION: Final = 0x01
#: What ``key_id_of`` answers for a value sealed before the vault: no KEK wraps it.
LEGACY_KEY_ID: Final = "legacy"
DATA_KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
MAX_KEY_ID_BYTES: Final = 255
MAX_WRAPPED_BYTES: Final = 65_535


class KeyUnavailable(SealedValueError):
    """No configured key provider holds the key that wrapped this value's data key."""


class KeyServiceError(Exception):
    """The key service (HashiCorp Vault) could not be reached or refused the request.

    Unlike SealedValueError this says nothing about the value: trying again later may work.
    """


class KeyProvider(Protocol):
    """Holds key-encryption keys and wraps data keys with them; never sees a secret."""

    def current_key_id(self) -> str:
        """The id of the key new data keys are wrapped with."""
        ...

    def handles(self, key_id: str) -> bool:
        """True when this provider can unwrap data keys wrapped by ``key_id``."""
        ...

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """Wrap ``data_key`` with the current key; returns (key id, wrapped data key)."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key ``wrapped`` by ``key_id``; raises SealedValueError if it does not open."""
        ...

    def rewrap(self, key_id: str, wrapped: bytes) -> tuple[str, bytes]:
        """Re-wrap a data key under the current key; returns (key id, wrapped data key)."""
        ...

    def check_label(self, key_id: str, wrapped: bytes) -> None:
        """Raise SealedValueError when ``wrapped`` cannot have been wrapped by ``key_id``.

        The key id in an envelope is not authenticated; a provider whose wrapped keys name
        their own key (transit ciphertexts carry their version) compares the two.
        """
        ...

    def rotate(self) -> str | None:
        """Make a new current key where the provider can (a key service); returns its id.

        None when the keys come from configuration (local master keys), where rotating
        means the operator sets a new key and moves the old one to the previous keys.
        """
        ...

    def describe(self) -> list[str]:
        """One line per key the provider holds (ids only, never key material)."""
        ...


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a sealed value of version 0x02."""

    key_id: str
    wrapped: bytes
    nonce: bytes
    ciphertext: bytes

    def encode(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return b"".join(
            (
                bytes((ENVELOPE_VERSION, len(key_id))),
                key_id,
                len(self.wrapped).to_bytes(2, "big"),
                self.wrapped,
                self.nonce,
                self.ciphertext,
            )
        )

    @classmethod
    def decode(cls, sealed: bytes) -> Envelope:
        """Parse an envelope; raises SealedValueError for anything malformed."""
        if len(sealed) < 2 or sealed[0] != ENVELOPE_VERSION:  # noqa: PLR2004 - version, length
            raise SealedValueError("not a sealed value of the envelope version")
        id_end = 2 + sealed[1]
        wrapped_start = id_end + 2
        if sealed[1] == 0 or len(sealed) < wrapped_start:
            raise SealedValueError("the sealed value is truncated")
        try:
            key_id = sealed[2:id_end].decode("ascii")
        except UnicodeDecodeError:
            raise SealedValueError("the sealed value's key id is not ASCII") from None
        wrapped_end = wrapped_start + int.from_bytes(sealed[id_end:wrapped_start], "big")
        nonce_end = wrapped_end + NONCE_BYTES
        if wrapped_end == wrapped_start or len(sealed) < nonce_end + TAG_BYTES:
            raise SealedValueError("the sealed value is truncated")
        return cls(
            key_id=key_id,
            wrapped=sealed[wrapped_start:wrapped_end],
            nonce=sealed[wrapped_end:nonce_end],
            ciphertext=sealed[nonce_end:],
        )


def _associated_data(context: str) -> bytes:
    return bytes((ENVELOPE_VERSION, 0)) + context.encode("utf-8")


def is_legacy(sealed: bytes) -> bool:
    """True for a value sealed before the vault (version 0x01)."""
    return sealed[:1] == bytes((LEGACY_VERSION,))


class Vault:
    """A ``SecretBox`` doing envelope encryption, with re-wrapping for key rotation.

    ``provider`` wraps every new data key. ``readers`` are further providers that can
    still unwrap what they once wrapped (the local master keys while moving to a key
    service). ``legacy`` boxes open values sealed before the vault.
    """

    def __init__(
        self,
        provider: KeyProvider,
        *,
        readers: Sequence[KeyProvider] = (),
        legacy: Sequence[SecretBox] = (),
    ) -> None:
        self._provider = provider
        self._providers = (provider, *readers)
        self._legacy = tuple(legacy)

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    def current_key_id(self) -> str:
        return self._provider.current_key_id()

    def describe(self) -> list[str]:
        """The keys this vault can use, current first (ids only)."""
        lines = [line for p in self._providers for line in p.describe()]
        if self._legacy:
            lines.append(f"{LEGACY_KEY_ID} (opens values sealed before the vault)")
        return lines

    def seal(self, plaintext: bytes, context: str) -> bytes:
        data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _associated_data(context))
        key_id, wrapped = self._provider.wrap(data_key)
        return self._envelope(key_id, wrapped, nonce, ciphertext).encode()

    def open(self, sealed: bytes, context: str) -> bytes:
        if is_legacy(sealed):
            return self._open_legacy(sealed, context)
        envelope = Envelope.decode(sealed)
        data_key = self._reader(envelope.key_id).unwrap(envelope.key_id, envelope.wrapped)
        try:
            return AESGCM(data_key).decrypt(
                envelope.nonce, envelope.ciphertext, _associated_data(context)
            )
        except (InvalidTag, ValueError):
            raise SealedValueError("the sealed value does not open in this context") from None

    def key_id_of(self, sealed: bytes) -> str:
        """The id of the key that wraps this value's data key (``"legacy"`` for 0x01).

        Raises SealedValueError when the value is malformed, or when the provider holding
        its key finds that the wrapped data key does not match the id it is labelled with.
        """
        if is_legacy(sealed):
            return LEGACY_KEY_ID
        envelope = Envelope.decode(sealed)
        for provider in self._providers:
            if provider.handles(envelope.key_id):
                provider.check_label(envelope.key_id, envelope.wrapped)
                break
        return envelope.key_id

    def needs_rewrap(self, sealed: bytes) -> bool:
        """True when ``rewrap`` would change which key protects the value."""
        return self.key_id_of(sealed) != self.current_key_id()

    def rewrap(self, sealed: bytes, context: str | None = None) -> bytes:
        """The same secret with its data key wrapped by the current key.

        Only the data key is unwrapped and wrapped again; the secret is not decrypted. A
        legacy value has no data key: it is opened (which needs its ``context``) and sealed
        anew as an envelope.
        """
        if is_legacy(sealed):
            if context is None:
                raise SealedValueError("a value sealed before the vault needs its context")
            return self.seal(self._open_legacy(sealed, context), context)
        envelope = Envelope.decode(sealed)
        reader = self._reader(envelope.key_id)
        if reader is self._provider:
            key_id, wrapped = reader.rewrap(envelope.key_id, envelope.wrapped)
        else:
            key_id, wrapped = self._provider.wrap(reader.unwrap(envelope.key_id, envelope.wrapped))
        return self._envelope(key_id, wrapped, envelope.nonce, envelope.ciphertext).encode()

    def _reader(self, key_id: str) -> KeyProvider:
        for provider in self._providers:
            if provider.handles(key_id):
                return provider
        raise KeyUnavailable(f"no configured key provider holds key {key_id}")

    def _open_legacy(self, sealed: bytes, context: str) -> bytes:
        for box in self._legacy:
            try:
                return box.open(sealed, context)
            except SealedValueError:
                continue
        raise SealedValueError("the sealed value does not open with any configured master key")

    @staticmethod
    def _envelope(key_id: str, wrapped: bytes, nonce: bytes, ciphertext: bytes) -> Envelope:
        if not 0 < len(key_id.encode("ascii")) <= MAX_KEY_ID_BYTES:
            msg = "a key id is 1 to 255 ASCII characters"
            raise ValueError(msg)
        if not 0 < len(wrapped) <= MAX_WRAPPED_BYTES:
            msg = "a wrapped data key is 1 to 65535 bytes"
            raise ValueError(msg)
        return Envelope(key_id, wrapped, nonce, ciphertext)
