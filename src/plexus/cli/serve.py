"""``plexus serve`` (the web app, and in development its worker too) and ``plexus worker``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import typer
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from plexus import schema
from plexus.app import create_app
from plexus.audit.events import Actor, AuditEventType
from plexus.cli.admin import first_run_admin
from plexus.cli.common import fail, migration_errors, runtime_or_exit, vault_or_exit
from plexus.config import Environment
from plexus.db import unit_of_work
from plexus.kit.logging import get_logger
from plexus.redirect import HTTPSRedirectApp
from plexus.runtime import Runtime
from plexus.worker import EmbeddedConsumer, huey, load_tasks

#: Modern AEAD suites with forward secrecy for TLS 1.2 (TLS 1.3 suites are always AEAD).
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"
MAX_HEADER_BYTES: Final = 16_384

log = get_logger("plexus.serve")


def _tls_context(_config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol plus a deadline on receiving request headers.

    uvicorn times out idle keep-alive connections but not a client that trickles its
    headers (slowloris); this closes such a connection after ``header_timeout`` seconds
    from connecting, or from the first byte of a request, without complete headers.
    """

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


class _FollowerServer(uvicorn.Server):
    """A second listener that stops when the main one does and leaves signals to it."""

    def __init__(self, config: uvicorn.Config, leader: uvicorn.Server) -> None:
        super().__init__(config)
        self.leader = leader

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def on_tick(self, counter: int) -> bool:
        return self.leader.should_exit or await super().on_tick(counter)


def _prepare_database(rt: Runtime) -> None:
    if rt.settings.env is Environment.DEVELOPMENT:
        with migration_errors():
            schema.upgrade(rt.engine, settings=rt.settings)
    elif not schema.is_current(rt.engine):
        raise fail("the database schema is not at the latest migration: run `plexus migrate`")
    with unit_of_work(rt.sessions) as session:
        rt.audit.record(
            session,
            AuditEventType.SYSTEM_SERVICE_STARTED,
            Actor.system("serve"),
            context={"env": str(rt.settings.env), "tls": rt.settings.tls_enabled},
        )


def _uvicorn_config(app: Any, host: str, port: int, rt: Runtime) -> uvicorn.Config:
    settings = rt.settings
    tls: dict[str, Any] = {}
    if settings.tls_enabled:
        tls = {
            "ssl_certfile": str(settings.tls_cert_file),
            "ssl_keyfile": str(settings.tls_key_file),
            "ssl_context_factory": _tls_context,
        }
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # Plexus resolves trusted proxies itself (RequestContext).
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=10,
        http=type(
            "ConfiguredHeaderDeadlineProtocol",
            (HeaderDeadlineProtocol,),
            {"header_timeout": settings.header_timeout_seconds},
        ),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        lifespan="on",
        **tls,
    )


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    redirect_http: Annotated[
        int | None,
        typer.Option(help="Also listen on this port over plain HTTP, redirecting UI paths."),
    ] = None,
    worker_threads: Annotated[
        int, typer.Option(help="In development: worker threads run in this process.")
    ] = 2,
) -> None:
    """Run the Plexus web app (in development also its worker, so one command runs all)."""
    given = {"host": host, "port": port, "tls_cert_file": tls_cert, "tls_key_file": tls_key}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    rt = runtime_or_exit(overrides, check_vault=False)
    settings = rt.settings
    if redirect_http is not None and not settings.tls_enabled:
        raise fail("--redirect-http needs --tls-cert and --tls-key", code=2)
    _prepare_database(rt)
    vault_or_exit(rt)
    first_run_admin(rt)
    app = create_app(settings, rt)
    main = uvicorn.Server(_uvicorn_config(app, settings.host, settings.port, rt))
    servers: list[uvicorn.Server] = [main]
    if redirect_http is not None:
        redirect = HTTPSRedirectApp(settings.port, settings.public_url)
        config = _uvicorn_config(redirect, settings.host, redirect_http, rt)
        config.ssl_certfile = config.ssl_keyfile = None
        config.ssl_context_factory = None
        servers.append(_FollowerServer(config, main))
    consumer = None
    if settings.env is Environment.DEVELOPMENT and worker_threads > 0:
        load_tasks()
        consumer = EmbeddedConsumer(huey, workers=worker_threads, worker_type="thread")
        consumer.start()
    log.info(
        "serving",
        host=settings.host,
        port=settings.port,
        tls=settings.tls_enabled,
        env=str(settings.env),
        redirect_http=redirect_http,
        embedded_worker=consumer is not None,
    )

    async def run_all() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    try:
        asyncio.run(run_all())
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)


def worker(
    threads: Annotated[int, typer.Option(help="Worker threads.")] = 4,
) -> None:
    """Run the background job worker (as many as you like, on as many machines)."""
    rt = runtime_or_exit()
    if not schema.is_current(rt.engine):
        raise fail("the database schema is not at the latest migration: run `plexus migrate`")
    load_tasks()
    log.info("worker_starting", threads=threads, redis=rt.settings.redis_url is not None)
    # Catch up at once (publications due, or left behind by a worker that died) rather
    # than at the dispatcher's next round.
    from plexus.publishing.tasks import run_dispatcher

    run_dispatcher()
    huey.create_consumer(workers=threads, worker_type="thread", periodic=True).run()
