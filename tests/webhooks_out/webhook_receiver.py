"""A local webhook receiver and a canary for the outbound webhook tests.

``Receiver`` is a Starlette app that records every request and answers 500 for as many
requests as it was told to fail, 302 to another URL on ``/redirect``, 204 otherwise.
``serve_on`` serves an app on a given loopback address (the receiver runs on 127.0.0.2,
the only network the tests allow-list; the canary on 127.0.0.1 must receive nothing).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import Iterator

RECEIVER_HOST = "127.0.0.2"
CANARY_HOST = "127.0.0.1"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: The receiver's clock when the request arrived (what it verifies the timestamp with).
    at: float = field(default_factory=time.time)


@dataclass
class Receiver:
    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0
    redirect_to: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                self.requests.append(
                    Received(request.url.path, dict(request.headers.items()), body)
                )
                failing = self.fail_next > 0
                self.fail_next = max(0, self.fail_next - 1)
            if request.url.path == "/redirect":
                return RedirectResponse(self.redirect_to, status_code=302)
            return Response(status_code=500 if failing else 204)

        return Starlette(
            routes=[
                Route("/hook", hook, methods=["POST"]),
                Route("/redirect", hook, methods=["POST"]),
            ]
        )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_on(app: Any, host: str) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a thread; yields its base URL."""
    port = _free_port(host)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "the receiver did not start"
            raise RuntimeError(msg)
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
