"""Local HTTP servers that stand in for closed platforms in the tests.

``FakePlatform`` is the base of every fake: a Starlette app (subclasses add the platform's
documented routes) that records each request and can be armed with faults, which the
subclass renders in the platform's own error format. ``running(fake)`` serves it with
uvicorn on a free loopback port in a thread and yields its base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from plexus.providers.testing import FAKE_RETRY_AFTER, Fault

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.routing import BaseRoute

#: How long a ``Fault.TIMEOUT`` answer is held back; providers under test wait less.
TIMEOUT_DELAY = 3.0


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class FakePlatform:
    """Records requests, holds armed faults; subclasses define ``routes()`` and how each
    fault looks on that platform (``fault_response``)."""

    retry_after = FAKE_RETRY_AFTER

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.base_url = ""

    # ---- controls the contract tests use

    def arm(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def published_texts(self) -> list[str]:
        raise NotImplementedError

    def revoked_tokens(self) -> list[str]:
        return []

    def secrets_in_use(self) -> list[str]:
        return []

    # ---- for subclasses

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def fault_response(self, fault: Fault, request: Request) -> Response:
        """The platform's documented answer for ``fault`` (TIMEOUT is handled here)."""
        del request
        statuses = {
            Fault.RATE_LIMITED: 429,
            Fault.SERVER_ERROR: 500,
            Fault.UNAUTHORIZED: 401,
            Fault.REJECTED: 400,
        }
        return JSONResponse({"error": fault.value}, status_code=statuses[fault])

    async def take_fault(self, request: Request) -> Response | None:
        """Call at the top of an API route: the armed fault's response, or None."""
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is None:
            return None
        if fault is Fault.TIMEOUT:
            await asyncio.sleep(TIMEOUT_DELAY)
            return JSONResponse({"late": True}, status_code=504)
        return self.fault_response(fault, request)

    def requests_to(self, path_part: str) -> list[Recorded]:
        return [r for r in self.requests if path_part in r.path]

    def app(self) -> Starlette:
        fake = self

        class _Recorder:
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    await self.app(scope, receive, send)
                    return
                chunks: list[bytes] = []
                more = True
                while more:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
                body = b"".join(chunks)
                fake.requests.append(
                    Recorded(
                        method=scope["method"],
                        path=scope["path"],
                        query=scope.get("query_string", b"").decode(),
                        headers={k.decode(): v.decode() for k, v in scope["headers"]},
                        body=body,
                    )
                )
                sent = False

                async def replay() -> dict[str, Any]:
                    nonlocal sent
                    if sent:
                        return await receive()
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}

                await self.app(scope, replay, send)

        app = Starlette(routes=self.routes())
        app.add_middleware(_Recorder)
        return app


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free 127.0.0.1 port in a thread; yields the base URL."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "the fake platform server did not start"
            raise RuntimeError(msg)
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def running(fake: FakePlatform) -> Iterator[str]:
    """Serve ``fake``; sets and yields its base URL."""
    with serve_app(fake.app()) as url:
        fake.base_url = url
        yield url
