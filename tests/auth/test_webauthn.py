"""R5: WebAuthn security keys and passkeys as a second factor, over HTTP.

The browser and the authenticator are played by ``SoftKey`` below: a P-256 key made with
``cryptography`` that builds clientDataJSON, authenticatorData (RP id hash, flags, signature
counter, attested credential data with a COSE key) and a "none" attestation object in CBOR,
and signs assertions, as a security key would. The server is configured with
``PLEXUS_PUBLIC_URL=https://plexus.test``, so the RP id is ``plexus.test``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
from datetime import timedelta

import cbor2
import jwt
import pyotp
import pytest
import time_machine
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from plexus.audit.events import Actor, AuditEventType
from plexus.auth.account import unlock_account
from plexus.auth.sessions import SESSION_COOKIE
from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import SecurityEvent, Workspace
from plexus.models.webauthn import WebAuthnChallenge, WebAuthnCredential

from auth_helpers import PASSWORD, bearer, create_user, login

PUBLIC_URL = "https://plexus.test"
RP_ID = "plexus.test"
KEYS = "/api/v1/me/mfa/webauthn"
REGISTER_OPTIONS = f"{KEYS}/register/options"
REGISTER = f"{KEYS}/register"
LOGIN_OPTIONS = "/api/v1/auth/mfa/webauthn/options"
LOGIN = "/api/v1/auth/mfa/webauthn"
REAUTH_OPTIONS = "/api/v1/auth/reauth/webauthn/options"
REAUTH = "/api/v1/auth/reauth/webauthn"
EMAIL = "grace@example.com"
#: An admin-only route (api_key:read) that does not exempt members without MFA.
ADMIN_ROUTE = "/api/v1/api-keys"

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40


@pytest.fixture
def env_vars(env_vars):
    # These tests sign in more often than the login and MFA budgets allow.
    budget = "200 per 5 minutes"
    limits = f"login={budget};login_account={budget};mfa={budget}"
    return {**env_vars, "PLEXUS_PUBLIC_URL": PUBLIC_URL, "PLEXUS_RATE_LIMITS": limits}


@pytest.fixture
def clock():
    with time_machine.travel(time.time(), tick=True) as traveller:
        yield traveller


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftKey:
    """A software security key: one ES256 credential and its signature counter."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def _cose_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        # kty EC2, alg ES256, crv P-256, x, y (RFC 9053).
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _authenticator_data(self, rp_id: str, flags: int, *, attested: bool) -> bytes:
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags])
        data += struct.pack(">I", self.sign_count)
        if attested:
            aaguid = bytes(16)
            data += aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self._cose_key()
        return data

    @staticmethod
    def _client_data(kind: str, options: dict, origin: str) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": options["challenge"],
                "origin": origin,
                "crossOrigin": False,
            }
        ).encode()

    def create(self, options: dict, *, origin: str = PUBLIC_URL, rp_id: str = RP_ID) -> dict:
        """What ``navigator.credentials.create(options)`` returns, as JSON."""
        client_data = self._client_data("webauthn.create", options, origin)
        auth_data = self._authenticator_data(rp_id, FLAG_UP | FLAG_UV | FLAG_AT, attested=True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["usb", "nfc"],
            },
            "clientExtensionResults": {},
        }

    def get(
        self,
        options: dict,
        *,
        origin: str = PUBLIC_URL,
        rp_id: str = RP_ID,
        count: int | None = None,
    ) -> dict:
        """What ``navigator.credentials.get(options)`` returns, as JSON; the counter goes
        up by one unless ``count`` sets it."""
        self.sign_count = self.sign_count + 1 if count is None else count
        client_data = self._client_data("webauthn.get", options, origin)
        auth_data = self._authenticator_data(rp_id, FLAG_UP | FLAG_UV, attested=False)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
            },
            "clientExtensionResults": {},
        }


