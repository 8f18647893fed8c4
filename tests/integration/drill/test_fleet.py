"""Fleet runs (issue 15, items 1-3) over tenant databases on one real PostgreSQL (twenty in the
main test, four where fewer show the point), each tenant with its own store: a group, a glob, a
comma list and a repeated --env select them (a name matching nothing exits 2); backup and
restore-test with --parallel 2 run each tenant as its own journaled run; a broken tenant fails
alone (exit 1, named), a tenant locked by another run is reported locked while the others go on
(exit 4 only when all are locked); --max-errors stops new starts; JUnit has one testsuite per
tenant and one Prometheus file labels each; ``runs show FLEET`` shows the members together."""

from __future__ import annotations

import json
import sys
import time
from typing import Any
from xml.etree import ElementTree as ET

import psycopg
import pytest
import yaml

from tests.integration.drill.conftest import Drill

TENANTS = ("t1", "t2", "t3", "t4")
#: The estate of issue 15's tests: 20 tenant databases, each with its own store.
TWENTY = tuple(f"t{i:02d}" for i in range(1, 21))


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")]


def _fleet(out: str) -> dict[str, Any]:
    return next(e for e in _events(out) if e["event"] == "fleet.finished")


def _estate(drill: Drill, seeded_db: Any, names: tuple[str, ...], pair: list[str]) -> Any:
    with psycopg.connect(seeded_db.server_dsn, autocommit=True) as conn:
        for t in names:
            conn.execute(f"DROP DATABASE IF EXISTS tenant_{t}")
            conn.execute(f"CREATE DATABASE tenant_{t} TEMPLATE {seeded_db.dbname}")
    envs = {
        t: {"database": {"dsn": seeded_db.server_dsn, "name": f"tenant_{t}"},
            "storage": {"url": f"file://{drill.root / 'stores' / t}"},
            "odoo": {"filestore": str(seeded_db.filestore)}}
        for t in names
    }  # fmt: skip
    config = {"state": f"sqlite:///{drill.root / 'state.db'}", "environments": envs,
              "groups": {"tenants": ["t*"], "pair": pair}}  # fmt: skip
    drill.config.write_text(yaml.safe_dump(config))
    yield drill
    with psycopg.connect(seeded_db.server_dsn, autocommit=True) as conn:
        for t in names:
            conn.execute(f"DROP DATABASE IF EXISTS tenant_{t}")


@pytest.fixture
def tenants(drill: Drill, seeded_db: Any) -> Any:
    yield from _estate(drill, seeded_db, TENANTS, ["t1", "t2"])


@pytest.fixture
def twenty(drill: Drill, seeded_db: Any) -> Any:
    yield from _estate(drill, seeded_db, TWENTY, ["t01", "t02"])


def _edit(drill: Drill, fn: Any) -> None:
    raw = yaml.safe_load(drill.config.read_text())
    fn(raw)
    drill.config.write_text(yaml.safe_dump(raw))


