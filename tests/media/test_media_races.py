"""Stored media bytes and their rows stay in step (R12), on SQLite and PostgreSQL:

- an upload whose transaction does not commit (here: its commit fails after the bytes
  were stored) leaves no unreferenced file, and never removes bytes another workspace's
  row uses;
- a deletion's clean-up and another workspace's upload of the same bytes never
  interleave: whichever comes second sees what the first did, so no row loses its file.

Each race is reproduced at its exact point with hooks in the storage: the hook holds the
first party at its critical step for ``WINDOW`` seconds, long enough for the other one to
finish its own steps if nothing kept it out (which is what happened before the lock).
"""

from __future__ import annotations

import hashlib
import io
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

from plexus.db import after_commit, after_rollback, unit_of_work
from plexus.media import service
from plexus.models.media import Media

from auth_helpers import sign_in

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

MEDIA = "/api/v1/media"
#: How long a hook holds one party at its critical step.
WINDOW = 1.0
#: How long a test waits for anything that must happen.
PATIENCE = 20.0


# --- helpers -----------------------------------------------------------------------------


def _png(colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(out, format="PNG")
    return out.getvalue()


def _files(runtime) -> list[Path]:
    root = runtime.settings.data_dir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rows(runtime) -> int:
    with unit_of_work(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Media)) or 0)


def _upload(client, who, body: bytes):
    return client.post(MEDIA, params={"filename": "a.png"}, content=body, headers=who.headers)


def _stored_bytes(runtime, sha: str) -> bytes | None:
    path = runtime.settings.data_dir / "media" / sha[:2] / sha
    return path.read_bytes() if path.exists() else None


class _HookedStorage:
    """The real storage, with a hook after each put and before each delete."""

    def __init__(
        self,
        inner: Any,
        on_put: Callable[[str], None] | None,
        on_delete: Callable[[str], None] | None,
    ) -> None:
        self.inner = inner
        self.on_put = on_put
        self.on_delete = on_delete

    @property
    def temp_dir(self) -> Path:
        return self.inner.temp_dir

    def put(self, key: str, source: Path) -> None:
        self.inner.put(key, source)
        if self.on_put is not None:
            self.on_put(key)

    def delete(self, key: str) -> None:
        if self.on_delete is not None:
            self.on_delete(key)
        self.inner.delete(key)

    def open(self, key: str):
        return self.inner.open(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)


def _hook_storage(monkeypatch, *, on_put=None, on_delete=None) -> None:
    real = service.storage_for
    monkeypatch.setattr(
        service, "storage_for", lambda settings: _HookedStorage(real(settings), on_put, on_delete)
    )


