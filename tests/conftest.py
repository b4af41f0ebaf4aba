"""Shared fixtures: a fresh, migrated database per test on SQLite or PostgreSQL, Redis,
settings, the app and a client.

``PLEXUS_TEST_DATABASE=postgres`` runs the suite against the PostgreSQL on 127.0.0.1;
the default is SQLite. Under ``CI=true`` a test that needs PostgreSQL or Redis fails when
the server does not answer; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from plexus.app import create_app
from plexus.config import Settings, load_settings
from plexus.kit.logging import configure_logging
from plexus.runtime import Runtime, init_runtime
from plexus.schema import upgrade

CI = os.environ.get("CI", "").lower() == "true"
# In-process tests log through the production pipeline (JSON lines, redacted, plain
# tracebacks), as every Plexus process does, instead of structlog's default console
# renderer, whose rich tracebacks with local variables take seconds to render.
configure_logging("INFO")

BACKEND = os.environ.get("PLEXUS_TEST_DATABASE", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "PLEXUS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PLEXUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_AUDIT_KEY = "test-audit-key-" + "k" * 40
#: The other secrets a test process runs with; distinctive, so log greps can find them.
TEST_SECRETS = {
    "PLEXUS_PASSWORD_PEPPER": "test-pepper-" + "p" * 40,
    "PLEXUS_TOKEN_KEY": "test-token-key-" + "t" * 40,
    "PLEXUS_INDEX_KEY": "test-index-key-" + "i" * 40,
    # 32 bytes, base64: a valid master key whose text is still easy to grep for.
    "PLEXUS_MASTER_KEY": "testMasterKey" + "M" * 30 + "=",
}
ROOT = Path(__file__).resolve().parents[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail under CI, skip elsewhere, when a real server the test needs does not answer."""
    if _port_open(host, port):
        return
    message = f"{name} is not answering on {host}:{port}"
    if CI:
        pytest.fail(f"{message} (CI=true: this must not be skipped)")
    pytest.skip(message)


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once per test process, copied for each test."""
    if BACKEND == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        name = f"plexus_tpl_{_worker_id()}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield name
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        return
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    yield str(path)


@pytest.fixture
def database_url(template_database: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the latest migration, private to this test."""
    if BACKEND == "postgres":
        name = f"plexus_t_{uuid.uuid4().hex[:16]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        return
    path = tmp_path / "plexus.db"
    shutil.copyfile(template_database, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def env_vars(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment a Plexus process of this test runs with."""
    return {
        "PLEXUS_ENV": "test",
        "PLEXUS_DATA_DIR": str(tmp_path / "var"),
        "PLEXUS_DATABASE_URL": database_url,
        "PLEXUS_AUDIT_KEY": TEST_AUDIT_KEY,
        **TEST_SECRETS,
        # The lowest cost bcrypt allows keeps hundreds of logins fast; tests about the cost
        # itself set their own.
        "PLEXUS_BCRYPT_ROUNDS": "4",
        "PLEXUS_QUEUE_NAME": f"t{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture
def settings(env_vars: dict[str, str]) -> Settings:
    return load_settings(environ=env_vars)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = init_runtime(settings)
    yield rt
    rt.dispose()


@pytest.fixture
def app(runtime: Runtime):
    return create_app(runtime.settings, runtime)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The application log (JSON lines) in memory for one test, then back to stderr."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    configure_logging("INFO")


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    """A clean environment for a child Plexus process: PATH and HOME, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV")}
    env.update(extra)
    return env


PLEXUS_CMD = [sys.executable, "-m", "plexus"]


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``plexus ARGS`` in a child process with only ``env`` (plus PATH and HOME)."""
    return subprocess.run(
        [*PLEXUS_CMD, *args],
        env=subprocess_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, run only the tests a database backend can change: those that use
    the test database (``database_url``, which every app, runtime and CLI fixture builds
    on) or that look at ``BACKEND`` themselves. The rest (providers against their fakes,
    rendering, pure units) ran already, identically, on SQLite.
    """
    if BACKEND != "postgres" or os.environ.get("PLEXUS_TEST_EVERYTHING_TWICE") == "1":
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        module = getattr(item, "module", None)
        aware = module is not None and (
            hasattr(module, "BACKEND") or hasattr(module, "PG_ADMIN_URL")
        )
        if aware or "database_url" in getattr(item, "fixturenames", ()):
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