def test_fleet_backup_and_drills_of_twenty_tenants_with_a_broken_and_a_locked_one(twenty: Drill) -> None:
    d = twenty
    res = d.run("backup", "--env", "tenants", "--parallel", "2", timeout=300)
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    fleet = _fleet(res.stdout)
    assert [m["environment"] for m in fleet["members"]] == list(TWENTY)
    assert all(m["outcome"] == "succeeded" and m["outputs"]["backup_id"] for m in fleet["members"])
    started = [e for e in _events(res.stdout) if e["event"] == "run.started"]
    assert {e["environment"] for e in started} == set(TWENTY) and {e["fleet"] for e in started} == {fleet["fleet"]}
    assert len({e["run_id"] for e in started}) == 20  # each tenant its own run
    for t in TWENTY:
        assert any((d.root / "stores" / t / t).iterdir())
    # --parallel 2: never more than two tenants running at once, and at some point two
    running, most = 0, 0
    for e in _events(res.stdout):
        if e["event"] == "run.started" and not e.get("depth"):
            running += 1
        elif e["event"] == "run.finished" and not e.get("depth"):
            running -= 1
        most = max(most, running)
    assert most == 2

    # one tenant broken on purpose: the others pass, the report names it
    (dump,) = (d.root / "stores" / "t03" / "t03").glob("*/db.dump.zst")  # its backup corrupted
    raw = bytearray(dump.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dump.write_bytes(bytes(raw))
    junit, prom = d.root / "fleet.xml", d.root / "fleet.prom"
    res = d.run("restore-test", "--env", "t*", "--parallel", "2", "--junit", str(junit), "--metrics-file", str(prom),
                timeout=600)  # fmt: skip
    assert res.code == 1, res.stdout[-3000:] + res.stderr
    outcome = {m["environment"]: m["outcome"] for m in _fleet(res.stdout)["members"]}
    assert outcome == {t: "failed" if t == "t03" else "succeeded" for t in TWENTY}
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert len(suites) == 20  # the broken tenant's report too
    text = prom.read_text()
    assert text.count("# TYPE erpops_restore_drill_success gauge") == 1
    for t, ok in (("t01", 1), ("t03", 0), ("t20", 1)):
        assert f'erpops_restore_drill_success{{environment="{t}"}} {ok}' in text

    # the on-call view of the twenty: one row each, two queries each, the broken one not ok
    t0 = time.monotonic()
    status = d.run("status", "--env", "tenants", "--json", json_events=False)
    took = time.monotonic() - t0
    rows = {r["environment"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert status.code == 1 and list(rows) == list(TWENTY), status.stdout[-2000:] + status.stderr
    assert all(r["queries"] == 2 for r in rows.values()) and rows["t03"]["level"] != "ok"
    assert all(rows[t]["level"] == "ok" for t in TWENTY if t != "t03"), {t: r["level"] for t, r in rows.items()}
    assert took < 10, took  # the bench reports it properly (0.46 s)

    # the table for a person, and the fleet read back from the journal
    table = d.run("backup", "--env", "pair", json_events=False, timeout=300)
    assert table.code == 0 and "2 succeeded" in table.stdout, table.stdout
    fleet_id = next(line.split()[1].rstrip(":") for line in table.stdout.splitlines() if line.startswith("fleet "))
    shown = json.loads(d.run("runs", "show", fleet_id, "--json", json_events=False).stdout)
    assert [m["environment"] for m in shown["members"]] == ["t01", "t02"] and shown["runbook"] == "backup"

    # a tenant locked by another run: reported locked, the others go on; all locked: exit 4
    hold = d.runbook("hold", "apiVersion: erpops/v1\nkind: Runbook\nmetadata: {name: hold, version: 1.0.0}\n"
                     "lock: environment\nsteps:\n  - id: wait\n    action: exec\n"
                     f"    with: {{argv: [{sys.executable}, -c, 'import time; time.sleep(30)']}}\n")  # fmt: skip
    holder = d.spawn("run", str(hold), "--env", "t01")
    try:
        deadline = time.monotonic() + 20
        while "step.started" not in (d.root / "spawned.out").read_text():
            assert time.monotonic() < deadline, (d.root / "spawned.out").read_text()
            time.sleep(0.1)
        res = d.run("backup", "--env", "t01", "--env", "t02", timeout=300)
        members = {m["environment"]: m for m in _fleet(res.stdout)["members"]}
        assert res.code == 1 and members["t01"]["outcome"] == "locked" and members["t02"]["outcome"] == "succeeded"
        assert "locked" in (members["t01"]["error"] or "")
        alone = d.run("backup", "--env", "t01,t01", timeout=60)  # t01 once: not a fleet
        assert alone.code == 4, alone.stdout[-2000:]
    finally:
        holder.kill()
        holder.wait()


def test_selection_errors_and_max_errors(tenants: Drill) -> None:
    d = tenants
    unknown = d.run("backup", "--env", "t1,nope", json_events=False)
    assert unknown.code == 2 and "unknown environment 'nope'" in unknown.stderr + unknown.stdout
    one_command = d.run("backups", "list", "--env", "tenants", json_events=False)
    assert one_command.code == 2 and "selects 4 environments" in one_command.stderr + one_command.stdout

    for t in ("t1", "t2"):  # broken: their database is gone
        _edit(d, lambda raw, t=t: raw["environments"][t]["database"].update(name="tenant_gone"))
    res = d.run("backup", "--env", "tenants", "--max-errors", "1", timeout=300)
    assert res.code == 1, res.stdout[-3000:]
    outcome = {m["environment"]: m["outcome"] for m in _fleet(res.stdout)["members"]}
    assert outcome == {"t1": "failed", "t2": "not started", "t3": "not started", "t4": "not started"}
    res = d.run("backup", "--env", "tenants", "--max-errors", "50%", timeout=300)
    outcome = {m["environment"]: m["outcome"] for m in _fleet(res.stdout)["members"]}
    assert outcome == {"t1": "failed", "t2": "failed", "t3": "not started", "t4": "not started"}
    assert d.run("backup", "--env", "tenants", "--max-errors", "0", json_events=False).code == 2


def test_status_over_healthy_stale_and_overdue_tenants(tenants: Drill, seeded_db: Any) -> None:
    """Item 4: one row per tenant; a tenant never backed up is failing (no verified backup), one
    with an overdue scheduled job is a warning, a drilled one is ok; JSON, metrics, exit codes,
    and the queries it makes per environment."""
    d = tenants
    assert d.run("backup", "--env", "t1,t2,t3", "--parallel", "2", timeout=300).code == 0
    assert d.run("restore-test", "--env", "t1,t2,t3", "--parallel", "2", timeout=600).code == 0
    with psycopg.connect(seeded_db.server_dsn.replace("/postgres?", "/tenant_t3?"), autocommit=True) as conn:
        conn.execute("UPDATE ir_cron SET nextcall = (now() AT TIME ZONE 'UTC') - interval '3 hours' "
                     "WHERE id = (SELECT min(id) FROM ir_cron WHERE active)")  # fmt: skip
    t0 = time.monotonic()
    res = d.run("status", "--env", "tenants", "--json", "--metrics-file", str(d.root / "status.prom"),
                json_events=False)  # fmt: skip
    took = time.monotonic() - t0
    assert res.code == 1, res.stdout + res.stderr
    rows = {r["environment"]: r for r in map(json.loads, res.stdout.splitlines())}
    levels = {t: r["level"] for t, r in rows.items()}
    assert levels == {"t1": "ok", "t2": "ok", "t3": "warning", "t4": "failing"}, rows
    checks = {t: {c["check"]: c for c in r["checks"]} for t, r in rows.items()}
    assert "scheduled jobs overdue" in checks["t3"]["crons"]["detail"] and checks["t3"]["crons"]["overdue_crons"] == 1
    assert checks["t4"]["backups"]["level"] == "failing" and checks["t4"]["drill"]["level"] == "warning"
    assert checks["t1"]["restore-tested"]["level"] == "ok" and checks["t1"]["drill"]["detail"].startswith(
        "last drill passed"
    )
    assert checks["t1"]["database"]["connections"] >= 1 and all(r["queries"] == 2 for r in rows.values())
    assert took < 10, took  # four tenants at once (the bench reports it properly)
    prom = (d.root / "status.prom").read_text()
    assert 'erpops_status{environment="t4",check="backups"} 2' in prom
    assert 'erpops_status_overdue_crons{environment="t3"} 1' in prom

    one = d.run("status", "--env", "t1", json_events=False)
    assert one.code == 0 and "last drill passed" in one.stdout, one.stdout + one.stderr
    table = d.run("status", "--env", "tenants", json_events=False)
    assert table.code == 1 and "t4 backups: no verified backup" in " ".join(table.stdout.split()), table.stdout


def test_resume_of_a_fleet_resumes_only_its_failed_members(tenants: Drill) -> None:
    d = tenants
    assert d.run("backup", "--env", "t1,t2", timeout=300).code == 0
    (dump,) = (d.root / "stores" / "t2" / "t2").glob("*/db.dump.zst")
    good = dump.read_bytes()
    dump.write_bytes(good[: len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF]) + good[len(good) // 2 + 1 :])
    res = d.run("restore-test", "--env", "t1,t2", timeout=600)
    fleet = _fleet(res.stdout)
    assert res.code == 1 and [m["outcome"] for m in fleet["members"]] == ["succeeded", "failed"]
    first = {m["environment"]: m["run_id"] for m in fleet["members"]}
    dump.write_bytes(good)  # the cause fixed
    again = d.run("runs", "resume", fleet["fleet"], "--yes", "--json", json_events=False, timeout=600)
    assert again.code == 0, again.stdout[-3000:] + again.stderr
    resumed = _fleet(again.stdout)
    assert {m["environment"]: (m["outcome"], m["run_id"]) for m in resumed["members"]} == {
        "t1": ("succeeded", first["t1"]), "t2": ("succeeded", first["t2"])}  # fmt: skip
    started = [e for e in _events(again.stdout) if e["event"] == "run.started"]
    assert [e["environment"] for e in started] == ["t2"] and started[0]["resumed"] is True
    assert d.run("runs", "resume", fleet["fleet"], "--yes", json_events=False).code == 2  # nothing left to resume


def test_status_reports_a_lagging_and_a_stopped_standby(drill: Drill, pg_pair: Any) -> None:
    from erpops.backends.postgres import local_server

    primary, standby = pg_pair.primary, pg_pair.standby
    env = {"database": {"dsn": primary.dsn(), "name": "postgres"}, "standby": {"dsn": standby.dsn()}}
    drill.config.write_text(
        yaml.safe_dump({"state": f"sqlite:///{drill.root / 'state.db'}", "environments": {"r": env}})
    )

    def replication() -> dict[str, Any]:
        res = drill.run("status", "--env", "r", "--json", "--max-lag", "1", json_events=False)
        (row,) = [json.loads(x) for x in res.stdout.splitlines()]
        return next(c for c in row["checks"] if c["check"] == "replication")

    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (id serial, at timestamptz DEFAULT now())")
    time.sleep(0.5)
    assert replication()["level"] == "ok"
    with psycopg.connect(standby.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO lag_probe DEFAULT VALUES")
        time.sleep(2.5)
        lagging = replication()
        assert lagging["level"] == "warning" and lagging["replication_lag"] >= 2, lagging
        assert "more than 1s" in lagging["detail"]
    finally:
        with psycopg.connect(standby.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    local_server.stop(standby.datadir, mode="fast")
    stopped = replication()
    assert stopped["level"] == "warning" and "not streaming" in stopped["detail"], stopped
