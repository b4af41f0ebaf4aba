"""The tamper-evident audit chain, from the outside: record events, tamper with the rows
the way someone with database access would, and check ``plexus audit verify`` notices and
names the first broken row.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from plexus.audit.events import Actor, AuditEventType, AuditResult, Target
from plexus.audit.service import AuditService
from plexus.db import unit_of_work
from plexus.models.audit import AuditChainHead, AuditEvent

from conftest import BACKEND, run_cli

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from plexus.runtime import Runtime

WORKSPACE = 7
WS_CHAIN = f"workspace:{WORKSPACE}"
INSTANCE_EVENTS = 5
WS_EVENTS = 4
CLI_TIMEOUT = 90

#: Every column of a row except its id: what a reordering swaps between two rows.
CONTENT_COLUMNS = (
    "chain",
    "workspace_id",
    "seq",
    "occurred_at",
    "event",
    "actor_type",
    "actor_id",
    "target_type",
    "target_id",
    "result",
    "ip",
    "request_id",
    "context",
    "key_id",
    "prev_mac",
    "mac",
)


@dataclass(frozen=True, slots=True)
class Chains:
    """Row ids of the populated chains, indexed by seq - 1."""

    instance: list[int]
    workspace: list[int]


def _populate(runtime: Runtime) -> Chains:
    """Interleave events of the instance chain and of workspace 7's chain.

    Interleaving makes row ids differ from seqs, so an assertion on "row id N" cannot be
    satisfied by a seq by accident.
    """
    instance: list[int] = []
    workspace: list[int] = []
    for i in range(INSTANCE_EVENTS):
        with unit_of_work(runtime.sessions) as session:
            row = runtime.audit.record(
                session,
                AuditEventType.SYSTEM_SERVICE_STARTED,
                Actor.system("test"),
                context={"i": i},
            )
            instance.append(row.id)
        if i < WS_EVENTS:
            with unit_of_work(runtime.sessions) as session:
                row = runtime.audit.record(
                    session,
                    AuditEventType.SYSTEM_SCHEMA_MIGRATED,
                    Actor("user", f"u{i}"),
                    target=Target("workspace", str(WORKSPACE)),
                    result=AuditResult.SUCCESS if i % 2 else AuditResult.DENIED,
                    context={"step": i, "note": f"workspace event {i}"},
                    workspace_id=WORKSPACE,
                    ip="192.0.2.10",
                )
                workspace.append(row.id)
    return Chains(instance=instance, workspace=workspace)


def _run_verify(env_vars: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(["audit", "verify"], env_vars, timeout=CLI_TIMEOUT)


def _broken_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("BROKEN")]


def _outcomes(runtime: Runtime) -> list[AuditEvent]:
    """The verify outcomes recorded in the instance chain, oldest first."""
    names = (str(AuditEventType.AUDIT_CHAIN_VERIFIED), str(AuditEventType.AUDIT_CHAIN_BROKEN))
    with unit_of_work(runtime.sessions) as session:
        statement = (
            select(AuditEvent)
            .where(AuditEvent.chain == "instance", AuditEvent.event.in_(names))
            .order_by(AuditEvent.seq)
        )
        return list(session.scalars(statement))


def _bypass_append_only(conn: Connection) -> None:
    """Take the append-only trigger out of the way for this tampering transaction.

    On SQLite anyone who can write the file can drop the trigger, so there it is a guard
    against mistakes, not the proof: the MAC chain is. On PostgreSQL a superuser can stop
    triggers firing for the session (replica role).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))


# --- tampering cases: each changes workspace 7's chain and says what verify must name --------


@dataclass(frozen=True, slots=True)
class Expected:
    seq: int
    row_id: int | None  # None: the break is at the end of the chain (found through the head)
    reason: str


def _edit_result(conn: Connection, chains: Chains) -> Expected:
    target = chains.workspace[2]  # recorded as "denied"
    changed = conn.execute(
        text("UPDATE audit_events SET result = 'success' WHERE id = :id"), {"id": target}
    )
    assert changed.rowcount == 1
    return Expected(seq=3, row_id=target, reason="edited")


