"""Where the vault's key-encryption keys live: local master keys, or HashiCorp Vault transit.

``LocalKeyProvider`` holds ``PLEXUS_MASTER_KEY`` (32 random bytes) and any previous master
keys still needed while a rotation runs. A data key is wrapped with AES-256-GCM under the
master key, with the key's id as associated data. The id is a truncated HMAC made with the
key itself, so it names the key without revealing anything about it.

``TransitKeyProvider`` never holds a KEK: it asks a HashiCorp Vault transit key to encrypt
(wrap) and decrypt (unwrap) data keys, and to re-wrap them under its latest version after a
rotation. Unwrapped data keys are cached in memory for a few minutes (bounded), so reading
a page of sealed values costs one round trip per value once, not per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from plexus.kit.secretbox import SealedValueError
from plexus.kit.vault import KeyServiceError, KeyUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

MASTER_KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_KEY_ID_LABEL: Final = b"plexus master key id v1"
_WRAP_LABEL: Final = b"plexus data key v1\x00"
#: How long the transit key's latest version is believed before it is read again.
_LATEST_CACHE_SECONDS: Final = 60.0
_TRANSIT_CIPHERTEXT: Final = re.compile(r"^vault:v(\d+):[A-Za-z0-9+/=]+$")
_TRANSIT_KEY_ID: Final = re.compile(r"^(vault-transit:[^:]+):v\d+$")


def key_name(key_id: str) -> str:
    """The key a key id names, without a key service's version.

    ``vault-transit:transit/plexus:v3`` names version 3 of the transit key
    ``transit/plexus``; every version is the same key to the operator (rotating it in
    HashiCorp Vault is routine), so this answers ``vault-transit:transit/plexus``. A local
    master key id has no version and is its own name.
    """
    match = _TRANSIT_KEY_ID.match(key_id)
    return match.group(1) if match is not None else key_id


def decode_master_key(text: str) -> bytes:
    """The 32 bytes a master key setting encodes (standard or URL-safe base64).

    Raises ValueError, naming the expected form but never the value.
    """
    candidate = text.strip()
    try:
        raw = base64.b64decode(candidate.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        msg = (
            "a master key is 32 random bytes, base64-encoded (44 characters); "
            "make one with `plexus keys generate-master`"
        )
        raise ValueError(msg)
    return raw


def generate_master_key() -> str:
    """A fresh master key from the operating system's CSPRNG, base64-encoded."""
    return base64.b64encode(os.urandom(MASTER_KEY_BYTES)).decode("ascii")


def master_key_id(key: bytes) -> str:
    """``mk-`` and 16 hex digits of HMAC-SHA256(key, label): names the key, reveals nothing."""
    return "mk-" + hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


