"""R1, V9: access tokens are EdDSA JWTs from our own key ring, validated strictly.

Every forged, altered, expired or misdirected token gets the same 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from plexus.auth.tokens import AUDIENCE
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import SigningKey

from auth_helpers import create_user, tokens

EMAIL = "ada@example.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _me(client, token: str):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def signed_in(client, runtime):
    create_user(runtime, EMAIL)
    body = tokens(client, EMAIL)
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return {"token": token, "header": header, "claims": claims, "refresh": body["refresh_token"]}


def _our_key(runtime):
    with unit_of_work(runtime.sessions) as session:
        return runtime.keyring.signing_key(session)


def _raw_sign(header: dict, claims: dict, key: Ed25519PrivateKey) -> str:
    """Sign by hand, so headers a library would refuse to write can be sent too."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def _sign(runtime, claims: dict, **header) -> str:
    kid, key = _our_key(runtime)
    return _raw_sign({"alg": "EdDSA", "kid": kid, "typ": "at+jwt", **header}, claims, key)


def _assert_refused(response):
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["type"] == "urn:plexus:problem:unauthorized"
    assert "Traceback" not in response.text


def test_a_valid_token_is_accepted(client, signed_in):
    response = _me(client, signed_in["token"])
    assert response.status_code == 200
    assert response.json()["email"] == EMAIL
    header, claims = signed_in["header"], signed_in["claims"]
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    assert {"iss", "aud", "sub", "exp", "nbf", "iat", "jti", "typ", "wid", "amr"} <= set(claims)
    assert claims["exp"] - claims["iat"] <= 900


@pytest.mark.parametrize("alg", ["none", "None", "nOnE", "NONE"])
def test_alg_none_in_any_casing_is_refused(client, signed_in, alg):
    """V9.1.2: an unsigned token is never accepted."""
    header = {**signed_in["header"], "alg": alg}
    token = f"{_segment(header)}.{_segment(signed_in['claims'])}."
    _assert_refused(_me(client, token))


@pytest.mark.parametrize("secret_form", ["raw", "jwks-json", "pem"])
def test_hs256_signed_with_our_public_key_is_refused(client, runtime, signed_in, secret_form):
    """V9.1.2: algorithm confusion (HMAC keyed with the public key) is refused."""
    jwks = client.get("/.well-known/jwks.json").json()
    kid = signed_in["header"]["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    raw = base64.urlsafe_b64decode(key["x"] + "==")
    _kid, private = _our_key(runtime)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = {"raw": raw, "jwks-json": json.dumps(key).encode(), "pem": pem}[secret_form]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": kid}
    signing_input = f"{_segment(header)}.{_segment(signed_in['claims'])}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    _assert_refused(_me(client, f"{signing_input}.{_b64(signature)}"))


def test_tampered_payload_is_refused(client, signed_in):
    """V9.1.1, V7.2.1: the signature covers the claims."""
    head, _payload, signature = signed_in["token"].split(".")
    claims = {**signed_in["claims"], "sub": str(int(signed_in["claims"]["sub"]) + 1)}
    _assert_refused(_me(client, f"{head}.{_segment(claims)}.{signature}"))


def test_flipped_signature_bit_is_refused(client, signed_in):
    head, payload, signature = signed_in["token"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 1
    _assert_refused(_me(client, f"{head}.{payload}.{_b64(bytes(raw))}"))


def test_unknown_kid_is_refused(client, signed_in):
    """V9.1.3: a key outside our ring verifies nothing."""
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(
        signed_in["claims"],
        stranger,
        algorithm="EdDSA",
        headers={"kid": "Zz9" * 7, "typ": "at+jwt"},
    )
    _assert_refused(_me(client, token))


@pytest.mark.parametrize("kid", ["../../dev/null", "/etc/passwd", "' OR '1'='1", "", 7])
def test_kid_injection_is_refused(client, runtime, signed_in, kid):
    """V9.1.3: ``kid`` is looked up in the ring, never used as a path or query."""
    token = _sign(runtime, signed_in["claims"], kid=kid)
    _assert_refused(_me(client, token))


@pytest.mark.parametrize("field", ["jwk", "jku", "x5u", "x5c"])
def test_embedded_key_or_key_url_is_refused(client, signed_in, field):
    """V9.1.3: keys named by the token itself are never fetched or trusted."""
    stranger = Ed25519PrivateKey.generate()
    public = stranger.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    values = {
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": _b64(public)},
        "jku": "https://evil.test/jwks.json",
        "x5u": "https://evil.test/cert.pem",
        "x5c": ["MIIB"],
    }
    token = jwt.encode(
        signed_in["claims"],
        stranger,
        algorithm="EdDSA",
        headers={"kid": signed_in["header"]["kid"], "typ": "at+jwt", field: values[field]},
    )
    _assert_refused(_me(client, token))


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("expired", {"exp": -120}),
        ("not yet valid", {"nbf": 600}),
        ("wrong audience", {"aud": "someone-else"}),
        ("wrong issuer", {"iss": "https://evil.test"}),
        ("not an access token", {"typ": "refresh"}),
    ],
)
def test_claims_are_enforced(client, runtime, signed_in, case, change):
    """V9.2.1, V9.2.2, V9.2.3: exp, nbf, aud, iss and typ are all checked."""
    claims = dict(signed_in["claims"])
    for key, value in change.items():
        claims[key] = int(_now().timestamp()) + value if key in ("exp", "nbf") else value
    _assert_refused(_me(client, _sign(runtime, claims)))