class _Thread(threading.Thread):
    """A thread whose exception, if any, the test re-raises."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # noqa: BLE001 - handed to the test to re-raise
            self.error = error

    def finish(self) -> None:
        self.join(PATIENCE)
        assert not self.is_alive(), "the thread did not finish"
        if self.error is not None:
            raise self.error


def _deleted_with_clean_up_pending(client, monkeypatch, who, body: bytes) -> str:
    """Upload ``body`` for ``who`` and delete it through the API, holding back the
    clean-up the deletion schedules (it runs after the response); returns the hash."""
    created = _upload(client, who, body)
    assert created.status_code == 201, created.text
    pending: list[str] = []
    monkeypatch.setattr(service, "forget_unreferenced", lambda _rt, sha: pending.append(sha))
    deleted = client.delete(f"{MEDIA}/{created.json()['id']}", headers=who.headers)
    assert deleted.status_code == 204
    monkeypatch.undo()
    assert pending == [created.json()["sha256"]]
    return pending[0]


@pytest.fixture
def alice(runtime, client):
    return sign_in(runtime, client, "alice@example.com")


@pytest.fixture
def bob(runtime, client):
    return sign_in(runtime, client, "bob@example.com")


# --- a failed commit leaves no file behind -------------------------------------------------
# (``log_stream``: the 500's traceback is logged as JSON, which is much faster to render.)


@contextmanager
def _commit_fails_after_a_put(runtime, monkeypatch) -> Iterator[list[str]]:
    """The commit of each transaction that stored bytes fails (as a lost connection or a
    conflict at COMMIT would); yields the keys stored."""
    stored: list[str] = []
    _hook_storage(monkeypatch, on_put=stored.append)
    failed: list[str] = []

    def fail(_connection) -> None:
        if len(stored) > len(failed):
            failed.append(stored[-1])
            raise OperationalError("COMMIT", None, Exception("server closed the connection"))

    event.listen(runtime.engine, "commit", fail)
    try:
        yield stored
    finally:
        event.remove(runtime.engine, "commit", fail)
        monkeypatch.undo()


def test_an_upload_whose_commit_fails_leaves_no_file(
    client, runtime, alice, monkeypatch, log_stream
):
    with _commit_fails_after_a_put(runtime, monkeypatch) as stored:
        response = _upload(client, alice, _png())
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert len(stored) == 1  # the bytes had been stored before the commit was tried
    assert _rows(runtime) == 0
    assert _files(runtime) == []  # neither the stored file nor a temporary one
    assert "after_rollback_failed" not in log_stream.getvalue()
    # The same upload, once the database commits again, works as usual.
    again = _upload(client, alice, _png())
    assert again.status_code == 201, again.text
    assert _stored_bytes(runtime, again.json()["sha256"]) is not None


def test_a_failed_commit_keeps_bytes_another_workspace_uses(
    client, runtime, alice, bob, monkeypatch, log_stream
):
    png = _png()
    theirs = _upload(client, bob, png)
    assert theirs.status_code == 201
    sha = theirs.json()["sha256"]
    with _commit_fails_after_a_put(runtime, monkeypatch):
        response = _upload(client, alice, png)
    assert response.status_code == 500, response.text
    assert _rows(runtime) == 1
    assert len(_files(runtime)) == 1
    content = client.get(f"{MEDIA}/{theirs.json()['id']}/content", headers=bob.headers)
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == sha


# --- a deletion's clean-up and an upload of the same bytes --------------------------------


def test_an_upload_waits_for_a_clean_up_that_found_the_bytes_unused(
    client, runtime, alice, bob, monkeypatch
):
    """The clean-up has found no row for the bytes and is about to remove them; Alice's
    upload of the same bytes must not store them (and commit its row) before that."""
    png = _png()
    sha = _deleted_with_clean_up_pending(client, monkeypatch, bob, png)
    steps: list[str] = []
    deciding, uploaded = threading.Event(), threading.Event()

    def before_delete(_key: str) -> None:
        deciding.set()
        uploaded.wait(WINDOW)  # an upload that is not kept out completes meanwhile
        steps.append("delete")

    _hook_storage(monkeypatch, on_put=lambda _key: steps.append("put"), on_delete=before_delete)
    clean_up = _Thread(lambda: service.forget_unreferenced(runtime, sha))
    clean_up.start()
    assert deciding.wait(PATIENCE)
    response = _upload(client, alice, png)
    uploaded.set()
    clean_up.finish()

    assert response.status_code == 201, response.text
    assert steps == ["delete", "put"]
    assert _stored_bytes(runtime, sha) == png
    content = client.get(f"{MEDIA}/{response.json()['id']}/content", headers=alice.headers)
    assert content.status_code == 200
    assert content.content == png


def test_a_clean_up_waits_for_an_upload_that_stored_the_bytes(
    client, runtime, alice, bob, monkeypatch
):
    """Alice's upload has stored the bytes and not yet committed its row; the clean-up of
    Bob's deletion must not find the bytes unused and remove them meanwhile."""
    png = _png()
    sha = _deleted_with_clean_up_pending(client, monkeypatch, bob, png)
    clean_ups: list[_Thread] = []
    finished_early: list[bool] = []

    def after_put(key: str) -> None:
        done = threading.Event()
        clean_up = _Thread(lambda: (service.forget_unreferenced(runtime, key), done.set()))
        clean_ups.append(clean_up)
        clean_up.start()
        finished_early.append(done.wait(WINDOW))  # a clean-up not kept out is done by now

    _hook_storage(monkeypatch, on_put=after_put)
    response = _upload(client, alice, png)
    [clean_up] = clean_ups
    clean_up.finish()

    assert response.status_code == 201, response.text
    assert finished_early == [False]
    assert _rows(runtime) == 1
    assert _stored_bytes(runtime, sha) == png
    content = client.get(f"{MEDIA}/{response.json()['id']}/content", headers=alice.headers)
    assert content.content == png


def test_a_clean_up_still_removes_bytes_nobody_uses(client, runtime, bob):
    png = _png()
    created = _upload(client, bob, png)
    assert client.delete(f"{MEDIA}/{created.json()['id']}", headers=bob.headers).status_code == 204
    assert _files(runtime) == []
    service.forget_unreferenced(runtime, created.json()["sha256"])  # again: nothing to do
    assert _files(runtime) == []


# --- the rollback hook itself ---------------------------------------------------------------


def _probe(session) -> None:
    session.execute(text("SELECT 1"))


def test_after_rollback_runs_only_when_the_transaction_does_not_commit(runtime, log_stream):
    ran: list[str] = []

    with unit_of_work(runtime.sessions) as session:
        after_rollback(session, lambda: ran.append("committed"))
        _probe(session)
    assert ran == []

    session = runtime.sessions()
    after_rollback(session, lambda: ran.append("rolled back"))
    after_commit(session, lambda: ran.append("must not run"))
    session.rollback()
    assert ran == ["rolled back"]

    after_rollback(session, lambda: ran.append("closed"))
    session.close()
    assert ran == ["rolled back", "closed"]

    # A savepoint rolling back is not the transaction rolling back.
    session = runtime.sessions()
    try:
        after_rollback(session, lambda: ran.append("outer"))
        nested = session.begin_nested()
        nested.rollback()
        assert ran == ["rolled back", "closed"]
        session.commit()
    finally:
        session.close()
    assert ran == ["rolled back", "closed"]

    # A callback that raises is logged; the others still run; nothing is raised.
    session = runtime.sessions()
    after_rollback(session, lambda: 1 / 0)
    after_rollback(session, lambda: ran.append("after the failure"))
    session.rollback()
    session.close()
    assert ran[-1] == "after the failure"
    assert "after_rollback_failed" in log_stream.getvalue()


def test_after_rollback_runs_when_the_commit_fails(runtime):
    ran: list[str] = []

    def fail(_connection) -> None:
        raise OperationalError("COMMIT", None, Exception("server closed the connection"))

    def work() -> None:
        with unit_of_work(runtime.sessions) as session:
            after_rollback(session, lambda: ran.append("rolled back"))
            after_commit(session, lambda: ran.append("must not run"))
            _probe(session)

    event.listen(runtime.engine, "commit", fail)
    try:
        with pytest.raises(OperationalError):
            work()
    finally:
        event.remove(runtime.engine, "commit", fail)
    assert ran == ["rolled back"]