class LocalKeyProvider:
    """Master keys from the environment: the current one wraps, previous ones only unwrap."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self._current = master_key_id(current)
        self._keys: dict[str, AESGCM] = {self._current: AESGCM(current)}
        for key in previous:
            self._keys.setdefault(master_key_id(key), AESGCM(key))

    def current_key_id(self) -> str:
        return self._current

    def handles(self, key_id: str) -> bool:
        return key_id in self._keys

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        aad = _WRAP_LABEL + self._current.encode("ascii")
        return self._current, nonce + self._keys[self._current].encrypt(nonce, data_key, aad)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        kek = self._keys.get(key_id)
        if kek is None:
            raise KeyUnavailable(f"master key {key_id} is not configured")
        try:
            return kek.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _WRAP_LABEL + key_id.encode()
            )
        except (InvalidTag, ValueError):
            raise SealedValueError(f"the data key does not unwrap with {key_id}") from None

    def rewrap(self, key_id: str, wrapped: bytes) -> tuple[str, bytes]:
        return self.wrap(self.unwrap(key_id, wrapped))

    def check_label(self, key_id: str, wrapped: bytes) -> None:
        """Nothing to compare without the key.

        The id is the wrap's associated data, so a value under a changed label does not
        unwrap.
        """

    def rotate(self) -> str | None:
        return None

    def describe(self) -> list[str]:
        return [
            f"{key_id} (local master key, {'current' if key_id == self._current else 'previous'})"
            for key_id in self._keys
        ]


class TransitKeyProvider:
    """A HashiCorp Vault transit key wraps and unwraps data keys; Plexus never holds it.

    ``client`` is an ``hvac.Client`` (tests point one at a fake server). Key ids are
    ``vault-transit:<mount>/<key>:v<version>``.
    """

    def __init__(
        self,
        client: Any,
        *,
        key_name: str,
        mount: str = "transit",
        cache_seconds: float = 300.0,
        cache_size: int = 4096,
    ) -> None:
        self._client = client
        self._key = key_name
        self._mount = mount
        self._prefix = f"vault-transit:{mount}/{key_name}:v"
        self._cache: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._latest: tuple[float, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def connect(  # noqa: PLR0913 - a connection's parts, all keyword-only
        cls,
        *,
        address: str,
        token: str,
        key_name: str,
        mount: str = "transit",
        ca_file: Path | None = None,
        timeout: float = 10.0,
    ) -> TransitKeyProvider:
        import hvac

        client = hvac.Client(
            url=address,
            token=token,
            verify=str(ca_file) if ca_file is not None else True,
            timeout=timeout,
        )
        return cls(client, key_name=key_name, mount=mount)

    # The KeyProvider interface --------------------------------------------------------

    def current_key_id(self) -> str:
        latest = self._latest
        if latest is None or time.monotonic() - latest[0] > _LATEST_CACHE_SECONDS:
            response = self._call(
                "reading the transit key",
                self._client.secrets.transit.read_key,
                name=self._key,
                mount_point=self._mount,
            )
            self._note_version(int(response["data"]["latest_version"]))
        return self._key_id(self._latest_version())

    def handles(self, key_id: str) -> bool:
        return key_id.startswith(self._prefix) and key_id[len(self._prefix) :].isdigit()

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        response = self._call(
            "encrypting a data key",
            self._client.secrets.transit.encrypt_data,
            name=self._key,
            plaintext=base64.b64encode(data_key).decode("ascii"),
            mount_point=self._mount,
        )
        wrapped = str(response["data"]["ciphertext"]).encode("ascii")
        self._remember(wrapped, data_key)
        return self._from_ciphertext(wrapped)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        self.check_label(key_id, wrapped)
        cached = self._cached(wrapped)
        if cached is not None:
            return cached
        response = self._call(
            "decrypting a data key",
            self._client.secrets.transit.decrypt_data,
            name=self._key,
            ciphertext=self._ciphertext(wrapped),
            mount_point=self._mount,
            refused=SealedValueError,
        )
        data_key = base64.b64decode(response["data"]["plaintext"])
        self._remember(wrapped, data_key)
        return data_key

    def rewrap(self, key_id: str, wrapped: bytes) -> tuple[str, bytes]:
        self.check_label(key_id, wrapped)
        response = self._call(
            "re-wrapping a data key",
            self._client.secrets.transit.rewrap_data,
            name=self._key,
            ciphertext=self._ciphertext(wrapped),
            mount_point=self._mount,
            refused=SealedValueError,
        )
        return self._from_ciphertext(str(response["data"]["ciphertext"]).encode("ascii"))

    def check_label(self, key_id: str, wrapped: bytes) -> None:
        """Refuse a value whose key id names another version than its transit ciphertext.

        The envelope's key id is not authenticated, while the ciphertext's ``vault:vN:``
        prefix is what HashiCorp Vault decrypts with: a label changed to the latest version
        would make an old-version value look rotated (and skip ``plexus keys rotate``).
        """
        if not self.handles(key_id):
            raise KeyUnavailable(f"key {key_id} is not this transit key")
        match = _TRANSIT_CIPHERTEXT.match(wrapped.decode("ascii", "replace"))
        if match is None:
            raise SealedValueError("the wrapped data key is not a transit ciphertext")
        if self._key_id(int(match.group(1))) != key_id:
            msg = (
                f"the sealed value is labelled {key_id} but its data key is wrapped by "
                f"version {int(match.group(1))} of the transit key"
            )
            raise SealedValueError(msg)

    def rotate(self) -> str:
        self._call(
            "rotating the transit key",
            self._client.secrets.transit.rotate_key,
            name=self._key,
            mount_point=self._mount,
        )
        with self._lock:
            self._latest = None
        return self.current_key_id()

    def describe(self) -> list[str]:
        return [f"{self.current_key_id()} (HashiCorp Vault transit key, latest version)"]

    # Helpers --------------------------------------------------------------------------

    def _key_id(self, version: int) -> str:
        return f"{self._prefix}{version}"

    def _latest_version(self) -> int:
        latest = self._latest
        if latest is None:
            msg = "the transit key's latest version is unknown"
            raise KeyServiceError(msg)
        return latest[1]

    def _note_version(self, version: int) -> None:
        with self._lock:
            if self._latest is None or version >= self._latest[1]:
                self._latest = (time.monotonic(), version)

    def _from_ciphertext(self, wrapped: bytes) -> tuple[str, bytes]:
        match = _TRANSIT_CIPHERTEXT.match(wrapped.decode("ascii", "replace"))
        if match is None:
            msg = "HashiCorp Vault answered with something that is not a transit ciphertext"
            raise KeyServiceError(msg)
        version = int(match.group(1))
        self._note_version(version)
        return self._key_id(version), wrapped

    @staticmethod
    def _ciphertext(wrapped: bytes) -> str:
        text = wrapped.decode("ascii", "replace")
        if _TRANSIT_CIPHERTEXT.match(text) is None:
            raise SealedValueError("the wrapped data key is not a transit ciphertext")
        return text

    def _cached(self, wrapped: bytes) -> bytes | None:
        with self._lock:
            entry = self._cache.get(wrapped)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self._cache_seconds:
                del self._cache[wrapped]
                return None
            self._cache.move_to_end(wrapped)
            return entry[1]

    def _remember(self, wrapped: bytes, data_key: bytes) -> None:
        if self._cache_seconds <= 0:
            return
        with self._lock:
            self._cache[wrapped] = (time.monotonic(), data_key)
            self._cache.move_to_end(wrapped)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _call(
        self,
        what: str,
        function: Callable[..., Any],
        *,
        refused: type[Exception] = KeyServiceError,
        **arguments: Any,
    ) -> Any:
        """Call hvac; turn its failures into KeyServiceError (or ``refused`` for a 400)."""
        from hvac import exceptions

        try:
            return function(**arguments)
        except exceptions.InvalidRequest as exc:
            raise refused(f"HashiCorp Vault refused {what}: {_errors(exc)}") from None
        except exceptions.VaultError as exc:
            kind = type(exc).__name__
            msg = f"HashiCorp Vault failed {what} ({kind}): {_errors(exc)}"
            raise KeyServiceError(msg) from None
        except OSError as exc:  # requests' connection errors are OSErrors
            msg = f"HashiCorp Vault cannot be reached for {what}: {type(exc).__name__}"
            raise KeyServiceError(msg) from None


def _errors(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)
    return "no detail"
