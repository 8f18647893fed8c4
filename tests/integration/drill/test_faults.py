"""Bad input and faults: corrupted artifact, killed backup, wrong DSN, unreachable storage,
an unbalanced source database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from xml.etree import ElementTree as ET

from erpops.backends.postgres import client as pg
from tests.fixtures.postgres import SeededDb, free_port
from tests.fixtures.sql import scalar
from tests.integration.drill.conftest import Drill, drill_databases, local_env
from tests.integration.drill.test_cycle import parse_prometheus


def test_corrupted_artifact_fails_on_the_checksum_before_restoring(drill: Drill, seeded_db) -> None:
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    res = drill.run("backup", "--env", "local", "--param", "verify=false")
    assert res.code == 0, res.stdout[-3000:]
    backup_id = res.finished()["outputs"]["backup_id"]
    dump = drill.store("local") / "local" / backup_id / "db.dump.zst"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in one byte
    dump.write_bytes(bytes(data))

    junit, metrics = drill.root / "drill.xml", drill.root / "drill.prom"
    res = drill.run("restore-test", "--env", "local", "--junit", str(junit), "--metrics-file", str(metrics))
    assert res.code == 1, res.stdout[-3000:]
    restore = res.step("restore")
    assert restore["status"] == "failed"
    assert "corrupt" in restore["error"] and "db.dump.zst" in restore["error"]
    assert "neutralize" not in {e.get("step") for e in res.events if e["event"] == "step.started"}
    assert drill_databases(seeded_db) == []  # no database was ever created
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["restore"].find("failure") is not None
    samples = parse_prometheus(metrics.read_text())
    assert samples["erpops_restore_drill_success"][0][1] == 0.0
    # the evidence of a failed drill is honest and valid (regression: total 0, database "null",
    # a JUnit timestamp with microseconds and an offset that the strict JUnit schema rejects)
    total = dict(samples["erpops_restore_drill_duration_seconds"])['{environment="local",phase="total"}']
    assert 0 < total < 120
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp") or ""), suite.get("timestamp")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert "database" not in properties and "null" not in properties.values()
    # the finding is recorded: the backup is listed corrupt and the next drill does not pick it again
    # (regression: it stayed listed as it was and every later drill chose it)
    assert "recorded as corrupt" in json.dumps(res.events)
    [entry] = drill.backups("local")
    assert entry["state"] == "corrupt" and entry["restore_tested_at"] is None, entry
    again = drill.run("restore-test", "--env", "local")
    assert again.code == 1 and "no complete backup" in (again.finished()["error"] or ""), again.stdout[-2000:]
    # recorded as failed in the journal
    runs = drill.run("runs", "list", "--env", "local", "--json")
    assert runs.code == 0, runs.stderr
    states = [json.loads(line) for line in runs.stdout.splitlines() if line.startswith("{")]
    assert any(r.get("runbook") == "restore-test" and r.get("state") == "failed" for r in states), states


def test_a_backup_pg_restore_cannot_restore_is_listed_unrestorable_and_not_picked_again(
    drill: Drill, seeded_db: SeededDb
) -> None:
    """Regression (issue 16 item 5): a drill whose pg_restore failed on artifacts that match their
    manifest left the backup listed verified, and every later drill chose it again."""
    import hashlib

    import zstandard

    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    res = drill.run("backup", "--env", "local", "--param", "verify=false")
    assert res.code == 0, res.stdout[-3000:]
    backup_id = res.finished()["outputs"]["backup_id"]
    folder = drill.store("local") / "local" / backup_id
    # a dump pg_restore refuses, stored with a manifest that matches it byte for byte
    bad = zstandard.ZstdCompressor().compress(b"PGDMP" + b"\x00" * 4096)
    (folder / "db.dump.zst").write_bytes(bad)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"]["db"].update(sha256=hashlib.sha256(bad).hexdigest(), size=len(bad))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    [entry] = drill.backups("local")
    assert entry["state"] == "complete", entry

    res = drill.run("restore-test", "--env", "local")
    assert res.code == 1, res.stdout[-3000:]
    assert "pg_restore failed" in res.step("restore")["error"], res.step("restore")
    assert "recorded as unrestorable" in json.dumps(res.events)
    [entry] = drill.backups("local")
    assert entry["state"] == "unrestorable", entry
    assert any("could not restore it" in p for p in entry["problems"]), entry
    assert drill_databases(seeded_db) == []
    again = drill.run("restore-test", "--env", "local")  # not picked again
    assert again.code == 1 and "no complete backup" in (again.finished()["error"] or ""), again.stdout[-2000:]
    named = drill.run("restore-test", "--env", "local", "--backup", backup_id)  # named: drilled again
    assert named.code == 1 and "pg_restore failed" in named.step("restore")["error"]


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from erpops.backends.odoo.backup import BackupOptions, run_backup
    from erpops.backends.storage.local import LocalStore

    def progress(part, done):
        if part == "filestore":  # the database artifact is stored, the filestore is streaming
            os.kill(os.getpid(), signal.SIGKILL)

    # one artifact after the other, so the kill lands between "db stored" and "manifest written"
    opts = BackupOptions(environment="local", dsn=sys.argv[1], database=sys.argv[2], filestore=Path(sys.argv[3]),
                         parallel=False)
    run_backup(LocalStore(sys.argv[4]), opts, progress=progress)
    """
)