def problem_code(response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.json()["type"].rsplit(":", 1)[-1]


def access_headers(response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def amr(response) -> list[str]:
    token = response.json()["access_token"]
    return jwt.decode(token, options={"verify_signature": False})["amr"]


def register(client, headers, key: SoftKey, name: str = "Blue key") -> dict:
    options = client.post(REGISTER_OPTIONS, headers=headers)
    assert options.status_code == 200, options.text
    done = client.post(
        REGISTER, json={"credential": key.create(options.json()), "name": name}, headers=headers
    )
    assert done.status_code == 201, done.text
    return done.json()


def password_step(client, email: str = EMAIL) -> str:
    response = login(client, email, PASSWORD)
    assert response.status_code == 200, response.text
    assert response.json()["mfa_required"] is True
    return response.json()["mfa_token"]


def assertion_options(client, mfa_token: str) -> dict:
    response = client.post(LOGIN_OPTIONS, json={"mfa_token": mfa_token})
    assert response.status_code == 200, response.text
    return response.json()


def sign_in(client, key: SoftKey, email: str = EMAIL, **get_kwargs):
    mfa_token = password_step(client, email)
    credential = key.get(assertion_options(client, mfa_token), **get_kwargs)
    return client.post(LOGIN, json={"mfa_token": mfa_token, "credential": credential})


def enrolled(client, runtime, email: str = EMAIL) -> tuple[SoftKey, dict[str, str], dict]:
    create_user(runtime, email)
    headers = bearer(client, email)
    key = SoftKey()
    return key, headers, register(client, headers, key)


def test_registration_and_sign_in_with_password_and_a_security_key(client, runtime):
    """R5, V6.5.1, V6.3.3: a key registered with a verified "none" attestation turns the
    second step on; password + assertion gives tokens whose ``amr`` holds "hwk"."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    options = client.post(REGISTER_OPTIONS, headers=headers).json()
    assert options["rp"] == {"id": RP_ID, "name": "Plexus"}
    assert options["attestation"] == "none"
    assert len(unb64url(options["challenge"])) >= 16
    # The user handle is opaque: neither the e-mail nor the row id.
    assert EMAIL.encode() not in unb64url(options["user"]["id"])
    key = SoftKey()
    created = client.post(
        REGISTER, json={"credential": key.create(options), "name": "Blue key"}, headers=headers
    )
    assert created.status_code == 201, created.text
    listed = client.get(KEYS, headers=headers).json()
    assert [(c["name"], c["transports"], c["last_used_at"]) for c in listed] == [
        ("Blue key", ["usb", "nfc"], None)
    ]

    mfa_token = password_step(client)
    request_options = assertion_options(client, mfa_token)
    assert request_options["rpId"] == RP_ID
    assert [c["id"] for c in request_options["allowCredentials"]] == [b64url(key.credential_id)]
    signed_in = client.post(
        LOGIN, json={"mfa_token": mfa_token, "credential": key.get(request_options)}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert amr(signed_in) == ["pwd", "hwk"]
    assert client.get("/api/v1/me", headers=access_headers(signed_in)).status_code == 200
    with runtime.sessions() as session:
        stored = session.scalars(select(WebAuthnCredential)).one()
        assert stored.sign_count == 1
        assert stored.last_used_at is not None
        assert stored.credential_id == key.credential_id
        kinds = set(session.scalars(select(AuditEvent.event)))
        assert str(AuditEventType.AUTH_WEBAUTHN_REGISTERED) in kinds
        assert str(AuditEventType.AUTH_MFA_SUCCEEDED) in kinds
        # Both challenges were spent.
        assert session.scalars(select(WebAuthnChallenge)).all() == []


def test_browser_sign_in_with_a_security_key_gets_a_session(client, runtime):
    """V6.3.3: the cookie mode of the login carries through the WebAuthn step."""
    key, _, _ = enrolled(client, runtime)
    started = login(client, EMAIL, PASSWORD, use_cookie=True)
    mfa_token = started.json()["mfa_token"]
    credential = key.get(assertion_options(client, mfa_token))
    done = client.post(LOGIN, json={"mfa_token": mfa_token, "credential": credential})
    assert done.status_code == 200, done.text
    assert "csrf_token" in done.json()
    assert "__Host-" in done.headers["set-cookie"]


def test_a_replayed_or_altered_assertion_is_refused(client, runtime):
    """V6.5.1, V6.7.2: an assertion is good for one challenge, once; any change to what was
    signed breaks it."""
    key, _, _ = enrolled(client, runtime)
    mfa_token = password_step(client)
    credential = key.get(assertion_options(client, mfa_token))
    body = {"mfa_token": mfa_token, "credential": credential}
    assert client.post(LOGIN, json=body).status_code == 200
    assert client.post(LOGIN, json=body).status_code == 401

    # The same assertion against a new sign-in's challenge.
    fresh = password_step(client)
    assertion_options(client, fresh)
    assert (
        client.post(LOGIN, json={"mfa_token": fresh, "credential": credential}).status_code == 401
    )

    # A response whose signed bytes were altered: a flipped counter, a flipped signature.
    for field, index in (("authenticatorData", 36), ("signature", 10)):
        mfa_token = password_step(client)
        altered = key.get(assertion_options(client, mfa_token))
        raw = bytearray(unb64url(altered["response"][field]))
        raw[index] ^= 0x01
        altered["response"][field] = b64url(bytes(raw))
        refused = client.post(LOGIN, json={"mfa_token": mfa_token, "credential": altered})
        assert refused.status_code == 401, refused.text
        assert problem_code(refused) == "unauthorized"
        # The failed attempt spent the WebAuthn challenge: even the genuine response to it
        # is refused now; new options are needed.
        key.sign_count += 5
        genuine = key.get(
            {"challenge": json.loads(unb64url(altered["response"]["clientDataJSON"]))["challenge"]}
        )
        again = client.post(LOGIN, json={"mfa_token": mfa_token, "credential": genuine})
        assert again.status_code == 401
    # Six refused second factors in a row locked the account, as wrong passwords would.
    assert login(client, EMAIL, PASSWORD).status_code == 401
    with unit_of_work(runtime.sessions) as session:
        assert unlock_account(session, runtime, EMAIL, Actor.system("test"))
    assert sign_in(client, key).status_code == 200


def test_wrong_origin_or_rp_id_is_refused(client, runtime):
    """V6.3.3, WebAuthn §7.1/§7.2 (origin and rpIdHash checks): a response made for another
    site (origin or RP id), at registration or at sign-in, is refused: phishing-resistant."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    key = SoftKey()
    for kwargs in ({"origin": "https://evil.test"}, {"rp_id": "evil.test"}):
        options = client.post(REGISTER_OPTIONS, headers=headers).json()
        credential = key.create(options, **kwargs)
        refused = client.post(
            REGISTER, json={"credential": credential, "name": "k"}, headers=headers
        )
        assert refused.status_code == 400, refused.text
        assert problem_code(refused) == "invalid-webauthn-response"
    assert client.get(KEYS, headers=headers).json() == []

    register(client, headers, key)
    for kwargs in ({"origin": "https://evil.test"}, {"rp_id": "evil.test"}):
        assert sign_in(client, key, **kwargs).status_code == 401
    assert sign_in(client, key).status_code == 200


def test_sign_count_regression_is_refused_with_a_security_event(client, runtime):
    """V6.5.1, WebAuthn §7.2 (signCount): a signature counter that goes back means a cloned
    authenticator: refused, and a high-severity security event for the people watching."""
    key, _, _ = enrolled(client, runtime)
    assert sign_in(client, key, count=7).status_code == 200
    clone = sign_in(client, key, count=3)
    assert clone.status_code == 401
    assert sign_in(client, key, count=7).status_code == 401
    with runtime.sessions() as session:
        events = session.scalars(select(SecurityEvent)).all()
        regressions = [e for e in events if e.kind == "webauthn_sign_count_regressed"]
        assert len(regressions) == 2
        assert {e.severity for e in regressions} == {"high"}
        assert session.scalars(select(WebAuthnCredential.sign_count)).one() == 7
    assert sign_in(client, key, count=8).status_code == 200


def test_an_authenticator_without_a_counter_keeps_working(client, runtime):
    """Many passkeys always report 0: that is no regression."""
    key, _, _ = enrolled(client, runtime)
    assert sign_in(client, key, count=0).status_code == 200
    assert sign_in(client, key, count=0).status_code == 200


def test_a_deleted_credential_no_longer_works(client, runtime):
    """V6.5.6, V7.5.1: removing a key needs a recent sign-in, is audited, raises a security
    event, and the key is refused at once; with none left, sign-in asks for no second
    factor."""
    key, headers, first = enrolled(client, runtime)
    spare = SoftKey()
    register(client, headers, spare, name="Spare")
    removed = client.delete(f"{KEYS}/{first['id']}", headers=headers)
    assert removed.status_code == 204, removed.text
    assert [c["name"] for c in client.get(KEYS, headers=headers).json()] == ["Spare"]
    assert sign_in(client, key).status_code == 401
    assert sign_in(client, spare).status_code == 200
    with runtime.sessions() as session:
        kinds = list(session.scalars(select(AuditEvent.event)))
        assert str(AuditEventType.AUTH_WEBAUTHN_REMOVED) in kinds
        kinds = list(session.scalars(select(SecurityEvent.kind)))
        assert "mfa_disabled" in kinds

    spare_id = client.get(KEYS, headers=headers).json()[0]["id"]
    assert client.delete(f"{KEYS}/{spare_id}", headers=headers).status_code == 204
    assert "access_token" in login(client, EMAIL, PASSWORD).json()


def test_another_users_credential_id_is_404(client, runtime):
    """V8.2.2: one user cannot see, remove or sign in with another user's key."""
    key, headers, mine = enrolled(client, runtime)
    other_key, other_headers, _ = enrolled(client, runtime, "eve@example.com")
    refused = client.delete(f"{KEYS}/{mine['id']}", headers=other_headers)
    assert refused.status_code == 404
    assert problem_code(refused) == "not-found"
    assert client.delete(f"{KEYS}/999999", headers=other_headers).status_code == 404
    assert [c["id"] for c in client.get(KEYS, headers=headers).json()] == [mine["id"]]
    assert len(client.get(KEYS, headers=other_headers).json()) == 1
    # Eve's password step with Grace's key: refused.
    mfa_token = password_step(client, "eve@example.com")
    stolen = key.get(assertion_options(client, mfa_token))
    assert (
        client.post(LOGIN, json={"mfa_token": mfa_token, "credential": stolen}).status_code == 401
    )
    assert sign_in(client, key).status_code == 200
    assert sign_in(client, other_key, "eve@example.com").status_code == 200


def _require_mfa(runtime, workspace_id: int, policy: str) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(Workspace).where(Workspace.id == workspace_id).values(mfa_policy=policy)
        )
        session.commit()


def test_a_passkey_alone_counts_as_mfa_for_the_workspace_policy(client, runtime):
    """V6.3.3, V10.3.4: in a workspace requiring MFA, a member with only a passkey (no
    TOTP) can register it while held back, then signs in with it and gets through."""
    _, workspace_id = create_user(runtime, EMAIL, role=Role.ADMIN)
    _require_mfa(runtime, workspace_id, "all")
    headers = access_headers(login(client, EMAIL, PASSWORD))
    assert problem_code(client.get(ADMIN_ROUTE, headers=headers)) == "mfa-required"
    key = SoftKey()
    register(client, headers, key)
    # The registering session proved the key, as a TOTP confirmation does.
    assert client.get(ADMIN_ROUTE, headers=headers).status_code == 200
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["mfa_enabled"] is True

    signed_in = sign_in(client, key)
    assert client.get(ADMIN_ROUTE, headers=access_headers(signed_in)).status_code == 200
    assert problem_code(client.post(LOGIN_OPTIONS, json={"mfa_token": "x" * 43})) == (
        "unauthorized"
    )


def reauth_with_key(client, key: SoftKey, headers=None, password: str = PASSWORD, **get_kwargs):
    options = client.post(REAUTH_OPTIONS, headers=headers)
    assert options.status_code == 200, options.text
    credential = key.get(options.json(), **get_kwargs)
    return client.post(
        REAUTH, json={"password": password, "credential": credential}, headers=headers
    )


def test_a_passkey_only_user_reauthenticates_with_the_key(client, runtime, clock):
    """V7.5.1, V6.3.3: a user whose only second factor is a passkey cannot re-authenticate
    with a code, but can with password + assertion, and then create an API key."""
    key, _, _ = enrolled(client, runtime)
    headers = access_headers(sign_in(client, key))
    clock.shift(timedelta(minutes=11))
    new_key = {"name": "ci", "scopes": ["content:read"]}
    stale = client.post(ADMIN_ROUTE, json=new_key, headers=headers)
    assert problem_code(stale) == "reauthentication-required"
    # /auth/reauth asks for a code, which this user has no way to produce.
    assert (
        client.post("/api/v1/auth/reauth", json={"password": PASSWORD}, headers=headers).status_code
        == 401
    )

    options = client.post(REAUTH_OPTIONS, headers=headers).json()
    assert options["rpId"] == RP_ID
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.credential_id)]
    credential = key.get(options)
    done = client.post(
        REAUTH, json={"password": PASSWORD, "credential": credential}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"reauthenticated": True, "csrf_token": None}
    created = client.post(ADMIN_ROUTE, json=new_key, headers=headers)
    assert created.status_code == 201, created.text
    with runtime.sessions() as session:
        assert session.scalars(select(WebAuthnCredential.sign_count)).one() == 2
        assert session.scalars(select(WebAuthnChallenge)).all() == []
        kinds = list(session.scalars(select(AuditEvent.event)))
        assert str(AuditEventType.AUTH_REAUTH_SUCCEEDED) in kinds