def _edit_context(conn: Connection, chains: Chains) -> Expected:
    target = chains.workspace[2]
    forged = json.dumps({"note": "nothing happened here", "step": 2}, separators=(",", ":"))
    conn.execute(
        text("UPDATE audit_events SET context = :context WHERE id = :id"),
        {"id": target, "context": forged},
    )
    return Expected(seq=3, row_id=target, reason="edited")


def _delete_middle(conn: Connection, chains: Chains) -> Expected:
    conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": chains.workspace[1]})
    return Expected(seq=3, row_id=chains.workspace[2], reason="deleted")


def _delete_first(conn: Connection, chains: Chains) -> Expected:
    conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": chains.workspace[0]})
    return Expected(seq=2, row_id=chains.workspace[1], reason="deleted")


def _delete_last(conn: Connection, chains: Chains) -> Expected:
    conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": chains.workspace[-1]})
    return Expected(seq=WS_EVENTS, row_id=None, reason="deleted")


def _delete_last_and_rewind_head(conn: Connection, chains: Chains) -> Expected:
    """Truncate the tail and move the head back onto the new last row (without the key)."""
    conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": chains.workspace[-1]})
    new_last = conn.execute(
        text("SELECT seq, mac FROM audit_events WHERE id = :id"), {"id": chains.workspace[-2]}
    ).one()
    conn.execute(
        text("UPDATE audit_chain_heads SET seq = :seq, mac = :mac WHERE chain = :chain"),
        {"seq": new_last.seq, "mac": new_last.mac, "chain": WS_CHAIN},
    )
    return Expected(seq=WS_EVENTS - 1, row_id=None, reason="head was edited")


def _swap_rows(conn: Connection, chains: Chains) -> Expected:
    """Swap every column but the id between seq 2 and seq 3: the two rows change places."""
    first, second = chains.workspace[1], chains.workspace[2]
    columns = ", ".join(CONTENT_COLUMNS)
    rows = {
        row["id"]: row
        for row in conn.execute(
            text(f"SELECT id, {columns} FROM audit_events WHERE id IN (:a, :b)"),  # noqa: S608
            {"a": first, "b": second},
        ).mappings()
    }
    assignments = ", ".join(f"{c} = :{c}" for c in CONTENT_COLUMNS)
    update = text(f"UPDATE audit_events SET {assignments} WHERE id = :id")  # noqa: S608
    # Park the first row on a free seq so (chain, seq) stays unique while swapping.
    conn.execute(text("UPDATE audit_events SET seq = -1 WHERE id = :id"), {"id": first})
    conn.execute(update, {**{c: rows[first][c] for c in CONTENT_COLUMNS}, "id": second})
    conn.execute(update, {**{c: rows[second][c] for c in CONTENT_COLUMNS}, "id": first})
    # Walking by seq now meets the higher id first; the lower id comes after it at seq 3.
    return Expected(seq=3, row_id=first, reason="reordered")


def _forge_appended_row(conn: Connection, chains: Chains) -> Expected:
    """Append a row (INSERT is allowed) that links to the last one but has a made-up MAC."""
    last = (
        conn.execute(
            text(f"SELECT {', '.join(CONTENT_COLUMNS)} FROM audit_events WHERE id = :id"),  # noqa: S608
            {"id": chains.workspace[-1]},
        )
        .mappings()
        .one()
    )
    values = {**last, "seq": last["seq"] + 1, "prev_mac": last["mac"], "mac": "f" * 64}
    names = ", ".join(values)
    placeholders = ", ".join(f":{k}" for k in values)
    conn.execute(
        text(f"INSERT INTO audit_events ({names}) VALUES ({placeholders})"),  # noqa: S608
        values,
    )
    forged_id = conn.execute(
        text("SELECT id FROM audit_events WHERE chain = :chain AND seq = :seq"),
        {"chain": WS_CHAIN, "seq": values["seq"]},
    ).scalar_one()
    return Expected(seq=WS_EVENTS + 1, row_id=forged_id, reason="edited")


TAMPERING = {
    "edit-result": _edit_result,
    "edit-context": _edit_context,
    "delete-middle": _delete_middle,
    "delete-first": _delete_first,
    "delete-last": _delete_last,
    "delete-last-rewind-head": _delete_last_and_rewind_head,
    "reorder": _swap_rows,
    "forge-appended-row": _forge_appended_row,
}


# --- tests -----------------------------------------------------------------------------------


