"""The state store contract, on SQLite and on PostgreSQL alike (real servers)."""

from __future__ import annotations

import os
import stat
import time
from datetime import timedelta
from typing import Any

import pytest

from erpops.errors import Locked
from erpops.secrets import REDACTOR
from erpops.state import RunRecord, StepRecord, utcnow


def _run(run_id: str = "r1", env: str = "prod", runbook: str = "backup", **kw: Any) -> RunRecord:
    return RunRecord(
        id=run_id,
        runbook=runbook,
        version="1.2.3",
        sha256="ab" * 32,
        environment=env,
        params=kw.pop("params", {"jobs": 2}),
        user="alice",
        host="laptop",
        started_at=kw.pop("started_at", utcnow()),
        runbook_path="/rb/backup.yaml",
        **kw,
    )


def test_journal_round_trip(open_store: Any) -> None:
    store = open_store()
    store.start_run(_run())
    store.record_plan("r1", [{"step": "dump", "change": "will change"}])
    s1 = StepRecord("r1", "dump", 1, "main", utcnow())
    store.start_step(s1)
    s1.ended_at, s1.outcome, s1.outputs = utcnow(), "succeeded", {"key": "prod/x/db.dump", "size": 42}
    store.finish_step(s1)
    s2 = StepRecord("r1", "verify", 1, "main", utcnow())
    store.start_step(s2)
    s2.ended_at, s2.outcome, s2.error = utcnow(), "failed", "checksum mismatch"
    store.finish_step(s2)
    store.record_approval("r1", "-", "alice@laptop", "--yes", "backup is destructive")
    store.finish_run("r1", "failed", utcnow(), "step verify: checksum mismatch")

    other = open_store()  # a second connection sees everything: it was committed
    run = other.get_run("r1")
    assert run is not None
    assert (run.runbook, run.version, run.sha256, run.environment) == ("backup", "1.2.3", "ab" * 32, "prod")
    assert (run.user, run.host, run.params, run.state) == ("alice", "laptop", {"jobs": 2}, "failed")
    assert run.error == "step verify: checksum mismatch"
    assert run.plan == [{"step": "dump", "change": "will change"}]
    assert run.ended_at is not None and run.ended_at >= run.started_at
    assert run.pid == os.getpid()
    steps = other.list_steps("r1")
    assert [(s.step_id, s.outcome) for s in steps] == [("dump", "succeeded"), ("verify", "failed")]
    assert steps[0].outputs == {"key": "prod/x/db.dump", "size": 42}
    assert steps[1].error == "checksum mismatch"
    assert steps[0].started_at.tzinfo is not None
    (approval,) = other.list_approvals("r1")
    assert (approval["who"], approval["how"], approval["message"]) == ("alice@laptop", "--yes", "backup is destructive")
    assert approval["at"] is not None


def test_step_in_flight_is_written_while_it_runs(open_store: Any) -> None:
    store, reader = open_store(), open_store()
    store.start_run(_run())
    step = StepRecord("r1", "dump", 1, "main", utcnow())
    store.start_step(step)
    deadline = time.monotonic() + 5
    while not reader.list_steps("r1") and time.monotonic() < deadline:
        time.sleep(0.05)
    (running,) = reader.list_steps("r1")
    assert running.outcome == "running" and running.ended_at is None
    step.ended_at, step.outcome = utcnow(), "succeeded"
    store.finish_step(step)
    (done,) = reader.list_steps("r1")
    assert done.outcome == "succeeded"


def test_list_runs_filters(open_store: Any) -> None:
    store = open_store()
    old = utcnow() - timedelta(days=3)
    store.start_run(_run("a", env="prod", runbook="backup", started_at=old))
    store.start_run(_run("b", env="staging", runbook="backup"))
    store.start_run(_run("c", env="prod", runbook="deploy"))
    store.start_run(_run("child", env="prod", runbook="backup", parent_id="c"))
    store.finish_run("b", "succeeded", utcnow(), None)
    ids = lambda **f: [r.id for r in store.list_runs(**f)]  # noqa: E731
    assert set(ids()) == {"a", "b", "c", "child"}
    assert ids()[-1] == "a"  # newest first
    assert set(ids(environment="prod")) == {"a", "c", "child"}
    assert set(ids(runbook="backup", environment="prod")) == {"a", "child"}
    assert ids(state="succeeded") == ["b"]
    assert set(ids(since=utcnow() - timedelta(days=1))) == {"b", "c", "child"}
    assert "child" not in ids(top_level=True)
    assert len(ids(limit=2)) == 2