@pytest.mark.parametrize("claim", ["exp", "aud", "iss", "sub", "jti", "sid", "wid", "nbf"])
def test_missing_claim_is_refused(client, runtime, signed_in, claim):
    """V9.2.1, V9.2.3: a token without ``exp`` (or any other required claim) is refused."""
    claims = {k: v for k, v in signed_in["claims"].items() if k != claim}
    _assert_refused(_me(client, _sign(runtime, claims)))


def test_header_type_must_be_access_token(client, runtime, signed_in):
    _assert_refused(_me(client, _sign(runtime, signed_in["claims"], typ="JWT")))


def test_refresh_token_is_not_an_access_token(client, signed_in):
    """V9.2.2: the refresh token cannot be used as a bearer token."""
    _assert_refused(_me(client, signed_in["refresh"]))


def test_access_token_is_not_a_refresh_token(client, signed_in):
    """V9.2.2, the reverse: an access token presented to /auth/refresh is refused."""
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": signed_in["token"]})
    # A JWT is longer than any refresh token, so the body check refuses it first.
    assert response.status_code == 422
    truncated = signed_in["token"][:100]
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": truncated})
    assert response.status_code == 401


def test_garbage_tokens_are_refused(client, signed_in):
    for token in ("x", "a.b.c", "....", "e30.e30.", signed_in["token"] + "x"):
        _assert_refused(_me(client, token))


def test_rotation_keeps_old_tokens_until_grace_then_refuses_them(client, runtime, signed_in):
    """V11.2.2, R22: after rotation, old tokens verify until the old key's grace ends; a
    token signed by a retired-and-expired key is refused even with a valid ``exp``."""
    old_kid = signed_in["header"]["kid"]
    _old, old_key = _our_key(runtime)
    with unit_of_work(runtime.sessions) as session:
        new_kid = runtime.keyring.rotate(session)
    runtime.keyring.forget()
    assert _me(client, signed_in["token"]).status_code == 200
    fresh = tokens(client, EMAIL)["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {old_kid, new_kid}

    long_ago = _now() - timedelta(hours=2)
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(SigningKey).where(SigningKey.kid == old_kid).values(retired_at=long_ago)
        )
    runtime.keyring.forget()
    claims = {**signed_in["claims"], "exp": int(_now().timestamp()) + 600}
    forged = jwt.encode(
        claims, old_key, algorithm="EdDSA", headers={"kid": old_kid, "typ": "at+jwt"}
    )
    _assert_refused(_me(client, forged))
    kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {new_kid}
    assert _me(client, fresh).status_code == 200


def test_jwks_publishes_public_keys_only(client, signed_in):
    body = client.get("/.well-known/jwks.json").json()
    assert body["keys"]
    for key in body["keys"]:
        assert set(key) == {"kty", "crv", "alg", "use", "kid", "x"}
        assert key["alg"] == "EdDSA"
        assert key["crv"] == "Ed25519"


def test_audience_constant_is_what_tokens_carry(signed_in):
    assert signed_in["claims"]["aud"] == AUDIENCE


def test_cli_rotates_the_signing_key(client, runtime, signed_in, env_vars):
    """R22: ``plexus keys rotate-jwt`` makes a new active key; old tokens still verify."""
    from conftest import run_cli

    result = run_cli(["keys", "rotate-jwt"], env_vars)
    assert result.returncode == 0, result.stderr
    runtime.keyring.forget()
    fresh = tokens(client, EMAIL)["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] != signed_in["header"]["kid"]
    assert jwt.get_unverified_header(fresh)["kid"] in result.stdout
    assert _me(client, signed_in["token"]).status_code == 200
    with unit_of_work(runtime.sessions) as session:
        rows = session.scalars(select(AuditEvent.event)).all()
    assert "auth:signing_key:rotated" in rows


@pytest.mark.parametrize("name", ["access_token", "token", "api_key", "jwt"])
def test_tokens_in_the_query_string_are_never_accepted(client, signed_in, name):
    """V14.2.1: credentials are read from the Authorization header only, never a URL."""
    response = client.get(f"/api/v1/me?{name}={signed_in['token']}")
    assert response.status_code == 401