def test_reauthentication_with_a_key_rotates_a_browser_session(app, runtime):
    """R6: as ``/auth/reauth``, a browser session gets a new cookie and CSRF token."""
    with TestClient(app, base_url=PUBLIC_URL, raise_server_exceptions=False) as browser:
        key, _, _ = enrolled(browser, runtime)
        started = login(browser, EMAIL, PASSWORD, use_cookie=True)
        mfa_token = started.json()["mfa_token"]
        credential = key.get(assertion_options(browser, mfa_token))
        csrf = browser.post(LOGIN, json={"mfa_token": mfa_token, "credential": credential})
        csrf = csrf.json()["csrf_token"]
        before = browser.cookies.get(SESSION_COOKIE)
        done = reauth_with_key(browser, key, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200, done.text
        assert done.json()["csrf_token"] not in (None, csrf)
        assert browser.cookies.get(SESSION_COOKIE) != before
        replay = browser.get("/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={before}"})
        assert replay.status_code == 401


def test_reauthentication_with_a_key_refuses_wrong_passwords_and_replays(client, runtime):
    """V6.5.1, V6.7.2, V7.5.1: the password is checked (and audited) as at ``/auth/reauth``;
    the challenge is spent by any response; a replayed assertion, one made for the sign-in
    or for another site, and a cloned counter are refused."""
    key, headers, _ = enrolled(client, runtime)
    wrong = reauth_with_key(client, key, headers, password="not the password at all")
    assert wrong.status_code == 401
    assert problem_code(wrong) == "invalid-credentials"
    # The wrong password spent the challenge: the same assertion with the right one fails.
    options = client.post(REAUTH_OPTIONS, headers=headers).json()
    credential = key.get(options)
    client.post(REAUTH, json={"password": "nope", "credential": credential}, headers=headers)
    body = {"password": PASSWORD, "credential": credential}
    assert client.post(REAUTH, json=body, headers=headers).status_code == 401
    # Without options there is nothing to answer.
    assert client.post(REAUTH, json=body, headers=headers).status_code == 401

    options = client.post(REAUTH_OPTIONS, headers=headers).json()
    body = {"password": PASSWORD, "credential": key.get(options)}
    assert client.post(REAUTH, json=body, headers=headers).status_code == 200
    assert client.post(REAUTH, json=body, headers=headers).status_code == 401

    # An assertion made for a sign-in's challenge does not answer a re-authentication's.
    client.post(REAUTH_OPTIONS, headers=headers)
    login_assertion = key.get(assertion_options(client, password_step(client)))
    body = {"password": PASSWORD, "credential": login_assertion}
    assert client.post(REAUTH, json=body, headers=headers).status_code == 401
    for kwargs in ({"origin": "https://evil.test"}, {"rp_id": "evil.test"}, {"count": 1}):
        assert reauth_with_key(client, key, headers, **kwargs).status_code == 401
    assert reauth_with_key(client, key, headers, count=10).status_code == 200
    with runtime.sessions() as session:
        failures = session.scalars(
            select(AuditEvent).where(AuditEvent.event == str(AuditEventType.AUTH_REAUTH_FAILED))
        ).all()
        assert len(failures) == 9
        kinds = list(session.scalars(select(SecurityEvent.kind)))
        assert "webauthn_sign_count_regressed" in kinds


