"""R9 at rest: a copy of the database (the SQLite files byte for byte, or every value of
every PostgreSQL table) holds no TOTP secret, no JWT private key and no e-mail address;
and a sealed value copied into another row does not open there."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update

from plexus.kit.secretbox import SealedValueError
from plexus.kit.vault import ENVELOPE_VERSION
from plexus.models.identity import Invitation, SigningKey, User
from plexus.vault_columns import TOTP_SECRET, USER_EMAIL

from auth_helpers import PASSWORD, create_user, login
from vault_helpers import access_headers, database_blobs, enrol_totp, login_with_totp

OWNER = "Ada.Lovelace@Example.com"
MEMBER = "grace.hopper@example.org"
INVITED = "katherine.johnson@example.net"


def _needles_for(address: str) -> list[bytes]:
    local = address.partition("@")[0]
    return [address.encode(), address.lower().encode(), local.lower().encode() + b"@"]


def _private_key_forms(runtime) -> list[bytes]:
    with runtime.sessions() as session:
        _, private = runtime.keyring.signing_key(session)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return [raw, der, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")]


@pytest.fixture
def populated(client, runtime):
    """An owner with TOTP on, a second member, a pending invitation, a signing key."""
    _, workspace_id = create_user(runtime, OWNER.lower())
    create_user(runtime, MEMBER, workspace_id=workspace_id)
    headers = access_headers(login(client, OWNER.lower(), PASSWORD))
    secret = enrol_totp(client, headers)
    invited = client.post(
        "/api/v1/invitations", json={"email": INVITED, "role": "editor"}, headers=headers
    )
    assert invited.status_code == 201, invited.text
    assert invited.json()["email"] == INVITED
    members = client.get(f"/api/v1/workspaces/{workspace_id}/members", headers=headers)
    assert sorted(m["email"] for m in members.json()) == sorted([OWNER.lower(), MEMBER])
    return secret


def test_v14_2_4_database_holds_no_plaintext_secret_or_address(populated, runtime, database_url):
    secret = populated
    needles = [secret.encode(), secret.lower().encode(), base64.b32decode(secret)]
    needles += _private_key_forms(runtime)
    for address in (OWNER, MEMBER, INVITED):
        needles += _needles_for(address)
    blobs = database_blobs(runtime.engine, database_url)
    assert sum(len(b) for b in blobs) > 2_000, "the dump must hold the database"
    # The dump does see plaintext columns: display names are not secret, and are found.
    assert any(b"grace.hopper" in blob for blob in blobs)
    for blob in blobs:
        for needle in needles:
            assert needle not in blob, f"plaintext found in the database: {needle[:12]!r}…"


def test_sealed_columns_hold_envelopes_under_the_current_key(populated, runtime):
    current = runtime.secretbox.current_key_id()
    with runtime.sessions() as session:
        values = [
            *session.scalars(select(User.email_sealed)),
            *session.scalars(select(User.totp_secret).where(User.totp_secret.is_not(None))),
            *session.scalars(select(SigningKey.private_key)),
            *session.scalars(select(Invitation.email_sealed)),
        ]
    assert len(values) == 5
    for value in values:
        assert value[0] == ENVELOPE_VERSION
        assert runtime.secretbox.key_id_of(value) == current


def test_v11_3_3_a_ciphertext_copied_into_another_row_does_not_open(client, runtime):
    """The associated data names the row: Ada's sealed TOTP secret and address, copied into
    Grace's row, neither open there, and Grace cannot sign in with Ada's authenticator."""
    ada_id, workspace_id = create_user(runtime, "ada@example.com")
    grace_id, _ = create_user(runtime, "grace@example.com", workspace_id=workspace_id)
    ada_secret = enrol_totp(client, access_headers(login(client, "ada@example.com", PASSWORD)))
    enrol_totp(client, access_headers(login(client, "grace@example.com", PASSWORD)))
    with runtime.sessions() as session:
        ada = session.get(User, ada_id)
        stolen_totp, stolen_email = ada.totp_secret, ada.email_sealed
        session.execute(
            update(User)
            .where(User.id == grace_id)
            .values(totp_secret=stolen_totp, email_sealed=stolen_email)
        )
        session.commit()
    with pytest.raises(SealedValueError):
        runtime.secretbox.open(stolen_totp, TOTP_SECRET.context(grace_id))
    with pytest.raises(SealedValueError):
        runtime.secretbox.open(stolen_email, USER_EMAIL.context(grace_id))
    # In its own row it still opens.
    assert runtime.secretbox.open(stolen_email, USER_EMAIL.context(ada_id)) == b"ada@example.com"
    attempt = login_with_totp(client, "grace@example.com", PASSWORD, ada_secret)
    assert attempt.status_code != 200
    assert "access_token" not in attempt.text
