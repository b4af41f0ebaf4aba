"""DPoP (RFC 9449) proofs for atproto OAuth: one ES256 key per connection.

A proof is a JWT (``typ: dpop+jwt``, the public key in the ``jwk`` header) signed with
the connection's private key, with claims ``jti`` (unique), ``htm`` and ``htu`` (the
request's method and URL without query or fragment), ``iat``, the server's ``nonce``
once it has sent one (``DPoP-Nonce`` header), and ``ath`` (the SHA-256 of the access
token) on requests to the resource server. atproto servers require nonces: the first
request answers ``use_dpop_nonce`` with the nonce to use, and is sent again once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plexus.providers.base import ProviderNeedsReauth

if TYPE_CHECKING:
    import httpx

NONCE_ERROR: Final = "use_dpop_nonce"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_key_pem() -> str:
    """A fresh P-256 private key, PKCS#8 PEM (kept sealed by the caller)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def token_hash(access_token: str) -> str:
    """``ath``: base64url of the SHA-256 of the access token."""
    return _b64url(hashlib.sha256(access_token.encode()).digest())


class DpopKey:
    """One connection's DPoP key, and the nonces servers handed it (per origin)."""

    def __init__(self, pem: str) -> None:
        try:
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
        except ValueError:
            raise ProviderNeedsReauth("the Bluesky connection's DPoP key is unreadable") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
            loaded.curve, ec.SECP256R1
        ):
            raise ProviderNeedsReauth("the Bluesky connection's DPoP key is not a P-256 key")
        self._key = loaded
        self.nonces: dict[str, str] = {}
        numbers = loaded.public_key().public_numbers()
        self.public_jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        parts = urlsplit(url)
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            "iat": int(time.time()),
        }
        nonce = self.nonces.get(self._origin(url))
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            claims["ath"] = token_hash(access_token)
        return jwt.encode(
            claims,
            self._key,
            algorithm="ES256",
            headers={"typ": "dpop+jwt", "jwk": self.public_jwk},
        )

    def learn_nonce(self, response: httpx.Response) -> bool:
        """Keep the server's ``DPoP-Nonce``; True when it is new (worth one retry)."""
        nonce: str | None = response.headers.get("dpop-nonce")
        if not nonce:
            return False
        origin = self._origin(str(response.request.url))
        changed = self.nonces.get(origin) != nonce
        self.nonces[origin] = nonce
        return changed


def asks_for_nonce(response: httpx.Response) -> bool:
    """Whether the server refused the proof for want of (a fresh) nonce."""
    if response.status_code not in {400, 401}:
        return False
    if NONCE_ERROR in response.headers.get("www-authenticate", ""):
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("error") == NONCE_ERROR)


class DpopAuth:
    """XRPC ``Authorizer`` for DPoP-bound access tokens: ``Authorization: DPoP <token>``
    and a proof with ``ath`` on every request; one retry when a nonce is demanded.
    """

    def __init__(self, key: DpopKey, access_token: str) -> None:
        self._key = key
        self._token = access_token

    def headers(self, method: str, url: str) -> dict[str, str]:
        return {
            "authorization": f"DPoP {self._token}",
            "dpop": self._key.proof(method, url, self._token),
        }

    def wants_retry(self, response: httpx.Response) -> bool:
        learned = self._key.learn_nonce(response)
        return learned and asks_for_nonce(response)