def test_reauthentication_with_another_users_key_is_refused(client, runtime):
    """V8.2.2: the options list only the caller's keys, and another user's key cannot
    answer them; a user without keys gets no options."""
    key, _, _ = enrolled(client, runtime)
    other_key, other_headers, _ = enrolled(client, runtime, "eve@example.com")
    options = client.post(REAUTH_OPTIONS, headers=other_headers).json()
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(other_key.credential_id)]
    body = {"password": PASSWORD, "credential": key.get(options)}
    assert client.post(REAUTH, json=body, headers=other_headers).status_code == 401
    assert reauth_with_key(client, other_key, other_headers).status_code == 200

    create_user(runtime, "keyless@example.com")
    keyless = bearer(client, "keyless@example.com")
    refused = client.post(REAUTH_OPTIONS, headers=keyless)
    assert refused.status_code == 409
    assert problem_code(refused) == "webauthn-not-enabled"
    assert client.post(REAUTH_OPTIONS).status_code == 401


def test_registration_needs_a_recent_sign_in_and_a_live_challenge(client, runtime, clock):
    """V7.5.1, V6.7.2: registering is a sensitive action; a registration challenge is
    single-use and lives five minutes."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    key = SoftKey()
    options = client.post(REGISTER_OPTIONS, headers=headers).json()
    clock.shift(timedelta(minutes=5, seconds=5))
    late = client.post(
        REGISTER, json={"credential": key.create(options), "name": "k"}, headers=headers
    )
    assert late.status_code == 409
    assert problem_code(late) == "webauthn-ceremony-not-started"

    options = client.post(REGISTER_OPTIONS, headers=headers).json()
    body = {"credential": key.create(options), "name": "k"}
    assert client.post(REGISTER, json=body, headers=headers).status_code == 201
    assert client.post(REGISTER, json=body, headers=headers).status_code == 409
    # The same key again, under a new challenge: already registered.
    options = client.post(REGISTER_OPTIONS, headers=headers).json()
    excluded = [c["id"] for c in options["excludeCredentials"]]
    assert excluded == [b64url(key.credential_id)]
    again = client.post(
        REGISTER, json={"credential": key.create(options), "name": "k"}, headers=headers
    )
    assert problem_code(again) == "webauthn-credential-exists"

    headers = access_headers(sign_in(client, key))
    clock.shift(timedelta(minutes=11))
    for response in (
        client.post(REGISTER_OPTIONS, headers=headers),
        client.post(REGISTER, json=body, headers=headers),
        client.delete(f"{KEYS}/1", headers=headers),
    ):
        assert response.status_code == 403
        assert problem_code(response) == "reauthentication-required"
    assert client.get(KEYS, headers=headers).status_code == 200


def test_the_login_challenge_expires_and_is_bound_to_its_sign_in(client, runtime, clock):
    """V6.7.2, V6.5.1: assertion options live five minutes, and answer only the sign-in step
    that asked for them."""
    key, _, _ = enrolled(client, runtime)
    mfa_token = password_step(client)
    options = assertion_options(client, mfa_token)
    other = password_step(client)
    bound = client.post(LOGIN, json={"mfa_token": other, "credential": key.get(options)})
    assert bound.status_code == 401
    clock.shift(timedelta(minutes=5, seconds=5))
    late = client.post(LOGIN, json={"mfa_token": mfa_token, "credential": key.get(options)})
    assert late.status_code == 401


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"id": "x"},
        {"id": "!!", "rawId": "!!", "type": "public-key", "response": {}},
        {
            "id": "AA",
            "rawId": "AA",
            "type": "public-key",
            "response": {"clientDataJSON": "bm90IGpzb24", "attestationObject": "bm90IGNib3I"},
        },
        {
            "id": "AA",
            "rawId": "AA",
            "type": "nope",
            "response": {"clientDataJSON": "e30", "attestationObject": "oA", "transports": [1]},
        },
    ],
)
def test_malformed_responses_get_a_4xx_problem(client, runtime, credential):
    """R11, R17: garbage from the browser is a problem+json 4xx, never a 500."""
    key, headers, _ = enrolled(client, runtime)
    client.post(REGISTER_OPTIONS, headers=headers)
    refused = client.post(REGISTER, json={"credential": credential, "name": "k"}, headers=headers)
    assert refused.status_code == 400, refused.text
    assert problem_code(refused) == "invalid-webauthn-response"

    mfa_token = password_step(client)
    assertion_options(client, mfa_token)
    assertion = {**credential, "response": {**credential.get("response", {}), "signature": "AA"}}
    bad = client.post(LOGIN, json={"mfa_token": mfa_token, "credential": assertion})
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    assert sign_in(client, key).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k"},
        {"credential": [], "name": "k"},
        {"credential": {}, "name": ""},
        {"credential": {}, "name": "   "},
        {"credential": {}, "name": "k" * 65},
        {"credential": {}, "name": "k", "extra": 1},
    ],
)
def test_invalid_payloads_are_422(client, runtime, body):
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    response = client.post(REGISTER, json=body, headers=headers)
    assert response.status_code == 422, response.text


def test_login_options_for_a_totp_only_user_is_a_conflict(client, runtime):
    """A user whose second factor is an authenticator app gets no assertion options."""
    create_user(runtime, EMAIL)
    headers = bearer(client, EMAIL)
    secret = client.post("/api/v1/me/mfa/totp", headers=headers).json()["secret"]
    confirm = {"code": pyotp.TOTP(secret).now()}
    assert (
        client.post("/api/v1/me/mfa/totp/confirm", json=confirm, headers=headers).status_code == 200
    )
    refused = client.post(LOGIN_OPTIONS, json={"mfa_token": password_step(client)})
    assert refused.status_code == 409
    assert problem_code(refused) == "webauthn-not-enabled"


def test_the_password_step_names_webauthn_among_the_methods(client, runtime):
    """A client learns from the password step which second factors it can offer."""
    enrolled(client, runtime)
    response = login(client, EMAIL, PASSWORD)
    assert response.status_code == 200
    assert response.json()["methods"] == ["webauthn"]