def test_killed_backup_is_incomplete_never_chosen_and_pruned(drill: Drill, seeded_db) -> None:
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    store = drill.store("local")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT,
            seeded_db.server_dsn,
            seeded_db.dbname,
            str(seeded_db.filestore),
            str(store),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    [entry] = drill.backups("local")
    assert entry["state"] == "incomplete" and "no manifest" in entry["problems"]
    killed = entry["backup_id"]
    assert not (store / "local" / killed / "manifest.json").exists()

    res = drill.run("restore-test", "--env", "local")  # nothing usable to choose
    assert res.code == 1
    assert "no complete backup" in res.step("choose")["error"]
    res = drill.run("restore-test", "--env", "local", "--backup", killed)
    assert res.code == 1 and "incomplete" in res.step("choose")["error"]

    res = drill.run("backup", "--env", "local", "--param", "grace=0s")
    assert res.code == 0, res.stdout[-3000:]
    fresh = res.finished()["outputs"]["backup_id"]
    assert [d["backup_id"] for d in res.step("prune")["outputs"]["deleted"]] == [killed]
    assert [(b["backup_id"], b["state"]) for b in drill.backups("local")] == [(fresh, "verified")]
    assert not list((store / "local").glob(".*")) and not (store / "local" / killed).exists()


def test_wrong_dsn_exits_3_naming_the_target_within_seconds(drill: Drill, seeded_db) -> None:
    port = free_port()
    store = drill.root / "store"
    tcp = {"dsn": f"postgresql://odoo@127.0.0.1:{port}/postgres", "name": "odoo"}
    sock = {"dsn": "postgresql://postgres@/postgres?host=/tmp/erpops-nowhere", "name": "odoo"}
    drill.add("nodb", **local_env(seeded_db, store, database=tcp))
    drill.add("nosock", **local_env(seeded_db, store, database=sock))
    for name, target in (("nodb", f"127.0.0.1:{port}"), ("nosock", "/tmp/erpops-nowhere")):
        res = drill.run("backup", "--env", name)
        assert res.code == 3, res.stdout[-2000:]
        assert res.seconds < 15
        assert target in res.finished()["error"]
    assert not (drill.root / "store").exists() or not any((drill.root / "store").rglob("manifest.json"))
    assert drill.backups("nodb") == []


def test_missing_database_exits_3(drill: Drill, seeded_db) -> None:
    missing = {"dsn": seeded_db.server_dsn, "name": "no_such_db"}
    drill.add("gone", **local_env(seeded_db, drill.root / "store", database=missing))
    res = drill.run("backup", "--env", "gone")
    assert res.code == 3 and "no_such_db" in res.finished()["error"]


def test_unreachable_storage_exits_3_and_marks_nothing_complete(drill: Drill, seeded_db) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = {
        "url": "s3://backups/erp",
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key": "k",
        "secret_key": "s",
    }
    drill.add("nos3", **local_env(seeded_db, drill.root / "store", storage=storage))
    res = drill.run("backup", "--env", "nos3")
    assert res.code == 3, res.stdout[-2000:]
    assert res.seconds < 30
    assert endpoint in res.finished()["error"]
    assert "dump" not in {e.get("step") for e in res.events if e["event"] == "step.started"}


def test_unbalanced_move_in_the_backup_fails_the_drill(drill: Drill, seeded_db, pg_primary) -> None:
    """The source itself is broken (a posted move with debit != credit): the drill says so."""
    from erpops.backends.odoo import seed

    fs = drill.root / "fs" / "odoo_unbalanced"
    seed.seed(pg_primary.dsn(), "odoo_unbalanced", fs, scale=0.1)
    try:
        with pg.connect(pg_primary.dsn(), "odoo_unbalanced") as conn:
            name = scalar(
                conn,
                "WITH l AS (SELECT l.id, m.name FROM account_move_line l JOIN account_move m ON m.id = l.move_id "
                "WHERE m.state = 'posted' AND l.debit > 0 ORDER BY l.id LIMIT 1) "
                "UPDATE account_move_line SET debit = debit + 1 FROM l WHERE account_move_line.id = l.id "
                "RETURNING l.name",
            )
        drill.add(
            "broken",
            database={"dsn": pg_primary.dsn(), "name": "odoo_unbalanced"},
            storage={"url": f"file://{drill.root / 'store'}"},
            odoo={"filestore": str(fs)},
        )
        assert drill.run("backup", "--env", "broken").code == 0
        junit = drill.root / "drill.xml"
        res = drill.run("restore-test", "--env", "broken", "--junit", str(junit))
        assert res.code == 1
        checks = {c["name"]: c for c in res.step("checks")["outputs"]["checks"]}
        assert checks["accounting_balanced"]["passed"] is False
        assert checks["accounting_balanced"]["actual"]["unbalanced"] == 1
        assert name in checks["accounting_balanced"]["message"]
        assert all(c["passed"] for n, c in checks.items() if n != "accounting_balanced")
        failure = next(c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name") == "accounting_balanced")
        assert failure.find("failure") is not None
        assert "accounting_balanced" in res.finished()["error"]
        [entry] = drill.backups("broken")
        assert entry["state"] == "verified"  # not restore-tested: a check failed
        assert drill_databases(seeded_db) == []  # cleaned up all the same
    finally:
        with pg.connect(pg_primary.dsn()) as conn:
            conn.execute("DROP DATABASE IF EXISTS odoo_unbalanced WITH (FORCE)")
