"""``plexus serve`` as a real child process, for the tests that need a listening server.

Logs go to files in the test's folder (a pipe could fill and stall the server) and are
shown when it fails to start. The server is stopped with SIGINT, then killed if it has not
exited, whatever the outcome, so a failing assertion never leaves a listener behind.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import subprocess
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from conftest import PLEXUS_CMD, subprocess_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (all held open while
    chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]


class Server:
    """One ``plexus serve`` child process, its logs in files (never a pipe that can fill)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.cwd = cwd
        tag = uuid.uuid4().hex[:8]
        self.stdout_path = cwd / f"serve-{tag}.out"
        self.stderr_path = cwd / f"serve-{tag}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*PLEXUS_CMD, "serve", *args],
                env=subprocess_env(env),
                cwd=cwd,
                stdout=out,
                stderr=err,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        out = self.stdout_path.read_text(errors="replace")
        return f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{self.stderr()[-4000:]}"

    def wait_until_answering(
        self,
        url: str,
        *,
        verify: ssl.SSLContext | bool = False,
        timeout: float = START_TIMEOUT,
    ) -> None:
        """Poll ``url`` until any HTTP answer arrives; fail if the process dies or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"plexus serve exited with {self.process.returncode} before answering\n"
                    + self.logs()
                )
            try:
                httpx.get(url, verify=verify, timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.1)
            else:
                return
        pytest.fail(f"plexus serve did not answer {url} within {timeout} s\n" + self.logs())

    def stop(self) -> None:
        """SIGINT, then kill if it has not exited within ``STOP_TIMEOUT``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[Server]:
    """``plexus serve ARGS`` until the block ends (the caller waits for what it needs)."""
    server = Server(args, env, cwd)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serving_on(port: int, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """``plexus serve --port PORT``, once ``/healthz`` answers; yields its base URL."""
    url = f"http://127.0.0.1:{port}"
    with serving(["--port", str(port)], env, cwd) as server:
        server.wait_until_answering(f"{url}/healthz")
        yield url
