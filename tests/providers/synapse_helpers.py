"""A real Matrix Synapse homeserver for the matrix provider's tests, and a recording,
fault-injecting reverse proxy in front of it.

``scripts/peers/synapse.sh`` installs the pinned ``matrix-synapse`` into its own virtualenv
under ``${XDG_CACHE_HOME:-~/.cache}/plexus/``; ``SynapseServer`` generates a config in a
temporary folder, tightens it for tests (loopback only, client API only, no federation, no
key servers, no metrics, generous rate limits), starts it on a free port and registers
users through the shared-secret admin API. ``MatrixProxy`` forwards every request to it
unchanged unless a fault is armed, which it answers in Matrix's own error format.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plexus.providers.testing import Fault

from fake_helpers import FakePlatform, _free_port

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from starlette.routing import BaseRoute

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "peers" / "synapse.sh"
#: Access tokens from password logins live this long, so one test can watch one expire.
TOKEN_LIFETIME_SECONDS = 12
#: Uploads above this size are refused (``M_TOO_LARGE``); small, so a test can exceed it.
MAX_UPLOAD_BYTES = 1024 * 1024
_GENEROUS = {"per_second": 1000, "burst_count": 1000}
_HOP_BY_HOP = frozenset(
    {
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "keep-alive",
        "accept-encoding",
    }
)


def synapse_version() -> str:
    """The version the install script pins (the one place it is written down)."""
    found = re.search(r'^SYNAPSE_VERSION="([^"]+)"', INSTALL_SCRIPT.read_text(), re.MULTILINE)
    assert found, f"no SYNAPSE_VERSION in {INSTALL_SCRIPT}"
    return found.group(1)


def synapse_python() -> Path | None:
    """The installed Synapse virtualenv's python, or None when it is not installed."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plexus"
    venv = cache / f"synapse-{synapse_version()}"
    python = venv / "bin" / "python"
    return python if (venv / ".plexus-installed").is_file() and python.exists() else None


def _child_env() -> dict[str, str]:
    # Synapse runs from its own virtualenv: keep this test process's Python paths out.
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@dataclass(frozen=True)
class MatrixUser:
    localpart: str
    user_id: str
    password: str
    access_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