def test_recorded_chains_verify_intact(runtime, env_vars):
    """V16.4.2: untouched chains verify as intact, and the outcome is itself recorded."""
    chains = _populate(runtime)
    with unit_of_work(runtime.sessions) as session:
        seqs = {
            chain: list(
                session.scalars(
                    select(AuditEvent.seq).where(AuditEvent.chain == chain).order_by(AuditEvent.id)
                )
            )
            for chain in ("instance", WS_CHAIN)
        }
    assert seqs == {"instance": [1, 2, 3, 4, 5], WS_CHAIN: [1, 2, 3, 4]}
    assert len(chains.instance) == INSTANCE_EVENTS
    assert len(chains.workspace) == WS_EVENTS

    result = _run_verify(env_vars)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact" in result.stdout
    assert "2 chain(s), 9 event(s)" in result.stdout
    assert _broken_lines(result.stdout) == []
    [outcome] = _outcomes(runtime)
    assert outcome.event == "audit:chain:verified"
    assert (outcome.actor_type, outcome.actor_id) == ("system", "cli")
    assert outcome.chain == "instance"
    assert outcome.seq == INSTANCE_EVENTS + 1
    assert json.loads(outcome.context) == {"chains": 2, "problems": [], "rows": 9}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_is_found_and_first_broken_row_named(runtime, env_vars, tamper):
    """V16.4.2: editing, deleting (also the tail), reordering or forging rows breaks the chain.

    The append-only trigger is bypassed first (dropped on SQLite, replica role on
    PostgreSQL): the proof of integrity is the MAC chain, not the trigger.
    """
    chains = _populate(runtime)
    with runtime.engine.begin() as conn:
        _bypass_append_only(conn)
        want = tamper(conn, chains)

    result = _run_verify(env_vars)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "intact" not in result.stdout
    broken = _broken_lines(result.stdout)
    # Only workspace 7's chain was touched; the instance chain still verifies.
    assert len(broken) == 1, result.stdout
    [line] = broken
    assert f"chain {WS_CHAIN}:" in line
    if want.row_id is None:
        assert f"first broken at seq {want.seq} (end of chain)" in line
    else:
        assert f"first broken at seq {want.seq} (row id {want.row_id})" in line
    assert want.reason in line
    # The failed verification is itself on the record.
    [outcome] = _outcomes(runtime)
    assert outcome.event == "audit:chain:broken"
    assert outcome.result == "failure"
    assert json.loads(outcome.context)["problems"] == [line.removeprefix("BROKEN ")]


@pytest.mark.skipif(BACKEND != "sqlite", reason="the SQLite triggers")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET result = 'failure' WHERE id = :id",
        "DELETE FROM audit_events WHERE id = :id",
    ],
    ids=["update", "delete"],
)
def test_sqlite_trigger_refuses_update_and_delete(runtime, statement):
    """V16.4.2: while installed, the SQLite triggers refuse UPDATE and DELETE.

    They are a guard, not the proof: whoever can write the file can drop them, which the
    tampering tests do, and the MAC chain still exposes the change.
    """
    chains = _populate(runtime)
    target = chains.workspace[0]
    before = _row_snapshot(runtime.engine, target)

    with pytest.raises(DBAPIError, match="append-only"), runtime.engine.begin() as conn:
        conn.execute(text(statement), {"id": target})

    assert _row_snapshot(runtime.engine, target) == before
    # Dropped, the trigger no longer stands in the way: it is only a guard.
    with runtime.engine.begin() as conn:
        _bypass_append_only(conn)
        conn.execute(text(statement), {"id": target})
    assert _row_snapshot(runtime.engine, target) != before


@pytest.mark.postgres
@pytest.mark.skipif(BACKEND != "postgres", reason="the PostgreSQL trigger")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET result = 'failure' WHERE id = :id",
        "UPDATE audit_events SET context = '{}' WHERE id = :id",
        "DELETE FROM audit_events WHERE id = :id",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ],
    ids=["update-result", "update-context", "delete-row", "delete-all", "truncate"],
)
def test_postgres_trigger_refuses_update_delete_truncate(runtime, statement):
    """V16.4.2: on PostgreSQL a plain UPDATE, DELETE or TRUNCATE is refused outright."""
    chains = _populate(runtime)
    target = chains.workspace[0]
    before = _row_snapshot(runtime.engine, target)

    params = {"id": target} if ":id" in statement else {}
    with pytest.raises(DBAPIError, match="append-only"), runtime.engine.begin() as conn:
        conn.execute(text(statement), params)

    assert _row_snapshot(runtime.engine, target) == before
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 9
        report = runtime.audit.verify(session)
    assert report.intact, [p.describe() for p in report.problems]


