"""A fake HashiCorp Vault serving the transit secrets engine endpoints Plexus uses.

It follows the documented API: ``POST /v1/<mount>/keys/<name>`` (create),
``GET /v1/<mount>/keys/<name>`` (read), ``POST /v1/<mount>/keys/<name>/rotate``,
``POST /v1/<mount>/keys/<name>/config`` (``min_decryption_version``),
``POST /v1/<mount>/encrypt|decrypt|rewrap/<name>``. Keys are versioned; ciphertexts are
``vault:v<N>:<base64>``; every request needs ``X-Vault-Token``; errors answer
``{"errors": [...]}`` with Vault's status codes. Each key version is a real AES-256-GCM
key, so a ciphertext only decrypts under the version that made it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_CIPHERTEXT = re.compile(r"^vault:v(\d+):([A-Za-z0-9+/=]+)$")


@dataclass
class TransitKey:
    name: str
    versions: dict[int, bytes] = field(default_factory=dict)
    created: dict[int, str] = field(default_factory=dict)
    min_decryption_version: int = 1

    @property
    def latest(self) -> int:
        return max(self.versions)

    def add_version(self) -> None:
        version = (max(self.versions) + 1) if self.versions else 1
        self.versions[version] = AESGCM.generate_key(bit_length=256)
        self.created[version] = datetime.now(UTC).isoformat()


class VaultError(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(errors)
        self.status = status
        self.errors = list(errors)


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]


class FakeTransit:
    """The fake's state; ``app`` is the ASGI application to serve."""

    def __init__(self, token: str, mount: str = "transit") -> None:
        self.token = token
        self.mount = mount
        self.keys: dict[str, TransitKey] = {}
        self.calls: list[Call] = []
        #: operation ("rewrap", "encrypt", ...) -> how many more calls succeed before the
        #: fake answers 503 (sealed) to every further one.
        self.outage_after: dict[str, int] = {}
        self.app = Starlette(
            routes=[Route("/v1/{path:path}", self._dispatch, methods=["GET", "POST", "PUT"])],
        )

    # Test controls -------------------------------------------------------------------

    def create_key(self, name: str) -> TransitKey:
        key = TransitKey(name)
        key.add_version()
        self.keys[name] = key
        return key

    def calls_to(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.path.startswith(f"{self.mount}/{operation}/")]

    # The API -------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        path = request.path_params["path"]
        body: dict[str, Any] = {}
        if request.method != "GET":
            raw = await request.body()
            if raw:
                try:
                    body = dict(await request.json())
                except ValueError:
                    return _errors(400, "failed to parse JSON input")
        self.calls.append(Call(request.method, path, body))
        if request.headers.get("X-Vault-Token") != self.token:
            return _errors(403, "permission denied")
        operation = path.removeprefix(f"{self.mount}/").split("/", 1)[0]
        if operation in self.outage_after:
            if self.outage_after[operation] <= 0:
                return _errors(503, "Vault is sealed")
            self.outage_after[operation] -= 1
        try:
            return self._route(request.method, path, body)
        except VaultError as exc:
            return _errors(exc.status, *exc.errors)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> Response:
        prefix = f"{self.mount}/"
        if not path.startswith(prefix):
            raise VaultError(404, f"no handler for route '{path}'")
        parts = path[len(prefix) :].split("/")
        if parts[0] == "keys" and len(parts) in (2, 3):
            return self._key_operation(method, parts[1:], body)
        if method != "GET" and len(parts) == 2:
            return _data(self._data_operation(parts[0], self._key(parts[1]), body))
        raise VaultError(405, "unsupported operation")

    def _key_operation(self, method: str, parts: list[str], body: dict[str, Any]) -> Response:
        match (method, parts):
            case ("POST" | "PUT", [name]):
                if name not in self.keys:
                    self.create_key(name)
                return Response(status_code=204)
            case ("GET", [name]):
                return _data(self._describe(self._key(name)))
            case ("POST" | "PUT", [name, "rotate"]):
                key = self._key(name)
                key.add_version()
                return _data(self._describe(key))
            case ("POST" | "PUT", [name, "config"]):
                key = self._key(name)
                wanted = int(body.get("min_decryption_version", key.min_decryption_version))
                if not 1 <= wanted <= key.latest:
                    raise VaultError(400, "cannot set min decryption version above the latest")
                key.min_decryption_version = wanted
                return _data(self._describe(key))
        raise VaultError(405, "unsupported operation")

    def _data_operation(self, operation: str, key: TransitKey, body: dict[str, Any]) -> dict:
        if operation == "encrypt":
            return self._encrypt(key, _plaintext(body))
        if operation == "decrypt":
            plaintext = self._decrypt(key, body.get("ciphertext"))
            return {"plaintext": base64.b64encode(plaintext).decode()}
        if operation == "rewrap":
            return self._encrypt(key, self._decrypt(key, body.get("ciphertext")))
        raise VaultError(405, "unsupported operation")

    def _key(self, name: str) -> TransitKey:
        key = self.keys.get(name)
        if key is None:
            raise VaultError(400, "encryption key not found")
        return key

    @staticmethod
    def _describe(key: TransitKey) -> dict[str, Any]:
        return {
            "name": key.name,
            "type": "aes256-gcm96",
            "latest_version": key.latest,
            "min_decryption_version": key.min_decryption_version,
            "min_encryption_version": 0,
            "keys": {str(v): created for v, created in key.created.items()},
            "deletion_allowed": False,
            "derived": False,
            "exportable": False,
            "supports_encryption": True,
            "supports_decryption": True,
        }

    @staticmethod
    def _encrypt(key: TransitKey, plaintext: bytes) -> dict[str, Any]:
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key.versions[key.latest]).encrypt(nonce, plaintext, None)
        ciphertext = f"vault:v{key.latest}:{base64.b64encode(sealed).decode()}"
        return {"ciphertext": ciphertext, "key_version": key.latest}

    @staticmethod
    def _decrypt(key: TransitKey, ciphertext: object) -> bytes:
        match = _CIPHERTEXT.match(ciphertext) if isinstance(ciphertext, str) else None
        if match is None:
            raise VaultError(400, "invalid ciphertext: no prefix")
        version = int(match.group(1))
        if version < key.min_decryption_version:
            too_old = "ciphertext or signature version is disallowed by policy (too old)"
            raise VaultError(400, too_old)
        if version not in key.versions:
            raise VaultError(400, "invalid key version")
        raw = base64.b64decode(match.group(2))
        try:
            return AESGCM(key.versions[version]).decrypt(raw[:12], raw[12:], None)
        except (InvalidTag, ValueError):
            raise VaultError(400, "cipher: message authentication failed") from None


def _plaintext(body: dict[str, Any]) -> bytes:
    value = body.get("plaintext")
    if not isinstance(value, str):
        raise VaultError(400, "missing plaintext to encrypt")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VaultError(400, "failed to base64-decode plaintext") from None


def _data(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"request_id": os.urandom(8).hex(), "data": data})


def _errors(status: int, *errors: str) -> JSONResponse:
    return JSONResponse({"errors": list(errors)}, status_code=status)