class SynapseServer:
    """One Synapse process on 127.0.0.1, its config and data in ``workdir``."""

    def __init__(self, python: Path, workdir: Path) -> None:
        self.python = python
        self.workdir = workdir
        self.config_path = workdir / "homeserver.yaml"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_name = "localhost"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "synapse.out"
        self._shared_secret = ""
        self._admin: MatrixUser | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    # ---- life cycle

    def configure(self) -> None:
        subprocess.run(
            [
                str(self.python),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                self.server_name,
                "--config-path",
                str(self.config_path),
                "--generate-config",
                "--report-stats=no",
            ],
            cwd=self.workdir,
            env=_child_env(),
            check=True,
            capture_output=True,
            timeout=120,
        )
        # The generated file is YAML; Synapse's own PyYAML reads it, and JSON is YAML.
        dumped = subprocess.run(
            [
                str(self.python),
                "-c",
                "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
                str(self.config_path),
            ],
            env=_child_env(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        config: dict[str, Any] = json.loads(dumped.stdout)
        config["listeners"] = [
            {
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        config.update(
            {
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "enable_metrics": False,
                "report_stats": False,
                "presence": {"enabled": False},
                "url_preview_enabled": False,
                "enable_registration": False,
                # Fast password hashing: tests log in often; the cost is not under test.
                "bcrypt_rounds": 4,
                "refreshable_access_token_lifetime": f"{TOKEN_LIFETIME_SECONDS}s",
                "max_upload_size": str(MAX_UPLOAD_BYTES),
                "rc_message": _GENEROUS,
                "rc_registration": _GENEROUS,
                "rc_login": {
                    "address": _GENEROUS,
                    "account": _GENEROUS,
                    "failed_attempts": _GENEROUS,
                },
                "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
                "rc_joins_per_room": _GENEROUS,
                "rc_invites": {
                    "per_room": _GENEROUS,
                    "per_user": _GENEROUS,
                    "per_issuer": _GENEROUS,
                },
                "rc_admin_redaction": _GENEROUS,
                "rc_room_creation": _GENEROUS,
                "rc_media_create": _GENEROUS,
            }
        )
        self._shared_secret = str(config["registration_shared_secret"])
        self.config_path.write_text(json.dumps(config, indent=1))

    def start(self, timeout: float = 90) -> None:
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=_child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"Synapse exited with {self._process.returncode}:\n{self.log_tail()}"
                raise RuntimeError(msg)
            try:
                if self.http.get("/_matrix/client/versions", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        msg = f"Synapse did not answer within {timeout} s:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.http.close()

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in (self._log, self.workdir / "homeserver.log"):
            if path.exists():
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)

    # ---- users and rooms, set up directly (not through the provider under test)

    def register(self, localpart: str, *, admin: bool = False) -> MatrixUser:
        password = f"pw-{localpart}-{secrets.token_hex(8)}"
        nonce = self._json("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(
            self._shared_secret.encode(),
            b"\0".join(
                [
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            ),
            hashlib.sha1,
        ).hexdigest()
        answer = self._json(
            "POST",
            "/_synapse/admin/v1/register",
            json={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac,
            },
        )
        return MatrixUser(localpart, answer["user_id"], password, answer["access_token"])

    @property
    def admin(self) -> MatrixUser:
        if self._admin is None:
            self._admin = self.register(f"admin{secrets.token_hex(3)}", admin=True)
        return self._admin

    def create_room(
        self,
        owner: MatrixUser,
        *,
        alias: str | None = None,
        members: Iterable[MatrixUser] = (),
        power_levels: dict[str, Any] | None = None,
    ) -> str:
        members = list(members)
        body: dict[str, Any] = {
            "name": alias or "Plexus test room",
            "invite": [m.user_id for m in members],
        }
        if alias:
            body["room_alias_name"] = alias
        if power_levels:
            body["power_level_content_override"] = power_levels
        room_id: str = self._json("POST", "/_matrix/client/v3/createRoom", owner, json=body)[
            "room_id"
        ]
        for member in members:
            self._json(
                "POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}", member, json={}
            )
        return room_id

    def events(self, room_id: str, reader: MatrixUser, limit: int = 500) -> list[dict[str, Any]]:
        """The room's latest ``m.room.message`` events, newest first, as Synapse serves them."""
        chunk = self._json(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages",
            reader,
            params={"dir": "b", "limit": str(limit)},
        )["chunk"]
        return [e for e in chunk if e.get("type") == "m.room.message"]

    def texts(self, room_id: str, reader: MatrixUser) -> list[str]:
        """Bodies of the room's messages that are not redacted (redaction empties them)."""
        return [
            str(e["content"]["body"])
            for e in self.events(room_id, reader)
            if e.get("content", {}).get("body") is not None
        ]

    def whoami_status(self, token: str) -> tuple[int, dict[str, Any]]:
        response = self.http.get(
            "/_matrix/client/v3/account/whoami", headers={"authorization": f"Bearer {token}"}
        )
        return response.status_code, response.json()

    def devices(self, token: str) -> list[dict[str, Any]]:
        response = self.http.get(
            "/_matrix/client/v3/devices", headers={"authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        return list(response.json()["devices"])

    def limit_messages(self, user: MatrixUser, per_second: int, burst_count: int) -> None:
        """Give one user a tight message rate limit (Synapse's admin override)."""
        self._json(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user.user_id, safe='')}/override_ratelimit",
            self.admin,
            json={"messages_per_second": per_second, "burst_count": burst_count},
        )

    def download(self, mxc: str, reader: MatrixUser) -> bytes:
        server, media_id = mxc.removeprefix("mxc://").split("/", 1)
        response = self.http.get(
            f"/_matrix/client/v1/media/download/{server}/{media_id}", headers=reader.auth
        )
        response.raise_for_status()
        return response.content

    def _json(
        self, method: str, path: str, user: MatrixUser | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        headers = user.auth if user else {}
        response = self.http.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.text}"
        return dict(response.json())


def start_synapse(workdir: Path) -> Iterator[SynapseServer]:
    """Configure, start and finally stop a Synapse; the caller skips when not installed."""
    python = synapse_python()
    assert python is not None
    server = SynapseServer(python, workdir)
    server.configure()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class MatrixProxy(FakePlatform):
    """Forwards to a real Synapse, records what passes, and renders armed faults as
    Matrix errors (``errcode``/``error``, ``retry_after_ms``, ``soft_logout``).
    """

    def __init__(self, synapse: SynapseServer, room_id: str, reader: MatrixUser) -> None:
        super().__init__()
        self.synapse = synapse
        self.room_id = room_id
        self.reader = reader
        self._revoked: list[str] = []
        self._secrets: set[str] = set()

    def remember_secret(self, *values: str) -> None:
        self._secrets.update(v for v in values if v)

    def disarm(self) -> None:
        with self._lock:
            self._faults.clear()

    # ---- PlatformControls

    def published_texts(self) -> list[str]:
        return self.synapse.texts(self.room_id, self.reader)

    def revoked_tokens(self) -> list[str]:
        return list(self._revoked)

    def secrets_in_use(self) -> list[str]:
        return sorted(self._secrets)

    # ---- the server

    def fault_response(self, fault: Fault, request: Request) -> Response:
        del request
        if fault is Fault.RATE_LIMITED:
            # As older Synapse versions answer: the delay only in the body.
            return JSONResponse(
                {
                    "errcode": "M_LIMIT_EXCEEDED",
                    "error": "Too Many Requests",
                    "retry_after_ms": int(self.retry_after * 1000),
                },
                status_code=429,
            )
        if fault is Fault.UNAUTHORIZED:
            return JSONResponse(
                {
                    "errcode": "M_UNKNOWN_TOKEN",
                    "error": "Invalid access token passed.",
                    "soft_logout": False,
                },
                status_code=401,
            )
        if fault is Fault.REJECTED:
            return JSONResponse(
                {"errcode": "M_FORBIDDEN", "error": "You are not allowed to send that here."},
                status_code=403,
            )
        return JSONResponse(
            {"errcode": "M_UNKNOWN", "error": "Internal server error"}, status_code=500
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/{path:path}",
                self._forward,
                methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            )
        ]

    async def _forward(self, request: Request) -> Response:
        fault = await self.take_fault(request)
        if fault is not None:
            return fault
        body = await request.body()
        # The raw path: room ids and aliases must stay percent-encoded (``#`` above all).
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = self.synapse.url + raw_path.decode("ascii")
        if request.url.query:
            target += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with httpx.AsyncClient(timeout=30, trust_env=False) as upstream:
            answer = await upstream.request(request.method, target, content=body, headers=headers)
        self._note(request, body, answer)
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return Response(answer.content, status_code=answer.status_code, headers=out_headers)

    def _note(self, request: Request, body: bytes, answer: httpx.Response) -> None:
        path = request.url.path
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        self.remember_secret(token)
        if path.endswith(("/login", "/refresh")):
            for data in (_json_or_empty(body), _json_or_empty(answer.content)):
                self.remember_secret(
                    *(str(data.get(k) or "") for k in ("password", "access_token", "refresh_token"))
                )
        if path.endswith("/logout") and answer.status_code == 200 and token:
            self._revoked.append(token)


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
