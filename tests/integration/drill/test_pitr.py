"""Drills to a moment (issue 14, item 3) against a real PostgreSQL archiving through erpops: rows
written at known times, a physical base backup, more rows; ``restore-test --to-time T`` between
them gives a copy with exactly the rows before T (an environment check counts them), reports the
recovery point reached and the RTO phases, marks the base backup restore-tested and leaves no
scratch server; ``latest`` has every row; a missing WAL segment fails the drill naming it and a
corrupted one fails it on its checksum (exit 1, the backup's mark unchanged)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import psycopg

from erpops.backends.odoo import seed
from tests.fixtures.archiving import Archiving


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")]


def _finished(out: str) -> dict[str, Any]:
    return next(e for e in reversed(_events(out)) if e["event"] == "run.finished" and not e.get("depth"))


def _step(out: str, step: str) -> dict[str, Any]:
    return next(e for e in reversed(_events(out)) if e["event"] == "step.finished" and e.get("step") == step)


def _mark(a: Archiving, n: int) -> datetime:
    """Insert ``n`` rows (one transaction each); the time after the last commit."""
    with psycopg.connect(a.info.dsn("odoo"), autocommit=True) as conn:
        for _ in range(n):
            conn.execute("INSERT INTO pitr_marks DEFAULT VALUES")
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    when: datetime = row[0]
    return when


def _switch_and_wait(a: Archiving) -> None:
    ((name,),) = a.sql("SELECT pg_walfile_name(pg_switch_wal())")
    a.wait_archived(str(name))


def _drill(a: Archiving, *args: str) -> Any:
    return a.erpops("restore-test", "--env", "w", "--yes", "--json", *args, timeout=300)


def _counting(a: Archiving, expect: int) -> None:
    check = {"name": "marks", "sql": "SELECT count(*) FROM pitr_marks", "expect": expect}
    a.edit(lambda env: env.update(checks=[check]))


def _prepare(a: Archiving) -> tuple[str, datetime]:
    seed.seed(a.info.dsn(), "odoo", a.root / "filestore" / "odoo", 0.05)
    with psycopg.connect(a.info.dsn("odoo"), autocommit=True) as conn:
        conn.execute("CREATE TABLE pitr_marks (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    _mark(a, 3)
    backup = a.erpops("backup", "--env", "w", "--json", timeout=300)
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
    backup_id = _finished(backup.stdout)["outputs"]["backup_id"]
    between = _mark(a, 3)
    time.sleep(0.3)
    _mark(a, 4)
    _switch_and_wait(a)
    return backup_id, between


def test_a_drill_to_a_moment_has_exactly_the_rows_before_it(archiving: Archiving) -> None:
    a = archiving
    backup_id, between = _prepare(a)
    _counting(a, 6)
    res = _drill(a, "--to-time", between.isoformat(), "--junit", str(a.root / "junit.xml"))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    report = _step(res.stdout, "report")["outputs"]["report"]
    assert report["passed"] is True and report["backup_id"] == backup_id
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["marks"]["passed"] and checks["marks"]["actual"] == 6
    recovery = report["recovery"]
    reached = datetime.fromisoformat(recovery["reached_time"])
    assert reached <= between and 0 <= recovery["lag_seconds"] < 1, recovery
    assert datetime.fromisoformat(recovery["next_commit_time"]) > between  # the first commit left out
    assert recovery["segments"] >= 1 and recovery["target"] == between.isoformat()
    assert set(report["durations"]) == {"fetch", "unpack", "replay", "neutralize", "checks", "total"}
    marker = json.loads((a.store / "w" / backup_id / "restore-test.json").read_text())
    assert marker["ok"] is True and marker["run_id"] == _finished(res.stdout)["run_id"]
    assert not list((a.root / "scratch").glob("erpops-scratch-*"))  # the scratch server and files are gone
    with psycopg.connect(a.info.dsn("odoo")) as conn:  # the live database was not touched
        row = conn.execute("SELECT count(*) FROM pitr_marks").fetchone()
        params: dict[str, str] = dict(conn.execute("SELECT key, value FROM ir_config_parameter").fetchall())
    assert row == (10,) and "database.is_neutralized" not in params

    # the live name is allowed only on erpops's scratch server: the live server's DSN is refused
    runbook = a.root / "neutralize-live.yaml"
    runbook.write_text(
        "apiVersion: erpops/v1\nkind: Runbook\nmetadata: {name: n, version: 1.0.0}\nsteps:\n"
        f"  - id: n\n    action: odoo.neutralize\n    with: {{dsn: '{a.info.dsn()}', database: odoo}}\n"
    )
    refused = a.erpops("run", str(runbook), "--env", "w", "--yes")
    assert refused.returncode == 2 and "refuses the live database 'odoo'" in refused.stdout + refused.stderr

    _counting(a, 10)
    latest = _drill(a, "--to-time", "latest")
    assert latest.returncode == 0, latest.stdout[-4000:] + latest.stderr
    assert _step(latest.stdout, "report")["outputs"]["report"]["recovery"]["target"] == "latest"


def test_a_missing_or_corrupt_segment_fails_the_drill_naming_it(archiving: Archiving) -> None:
    a = archiving
    backup_id, _between = _prepare(a)
    _mark(a, 2)
    _switch_and_wait(a)
    folder = a.store / "w" / "wal" / "00000001"
    segments = sorted(p for p in folder.iterdir() if len(p.name.split("-")[0]) == 24)  # segments only
    manifest = json.loads((a.store / "w" / backup_id / "manifest.json").read_text())
    after = [p for p in segments if p.name.split("-")[0] > manifest["physical"]["start_wal"]]
    assert len(after) >= 2, [p.name for p in segments]
    victim = after[0]
    hidden = victim.with_name("hidden")
    victim.rename(hidden)
    missing = _drill(a, "--to-time", "latest")
    said = missing.stdout + missing.stderr
    gap = f"WAL segment {victim.name.split('-')[0]} is not in the archive"
    assert missing.returncode == 1 and gap in said, said[-3000:]
    assert not (a.store / "w" / backup_id / "restore-test.json").exists()  # not marked restore-tested

    hidden.rename(victim)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    corrupt = _drill(a, "--to-time", "latest")
    said = corrupt.stdout + corrupt.stderr
    assert corrupt.returncode == 1 and "corrupt" in said and victim.name.split("-")[0] in said, said[-3000:]
    assert not (a.store / "w" / backup_id / "restore-test.json").exists()
    assert not list((a.root / "scratch").glob("erpops-scratch-*"))


def test_prune_keeps_the_wal_the_oldest_kept_base_backup_needs_and_no_more(archiving: Archiving) -> None:
    a = archiving
    first, _ = _prepare(a)
    for _ in range(2):
        _mark(a, 1)
        _switch_and_wait(a)
    again = a.erpops("backup", "--env", "w", "--json", "--param", "daily=1", "--param", "weekly=0", "--param",
                     "monthly=0", timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    newest = _finished(again.stdout)["outputs"]["backup_id"]
    _mark(a, 1)
    _switch_and_wait(a)
    assert not (a.store / "w" / first).exists()  # the older base backup is outside the policy
    manifest = json.loads((a.store / "w" / newest / "manifest.json").read_text())
    start = manifest["physical"]["start_wal"]
    names = [p.name.split("-")[0] for p in (a.store / "w" / "wal" / "00000001").iterdir()]
    assert names and all(n[:24] >= start for n in names if not n.endswith(".history")), (start, sorted(names))
    pruned = _step(again.stdout, "prune")["outputs"]["wal"]
    assert pruned["kept_from"] == start and pruned["deleted"] >= 2, pruned
    _counting(a, 13)  # 10 in _prepare, 2 before the second backup, 1 after
    latest = _drill(a, "--to-time", "latest")  # the kept base backup still has every segment it needs
    assert latest.returncode == 0, latest.stdout[-3000:] + latest.stderr


def test_a_base_backup_killed_midway_is_never_listed_complete(archiving: Archiving) -> None:
    import signal
    import subprocess
    import sys

    a = archiving
    seed.seed(a.info.dsn(), "odoo", a.root / "filestore" / "odoo", 0.5)
    argv = [sys.executable, "-m", "erpops", "backup", "--env", "w", "--config", str(a.config)]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ERPOPS_")}
    for delay in (0.6, 0.9, 1.2, 1.5):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    listed = a.erpops("backups", "list", "--env", "w", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(x) for x in listed.stdout.splitlines()]
    print("states after the kills:", [e["state"] for e in entries])
    for entry in entries:
        folder = a.store / "w" / entry["backup_id"]
        if entry["state"] != "incomplete":  # finished before its kill: whole, and says so
            manifest = json.loads((folder / "manifest.json").read_text())
            assert (folder / "base.tar.zst").stat().st_size == manifest["artifacts"]["base"]["size"]
        else:
            assert not (folder / "manifest.json").exists()
    done = a.erpops("backup", "--env", "w", timeout=300)  # and the next backup still works
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_after_a_failover_archiving_goes_on_and_a_drill_follows_the_new_timeline(archiving: Archiving) -> None:
    """Item 5: the standby promoted archives its timeline (history file, the old timeline's
    partial segment, its own segments) into the same place; a drill from a base backup taken
    before the failover replays across the timeline switch."""
    from erpops.backends.postgres import local_server

    a = archiving
    backup_id, _ = _prepare(a)
    from tests.fixtures.postgres import free_port

    standby = local_server.create_standby(a.info, a.root / "standby", free_port())
    _mark(a, 2)  # timeline 1, streamed to the standby
    with psycopg.connect(a.info.dsn(), autocommit=True) as conn:
        ((lsn,),) = conn.execute("SELECT pg_current_wal_lsn()").fetchall()
    deadline = time.monotonic() + 30
    with psycopg.connect(standby.dsn(), autocommit=True) as conn:
        while conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone() != (True,):
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)
    local_server.stop(a.info.datadir, mode="immediate")  # the primary dies
    with psycopg.connect(standby.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_promote(true, 30)")
    with psycopg.connect(standby.dsn("odoo"), autocommit=True) as conn:
        for _ in range(3):
            conn.execute("INSERT INTO pitr_marks DEFAULT VALUES")
        ((after,),) = conn.execute("SELECT clock_timestamp()").fetchall()
        conn.execute("INSERT INTO pitr_marks DEFAULT VALUES")  # a commit after the target: where replay stops
        ((name,),) = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchall()
        deadline = time.monotonic() + 60
        while True:
            ((last,),) = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchall()
            if last is not None and str(last) >= str(name):
                break
            assert time.monotonic() < deadline, "the new primary did not archive"
            time.sleep(0.1)
    try:
        archived = {p.name.split("-")[0] for p in (a.store / "w" / "wal").rglob("*.zst")}
        assert "00000002.history" in archived and any(n.endswith(".partial") for n in archived), sorted(archived)
        assert any(n.startswith("00000002") and len(n) == 24 for n in archived), sorted(archived)
        _counting(a, 15)  # 10 before the backup, 2 on timeline 1 after it, 3 on timeline 2
        res = _drill(a, "--to-time", after.isoformat())
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr
        report = _step(res.stdout, "report")["outputs"]["report"]
        assert report["passed"] and report["backup_id"] == backup_id
    finally:
        local_server.stop(standby.datadir, mode="immediate")


def test_the_same_over_s3(archiving: Archiving, s3_server: Any, s3_bucket: str) -> None:
    """Base backups, the WAL archive (pushed by the server's archive_command over HTTP) and a
    drill to a moment with the store in S3 (moto)."""
    a = archiving
    storage = s3_server.storage(s3_bucket, "erp").model_dump(exclude_none=True)
    a.edit(lambda env: env.update(storage=storage))
    backup_id, between = _prepare(a)
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="erp/w/")["Contents"]]
    assert f"erp/w/{backup_id}/base.tar.zst" in keys and any(k.startswith("erp/w/wal/00000001/") for k in keys)
    _counting(a, 6)
    res = _drill(a, "--to-time", between.isoformat())
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    assert _step(res.stdout, "report")["outputs"]["report"]["recovery"]["segments"] >= 1


def test_the_sandbox_can_be_started_with_archiving_on() -> None:
    """``sandbox up --archive``: both servers archive through ``erpops wal push``, the sandbox's
    backups are physical, and a drill to the latest moment passes."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="ersa-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env.update(ERPOPS_SANDBOX_DIR=str(root), COLUMNS="200", ERPOPS_SCRATCH_DIR=str(root / "scratch"))

    def erpops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "erpops", *args], env=env, capture_output=True, text=True,
                              timeout=600, cwd=root.parent)  # fmt: skip

    try:
        up = erpops("sandbox", "up", "--archive", "--no-runtime", "--scale", "0.1")
        assert up.returncode == 0 and "WAL archiving on for primary" in up.stdout, up.stdout + up.stderr
        backup = erpops("backup", "--json")
        assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
        assert _finished(backup.stdout)["outputs"]["size"] > 0
        (bid,) = [p.name for p in (root / "storage" / "sandbox").iterdir() if p.name != "wal"]
        assert json.loads((root / "storage" / "sandbox" / bid / "manifest.json").read_text())["method"] == "physical"
        dsn = f"postgresql://postgres@/odoo?host={root / 'primary'}&port=5432"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE res_partner SET name = name WHERE id = (SELECT min(id) FROM res_partner)")
            ((name,),) = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchall()
            deadline = time.monotonic() + 60
            while (conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone() or [None])[0] != name:
                assert time.monotonic() < deadline, "the sandbox primary did not archive"
                time.sleep(0.1)
        status = erpops("wal", "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["newest"] == name, status.stdout + status.stderr
        drill = erpops("restore-test", "--to-time", "latest", "--yes", "--json")
        assert drill.returncode == 0, drill.stdout[-3000:] + drill.stderr
    finally:
        erpops("sandbox", "down", "--purge")
        shutil.rmtree(root, ignore_errors=True)
