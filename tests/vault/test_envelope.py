"""The vault's envelope format (R9), through its public interface: seal, open, rewrap,
key_id_of, with local master keys and values sealed before the vault."""

from __future__ import annotations

import base64
import os

import pytest

from plexus.kit.keyproviders import (
    LocalKeyProvider,
    decode_master_key,
    generate_master_key,
    master_key_id,
)
from plexus.kit.secretbox import AesGcmSecretBox, SealedValueError
from plexus.kit.vault import ENVELOPE_VERSION, LEGACY_KEY_ID, Envelope, KeyUnavailable, Vault

OLD = os.urandom(32)
NEW = os.urandom(32)
CONTEXT = "users:email:7"
SECRET = b"a secret worth keeping"


def vault(current: bytes = NEW, *previous: bytes, legacy: tuple[bytes, ...] = ()) -> Vault:
    boxes = [AesGcmSecretBox(text) for text in legacy]
    return Vault(LocalKeyProvider(current, previous), legacy=boxes)


def test_v11_3_3_seal_is_authenticated_encryption_bound_to_its_context():
    box = vault()
    sealed = box.seal(SECRET, CONTEXT)
    assert box.open(sealed, CONTEXT) == SECRET
    assert SECRET not in sealed
    for other in ("users:email:8", "invitations:email:7", "users:totp_secret:7", ""):
        with pytest.raises(SealedValueError):
            box.open(sealed, other)


def test_every_seal_draws_a_fresh_data_key_and_nonce():
    box = vault()
    first, second = (
        Envelope.decode(box.seal(SECRET, CONTEXT)),
        Envelope.decode(box.seal(SECRET, CONTEXT)),
    )
    assert first.wrapped != second.wrapped
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    # 32-byte data key + GCM tag, wrapped under a 12-byte nonce.
    assert len(first.wrapped) == 12 + 32 + 16


def test_envelope_is_versioned_and_names_the_key_without_revealing_it():
    box = vault()
    sealed = box.seal(SECRET, CONTEXT)
    assert sealed[0] == ENVELOPE_VERSION
    key_id = box.key_id_of(sealed)
    assert key_id == master_key_id(NEW) == box.current_key_id()
    assert key_id.startswith("mk-")
    assert len(key_id) == 19
    for form in (NEW, base64.b64encode(NEW), NEW.hex().encode()):
        assert form not in sealed
        assert form[:8] not in key_id.encode()
    assert master_key_id(OLD) != key_id


@pytest.mark.parametrize("position", [0, 1, 5, 25, 60, 80, -1])
def test_v11_3_3_any_changed_byte_stops_it_opening(position):
    box = vault()
    sealed = bytearray(box.seal(SECRET, CONTEXT))
    sealed[position] ^= 0x01
    with pytest.raises(SealedValueError):
        box.open(bytes(sealed), CONTEXT)


@pytest.mark.parametrize("cut", [0, 1, 2, 10, 40, 70])
def test_truncated_values_are_refused(cut):
    box = vault()
    sealed = box.seal(SECRET, CONTEXT)
    with pytest.raises(SealedValueError):
        box.open(sealed[:cut], CONTEXT)


def test_a_data_key_moved_into_another_value_does_not_open_it():
    box = vault()
    first = Envelope.decode(box.seal(SECRET, CONTEXT))
    second = Envelope.decode(box.seal(b"another secret", CONTEXT))
    mixed = Envelope(first.key_id, second.wrapped, first.nonce, first.ciphertext).encode()
    with pytest.raises(SealedValueError):
        box.open(mixed, CONTEXT)


def test_v13_3_4_rewrap_moves_the_data_key_to_the_new_master_key():
    sealed = vault(OLD).seal(SECRET, CONTEXT)
    rotating = vault(NEW, OLD)
    assert rotating.key_id_of(sealed) == master_key_id(OLD)
    assert rotating.needs_rewrap(sealed)
    rewrapped = rotating.rewrap(sealed)
    assert rotating.key_id_of(rewrapped) == master_key_id(NEW)
    assert not rotating.needs_rewrap(rewrapped)
    # Only the data key changed: the secret's ciphertext is the very same bytes.
    assert Envelope.decode(rewrapped).ciphertext == Envelope.decode(sealed).ciphertext
    # The old key can go: the new one alone opens it, and the old one alone does not.
    assert vault(NEW).open(rewrapped, CONTEXT) == SECRET
    with pytest.raises(KeyUnavailable):
        vault(OLD).open(rewrapped, CONTEXT)
    with pytest.raises(KeyUnavailable):
        vault(NEW).open(sealed, CONTEXT)


def test_legacy_values_open_and_rewrap_turns_them_into_envelopes():
    legacy_key = b"the master key setting from before the vault, any text"
    old_box = AesGcmSecretBox(legacy_key)
    sealed = old_box.seal(SECRET, CONTEXT)
    assert sealed[0] == 0x01
    box = vault(NEW, legacy=(legacy_key,))
    assert box.open(sealed, CONTEXT) == SECRET
    assert box.key_id_of(sealed) == LEGACY_KEY_ID
    assert box.needs_rewrap(sealed)
    with pytest.raises(SealedValueError):
        box.rewrap(sealed)  # a legacy value is re-sealed, which needs its context
    converted = box.rewrap(sealed, CONTEXT)
    assert converted[0] == ENVELOPE_VERSION
    assert box.key_id_of(converted) == master_key_id(NEW)
    assert vault(NEW).open(converted, CONTEXT) == SECRET
    with pytest.raises(SealedValueError):
        box.rewrap(sealed, "users:email:8")
    with pytest.raises(SealedValueError):
        vault(NEW).open(sealed, CONTEXT)


def test_new_seals_never_use_the_legacy_format():
    box = vault(NEW, legacy=(b"x" * 40,))
    assert box.seal(SECRET, CONTEXT)[0] == ENVELOPE_VERSION


def test_generated_master_keys_are_32_random_bytes_in_base64():
    first, second = generate_master_key(), generate_master_key()
    assert first != second
    assert len(decode_master_key(first)) == 32
    assert decode_master_key(first.replace("+", "-").replace("/", "_")) == decode_master_key(first)
    for bad in ("", "not base64 at all!", base64.b64encode(b"x" * 31).decode(), "a" * 64):
        with pytest.raises(ValueError, match="32 random bytes"):
            decode_master_key(bad)
