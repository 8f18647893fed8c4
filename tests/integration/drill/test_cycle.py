"""The whole cycle through the CLI: backup -> backups list -> restore-test, local store and S3."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from xml.etree import ElementTree as ET

from erpops.backends.postgres import client as pg
from tests.fixtures.sql import scalar
from tests.integration.drill.conftest import Drill, drill_databases, local_env

BUILT_IN_CHECKS = {"restore", "row_counts", "accounting_balanced", "attachments", "modules"}
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse_prometheus(text: str) -> dict[str, list[tuple[str, float]]]:
    """A strict reader of the text exposition format (every line must be valid)."""
    out: dict[str, list[tuple[str, float]]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("gauge", "counter"), line
            typed.add(name)
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        assert m.group(1) in typed, f"{m.group(1)} has no # TYPE line"
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def test_backup_then_restore_test_on_local_store(drill: Drill, seeded_db) -> None:
    store = drill.root / "store"
    check = {"name": "customers exist", "sql": "SELECT count(*) > 10 FROM res_partner", "expect": True}
    drill.add("local", **local_env(seeded_db, store, checks=[check]))

    res = drill.run("backup", "--env", "local")
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    backup_id = res.finished()["outputs"]["backup_id"]
    folder = store / "local" / backup_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "db.dump.zst",
        "filestore.tar.zst",
        "manifest.json",
        "verify.json",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    counts = seeded_db.result.counts
    for table in ("res_partner", "sale_order", "account_move_line", "ir_attachment", "stock_move"):
        assert manifest["row_counts"][table] == counts[table]
    assert manifest["odoo_version"].startswith("18.0")
    assert "sale" in manifest["modules"] and manifest["modules"]["base"] == manifest["odoo_version"]
    on_disk = sum(len(files) for _, _, files in os.walk(seeded_db.filestore))  # checklist markers too
    assert manifest["artifacts"]["filestore"]["files"] == on_disk >= seeded_db.result.files
    assert manifest["runbook"]["name"] == "backup" and len(manifest["runbook"]["sha256"]) == 64
    # the manifest is enough to restore by hand
    assert any("pg_restore" in c for c in manifest["restore_commands"])

    [entry] = drill.backups("local")
    assert entry["backup_id"] == backup_id and entry["state"] == "verified"

    junit, metrics = drill.root / "out" / "drill.xml", drill.root / "out" / "drill.prom"
    res = drill.run("restore-test", "--env", "local", "--junit", str(junit), "--metrics-file", str(metrics))
    assert res.code == 0, res.stdout[-4000:] + res.stderr
    moving = [e for e in res.events if e["event"] == "step.progress" and e["step"] == "restore"]
    fetching = [e for e in moving if e["description"].startswith("fetch ")]
    assert fetching and all(e["total"] == manifest["artifacts"][e["description"].split()[-1]]["size"] for e in fetching)
    # issue 17 item 8 (regression): nothing moved while pg_restore ran; now its table of contents counts
    restoring = [e for e in moving if e["description"] == "restore database"]
    assert restoring and all(e["unit"] == "items" and 0 < e["done"] <= e["total"] for e in restoring), restoring
    assert restoring[-1]["done"] == restoring[-1]["total"] > 50  # tables, data, sequences, indexes, constraints
    assert [e["done"] for e in restoring] == sorted(e["done"] for e in restoring)
    report = res.step("report")["outputs"]["report"]
    assert report["passed"] is True and report["backup_id"] == backup_id
    assert set(report["durations"]) == {"fetch", "restore", "neutralize", "checks", "total"}
    assert report["rpo_seconds"]["snapshot"] >= 0 and report["rpo_seconds"]["business_data"] > 0
    neutralized = res.step("neutralize")["outputs"]["changed"]
    assert neutralized["crons_disabled"] >= 1 and neutralized["neutralize_mail_server_added"] is True

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == BUILT_IN_CHECKS | {"customers exist"}
    assert all(c.find("failure") is None for c in cases.values())

    samples = parse_prometheus(metrics.read_text())
    assert samples["erpops_restore_drill_success"] == [('{environment="local"}', 1.0)]
    phases = {labels for labels, _ in samples["erpops_restore_drill_duration_seconds"]}
    assert any('phase="restore"' in p for p in phases) and any('phase="fetch"' in p for p in phases)
    assert {labels.split("basis=")[1] for labels, _ in samples["erpops_restore_drill_rpo_seconds"]} == {
        '"snapshot"}',
        '"business_data"}',
    }
    assert samples["erpops_backup_age_seconds"][0][1] >= 0

    [entry] = drill.backups("local")
    assert entry["state"] == "restore-tested"
    assert (folder / "restore-test.json").exists()
    listing = drill.run("backups", "list", "--env", "local")
    assert listing.code == 0 and backup_id in listing.stdout and "restore-tested" in listing.stdout
    # issue 17 item 7 (regression): on an 80-column terminal the id and the state were cut
    narrow = drill.run("backups", "list", "--env", "local", COLUMNS="80").stdout
    row = next(line for line in narrow.splitlines() if backup_id in line)
    assert "restore-tested" in row and max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert drill_databases(seeded_db) == []  # scratch database dropped
    assert not any(drill.scratch.glob("erpops-scratch-*"))  # scratch files removed


def _drop_kept(drill: Drill, db: str, run_id: str) -> None:
    """Drop a database a drill kept (odoo.cleanup, naming the run that created it)."""
    cleanup = drill.runbook(
        "cleanup",
        "apiVersion: erpops/v1\nkind: Runbook\nmetadata: {name: cleanup, version: 1.0.0}\n"
        "steps:\n  - id: drop\n    action: odoo.cleanup\n"
        f"    with: {{database: {db}, created_by: {run_id}}}\n",
    )
    done = drill.run("run", str(cleanup), "--env", "local")
    assert done.code == 0, done.stdout[-2000:]


def test_restore_test_keep_leaves_a_neutralized_copy(drill: Drill, seeded_db) -> None:
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    assert drill.run("backup", "--env", "local", "--param", "prune=false").code == 0
    res = drill.run("restore-test", "--env", "local", "--keep")
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    restored = res.step("restore")["outputs"]
    db = restored["database"]
    try:
        assert db.startswith(f"{seeded_db.dbname}_drill_")
        assert Path(restored["filestore"]).is_dir()
        with pg.connect(seeded_db.server_dsn, db) as conn:
            comment = scalar(conn, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                   (db,))  # fmt: skip
            assert comment.startswith("erpops:created run=")
            active = conn.execute(
                "SELECT d.name FROM ir_cron c LEFT JOIN ir_model_data d ON d.model = 'ir.cron' AND d.res_id = c.id "
                "WHERE c.active"
            ).fetchall()
            assert active == [("autovacuum_job",)]
            servers = conn.execute("SELECT name, smtp_host, smtp_port FROM ir_mail_server WHERE active").fetchall()
            assert servers == [("neutralization - disable emails", "invalid", 1025)]
            params = dict(conn.execute("SELECT key, value FROM ir_config_parameter").fetchall())
            assert params["database.is_neutralized"] == "true"
            assert scalar(conn, "SELECT count(*) FROM payment_provider WHERE state = 'enabled'") == 0
            assert scalar(conn, "SELECT count(*) FROM delivery_carrier WHERE prod_environment") == 0
            assert scalar(conn, "SELECT count(*) FROM fetchmail_server WHERE active") == 0
        with pg.connect(seeded_db.dsn) as conn:
            live = dict(conn.execute("SELECT key, value FROM ir_config_parameter").fetchall())
        assert params["database.uuid"] != live["database.uuid"]  # the copy never impersonates production
        assert "database.is_neutralized" not in live  # the live database was not touched
    finally:
        _drop_kept(drill, db, res.finished()["run_id"])
    assert drill_databases(seeded_db) == []


def test_cycle_over_s3(drill: Drill, seeded_db, s3_server, s3_bucket) -> None:
    storage = s3_server.storage(s3_bucket, "erp").model_dump(exclude_none=True)
    drill.add(
        "cloud",
        database={"dsn": seeded_db.server_dsn, "name": seeded_db.dbname},
        storage=storage,
        odoo={"filestore": str(seeded_db.filestore)},
    )
    res = drill.run("backup", "--env", "cloud")
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    backup_id = res.finished()["outputs"]["backup_id"]
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == [f"erp/cloud/{backup_id}/{n}" for n in ("db.dump.zst", "filestore.tar.zst", "manifest.json",
                                                          "verify.json")]  # fmt: skip
    runs = []
    for _ in range(2):  # a drill whose disk goes away (a CronJob's pod) keeps its evidence in the store
        res = drill.run("restore-test", "--env", "cloud", "--store-reports", "--param", "keep_reports=1")
        assert res.code == 0, res.stdout[-3000:] + res.stderr
        runs.append(res.finished()["run_id"])
    assert [(b["backup_id"], b["state"]) for b in drill.backups("cloud")] == [(backup_id, "restore-tested")]
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="erp/cloud/drills/")[
        "Contents"])  # fmt: skip
    assert keys == [f"erp/cloud/drills/{runs[1]}/{n}" for n in ("erpops.prom", "junit.xml", "report.json")]  # newest
    body = s3_server.client().get_object(Bucket=s3_bucket, Key=keys[2])["Body"].read()
    stored = json.loads(body)
    assert stored["passed"] is True and stored["run_id"] == runs[1] and stored["backup_id"] == backup_id
    prom = s3_server.client().get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read().decode()
    assert parse_prometheus(prom)["erpops_restore_drill_success"] == [('{environment="cloud"}', 1.0)]
    assert drill_databases(seeded_db) == []


def test_backup_under_object_lock_is_listed_locked(drill: Drill, seeded_db, s3_server, s3_locked_bucket) -> None:
    storage = s3_server.storage(s3_locked_bucket, "erp", object_lock="governance", retention_days=1)
    drill.add(
        "locked",
        database={"dsn": seeded_db.server_dsn, "name": seeded_db.dbname},
        storage=storage.model_dump(exclude_none=True),
        odoo={"filestore": str(seeded_db.filestore)},
    )
    res = drill.run("backup", "--env", "locked", "--param", "daily=1", "--param", "weekly=0", "--param", "monthly=0")
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    backup_id = res.finished()["outputs"]["backup_id"]
    [entry] = drill.backups("locked")
    assert entry["backup_id"] == backup_id and entry["locked"] is True and entry["lock_mode"] == "governance"
    table = drill.run("backups", "list", "--env", "locked")
    assert "governance until" in table.stdout
    head = s3_server.client().head_object(Bucket=s3_locked_bucket, Key=f"erp/locked/{backup_id}/db.dump.zst")
    assert head["ObjectLockMode"] == "GOVERNANCE"


def test_a_kept_copy_lands_in_a_data_dir_with_the_line_that_boots_it(drill: Drill, seeded_db) -> None:
    """Issue 17 item 2: a kept drill copy's filestore was in a scratch directory Odoo does not look
    in; with --param data_dir it is <data_dir>/filestore/<db>, and the run says how to boot it."""
    import shutil

    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    assert drill.run("backup", "--env", "local", "--param", "prune=false").code == 0
    data_dir = drill.root / "odoo-data"
    refused = drill.run("restore-test", "--env", "local", "--param", f"data_dir={data_dir}")
    assert refused.code == 1 and "add --keep" in refused.stdout + refused.stderr
    assert drill_databases(seeded_db) == [] and not data_dir.exists()  # refused before anything

    res = drill.run("restore-test", "--env", "local", "--keep", "--param", f"data_dir={data_dir}")
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    db = res.step("restore")["outputs"]["database"]
    try:
        assert res.step("restore")["outputs"]["filestore"] == str(data_dir / "filestore" / db)
        assert any((data_dir / "filestore" / db).glob("??/*"))  # Odoo's layout: <data_dir>/filestore/<db>/ab/...
        said = [e["message"] for e in res.events if e.get("event") == "step.log" and e.get("step") == "boot"]
        assert said == [f"boot the kept copy: odoo --data-dir {data_dir} -d {db} --db-filter '^{db}$'"], said
    finally:
        _drop_kept(drill, db, res.finished()["run_id"])
        shutil.rmtree(data_dir, ignore_errors=True)
    assert drill_databases(seeded_db) == []