def test_records(open_store: Any) -> None:
    store = open_store()
    store.put_record("release", "prod", "r1", {"image": "odoo:17.0-1"})
    store.put_record("release", "prod", "r2", {"image": "odoo:17.0-2"})
    store.put_record("release", "staging", "r1", {"image": "other"})
    first = store.get_record("release", "prod", "r1")
    store.put_record("release", "prod", "r1", {"image": "odoo:17.0-1", "good": True})
    again = open_store().get_record("release", "prod", "r1")
    assert again.data == {"image": "odoo:17.0-1", "good": True}
    assert again.created_at == first.created_at and again.updated_at >= first.updated_at
    assert [r.key for r in store.list_records("release", "prod")] == ["r1", "r2"]
    store.delete_record("release", "prod", "r1")
    assert store.get_record("release", "prod", "r1") is None
    assert store.get_record("nothing", "prod", "x") is None


def test_reopen_run_for_resume(open_store: Any) -> None:
    store = open_store()
    store.start_run(_run())
    store.finish_run("r1", "interrupted", utcnow(), "interrupted")
    store.reopen_run("r1")
    run = store.get_run("r1")
    assert (run.state, run.ended_at, run.error, run.resumes) == ("running", None, None, 1)


def test_everything_written_is_redacted(open_store: Any, tmp_path: Any) -> None:
    secret = "canary-Zq8vX2-store"
    REDACTOR.register(secret)
    store = open_store()
    store.start_run(_run(params={"password": secret}))
    store.record_plan("r1", [{"summary": f"connect with {secret}"}])
    step = StepRecord("r1", "s", 1, "main", utcnow())
    store.start_step(step)
    step.outcome, step.outputs, step.error = "failed", {"dsn": f"postgresql://u:{secret}@h/db"}, f"bad {secret}"
    store.finish_step(step)
    store.record_approval("r1", "s", "alice@laptop", "terminal", f"approve {secret}?")
    store.put_record("release", "prod", "k", {"token": secret})
    store.finish_run("r1", "failed", utcnow(), f"error {secret}")
    store.close()
    dump = repr(open_store().get_run("r1")) + repr(open_store().list_steps("r1"))
    dump += repr(open_store().list_approvals("r1")) + repr(open_store().get_record("release", "prod", "k"))
    assert secret not in dump and "***" in dump
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_audit_trail(open_store: Any, store_url: str, tmp_path: Any) -> None:
    store = open_store()
    store.start_run(_run())
    store.record_approval("r1", "-", "alice@laptop", "--yes", "destructive on production")
    store.finish_run("r1", "succeeded", utcnow(), None)
    store.start_run(_run("child", parent_id="r1"))  # runs started by runbook.call are not audited
    entries = list(store.audit.entries())
    assert [e["event"] for e in entries] == ["run.started", "approval", "run.finished"]
    assert entries[0]["who"] == "alice@laptop" and entries[0]["runbook"] == "backup"
    assert entries[0]["sha256"] == "ab" * 32 and entries[0]["params"] == {"jobs": 2}
    assert entries[1]["how"] == "--yes" and entries[2]["state"] == "succeeded"
    assert stat.S_IMODE(store.audit.path.stat().st_mode) == 0o600
    if store_url.startswith("postgresql"):
        assert [e["event"] for e in store.audit_entries()] == ["run.started", "approval", "run.finished"]
    else:
        assert store.audit.path.parent == store.path.parent
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_audit_file_lines_are_whole_under_concurrency(tmp_path: Any) -> None:
    import json
    import threading

    from erpops.audit import AuditLog

    log = AuditLog(tmp_path / "a.jsonl")
    big = "x" * 5000

    def writer(n: int) -> None:
        for i in range(50):
            log.append({"event": "t", "writer": n, "i": i, "pad": big})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(rows) == 200 and all(r["pad"] == big for r in rows)
    (tmp_path / "a.jsonl").chmod(0o644)
    log.append({"event": "t"})
    assert stat.S_IMODE((tmp_path / "a.jsonl").stat().st_mode) == 0o600


def test_lock_in_one_process(open_store: Any) -> None:
    a, b = open_store(), open_store()
    run = _run("holder")
    with a.environment_lock("prod", run):
        holder = b.lock_holder("prod")
        assert (holder["run_id"], holder["user"], holder["host"], holder["runbook"]) == (
            "holder",
            "alice",
            "laptop",
            "backup",
        )
        start = time.monotonic()
        with pytest.raises(Locked) as exc, b.environment_lock("prod", _run("loser")):
            pass
        assert time.monotonic() - start < 1.0
        assert "run holder" in str(exc.value) and "alice@laptop" in str(exc.value)
        assert "backup" in str(exc.value) and "since" in str(exc.value)
        with b.environment_lock("staging", _run("other")):  # another environment is free
            pass
        start = time.monotonic()
        with pytest.raises(Locked, match=r"waited 0\.5s"), b.environment_lock("prod", _run("loser"), wait=0.5):
            pass
        assert time.monotonic() - start >= 0.5
    assert b.lock_holder("prod") is None
    with b.environment_lock("prod", _run("next")):
        assert a.lock_holder("prod")["run_id"] == "next"


def test_schema_is_created_once_and_reopened(open_store: Any) -> None:
    first = open_store()
    first.start_run(_run())
    second = open_store()
    assert second.get_run("r1") is not None