def _row_snapshot(engine: Engine, row_id: int) -> tuple[object, ...] | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT result, context, mac FROM audit_events WHERE id = :id"), {"id": row_id}
        ).one_or_none()
    return tuple(row) if row is not None else None


def test_concurrent_writers_get_a_gapless_sequence(runtime):
    """V16.4.2: concurrent appends to one chain neither skip nor repeat a seq."""
    threads_count, per_thread = 8, 10
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_thread):
                with unit_of_work(runtime.sessions) as session:
                    runtime.audit.record(
                        session,
                        AuditEventType.SYSTEM_SERVICE_STARTED,
                        Actor.system(f"writer-{n}"),
                        context={"i": i},
                        workspace_id=WORKSPACE,
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    total = threads_count * per_thread
    with unit_of_work(runtime.sessions) as session:
        seqs = list(
            session.scalars(
                select(AuditEvent.seq).where(AuditEvent.chain == WS_CHAIN).order_by(AuditEvent.seq)
            )
        )
        per_actor = dict(
            session.execute(
                select(AuditEvent.actor_id, func.count()).group_by(AuditEvent.actor_id)
            ).all()
        )
        head = session.get(AuditChainHead, WS_CHAIN)
        assert head is not None
        head_seq = head.seq
        report = runtime.audit.verify(session)
    assert seqs == list(range(1, total + 1))
    assert per_actor == {f"writer-{n}": per_thread for n in range(threads_count)}
    assert head_seq == total
    assert report.intact, [p.describe() for p in report.problems]
    assert (report.chains, report.rows) == (1, total)


def test_empty_database_verifies_intact(runtime, env_vars):
    """V16.4.2: with nothing recorded yet there is nothing to break."""
    with unit_of_work(runtime.sessions) as session:
        report = runtime.audit.verify(session)
    assert report.intact
    assert (report.chains, report.rows) == (0, 0)

    result = _run_verify(env_vars)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact: 0 chain(s), 0 event(s)" in result.stdout


def test_secret_looking_context_is_stored_redacted(runtime):
    """V16.4.2 with V16.2.5: secrets passed as context never reach the audit table."""
    with unit_of_work(runtime.sessions) as session:
        row = runtime.audit.record(
            session,
            AuditEventType.SYSTEM_SERVICE_STARTED,
            Actor.system("test"),
            context={
                "password": "hunter2-secret-value",
                "nested": {"api_key": "sk-live-0123456789abcdef"},
                "callback": "https://bob:s3cr3t-pass-word@example.net/hook",
                "note": "kept as it is",
            },
        )
        row_id = row.id
    with runtime.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT context FROM audit_events WHERE id = :id"), {"id": row_id}
        ).scalar_one()

    for secret in ("hunter2-secret-value", "sk-live-0123456789abcdef", "s3cr3t-pass-word"):
        assert secret not in stored
    context = json.loads(stored)
    assert context["password"] == "[REDACTED]"
    assert context["nested"]["api_key"] == "[REDACTED]"
    assert context["note"] == "kept as it is"
    assert context["callback"].endswith("@example.net/hook")
    with unit_of_work(runtime.sessions) as session:
        assert runtime.audit.verify(session).intact


def test_rows_signed_with_another_key_are_not_accepted(runtime):
    """V16.4.2: a chain can only be vouched for by the key that signed it."""
    chains = _populate(runtime)
    stranger = AuditService(b"another-audit-key-" + b"x" * 32)
    with unit_of_work(runtime.sessions) as session:
        report = stranger.verify(session)
    assert not report.intact
    first = {p.chain: (p.seq, p.row_id, p.reason) for p in report.problems}
    assert first == {
        "instance": (1, chains.instance[0], "signed with an unknown audit key"),
        WS_CHAIN: (1, chains.workspace[0], "signed with an unknown audit key"),
    }
