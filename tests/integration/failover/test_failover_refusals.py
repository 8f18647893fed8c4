"""A failover that must not happen does not: each refusal exits with its code, says why with the
numbers, and leaves both servers as they were (primary writable, standby in recovery)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from psycopg import sql

from erpops.backends.postgres import client as pg
from tests.fixtures.sql import scalar

from .conftest import DB, Pair, writable_error

pytestmark = pytest.mark.postgres


def _unchanged(pair: Pair, primary: Path, standby: Path) -> None:
    assert writable_error(pair.dsn(primary, DB)) is None
    assert pair.in_recovery(standby)
    assert not (pair.work / "state.db").exists() or _no_topology(pair)


def _no_topology(pair: Pair) -> bool:
    import sqlite3

    with sqlite3.connect(pair.work / "state.db") as conn:
        return scalar(conn, "SELECT count(*) FROM records WHERE kind = 'topology'") == 0


@pytest.fixture
def fresh_state(healthy: tuple[Pair, Path, Path]) -> tuple[Pair, Path, Path]:
    pair = healthy[0]
    pair.reset_state()
    return healthy


def test_standby_unreachable_exits_3_and_changes_nothing(fresh_state: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = fresh_state
    pair.write_config({"drill": pair.env_config(primary, pair.root / "no-such-standby")})
    res = pair.cli("failover", "--env", "drill", "--yes", "--json")
    assert res.code == 3, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.step("preflight")["status"] == "failed"
    assert "cannot connect" in res.finished()["error"]
    assert not res.ran("probe-start") and not res.ran("fence") and not res.ran("promote")
    report = res.step("report", "finally")["outputs"]["report"]
    assert report["succeeded"] is False and report["failed_step"] == "preflight" and report["promoted"] is False
    _unchanged(pair, primary, standby)


def test_replay_lag_over_the_limit_is_refused_with_the_numbers(fresh_state: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = fresh_state
    pair.write_config({"drill": pair.env_config(primary, standby)})
    with pg.connect(pair.dsn(standby)) as sconn, pg.connect(pair.dsn(primary, DB)) as pconn:
        pconn.execute("INSERT INTO res_partner (name) VALUES ('before pause')")
        time.sleep(0.3)
        sconn.execute("SELECT pg_wal_replay_pause()")
        try:
            pconn.execute("INSERT INTO res_partner (name) VALUES ('not replayed')")
            time.sleep(1.2)
            res = pair.cli("failover", "--env", "drill", "--yes", "--json", "--max-lag", "500ms")
            state = scalar(sconn, "SELECT pg_get_wal_replay_pause_state()")
        finally:
            sconn.execute("SELECT pg_wal_replay_resume()")
    assert res.code == 1, res.stdout[-2000:] + res.stderr[-2000:]
    error = res.finished()["error"]
    assert "replay lag" in error and "over the limit of 0.5s" in error, error
    assert "received" in error and "replayed" in error and "bytes behind the primary" in error, error
    assert "--force" in error
    assert not res.ran("fence") and not res.ran("promote")
    assert state == "paused"  # the refusal did not touch the standby
    _unchanged(pair, primary, standby)


def test_fencing_failure_stops_before_promote(fresh_state: tuple[Pair, Path, Path]) -> None:
    """The old primary does not answer and its fence command fails: nothing is promoted."""
    pair, primary, standby = fresh_state
    marker = pair.work / "fence-called"
    marker.unlink(missing_ok=True)
    gone = pair.root / "lost-primary"
    cfg = pair.env_config(gone, standby)
    cfg["database"]["fence_command"] = ["sh", "-c", f'echo "$ERPOPS_FENCE_TARGET $ERPOPS_RUN_ID" > {marker}; exit 1']
    pair.write_config({"drill": cfg})
    res = pair.cli("failover", "--env", "drill", "--yes", "--json")
    assert res.code == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.step("fence")["status"] == "failed"
    error = res.finished()["error"]
    assert "cannot confirm that the old primary" in error and "exited with code 1" in error, error
    assert "stopped before promoting" in error
    assert not res.ran("promote") and not res.ran("repoint")
    assert str(gone) in marker.read_text()
    _unchanged(pair, primary, standby)


def test_unreachable_primary_without_fence_command_needs_force(fresh_state: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = fresh_state
    pair.write_config({"drill": pair.env_config(pair.root / "lost-primary", standby)})
    res = pair.cli("failover", "--env", "drill", "--yes", "--json")
    assert res.code == 1
    assert "no fence_command is configured" in res.finished()["error"]
    assert not res.ran("promote")
    _unchanged(pair, primary, standby)


def test_production_needs_approval_and_rehearsal_refuses_production(fresh_state: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = fresh_state
    pair.write_config({"prod": pair.env_config(primary, standby, tier="production")})
    res = pair.cli("failover", "--env", "prod", "--json")  # no terminal, no --yes
    assert res.code == 5, res.stdout[-2000:]
    assert not res.ran("preflight")
    res = pair.cli("failover", "--env", "prod", "--json", "--yes", "--rehearse")
    assert res.code == 1
    assert "--rehearse runs on sandbox or staging only" in res.finished()["error"]
    assert not res.ran("preflight")
    _unchanged(pair, primary, standby)


def test_dry_run_plans_without_changing_anything(fresh_state: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = fresh_state
    pair.write_config({"drill": pair.env_config(primary, standby)})
    res = pair.cli("failover", "--env", "drill", "--json", "--dry-run")
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    plan = {p["step"]: p for p in next(e for e in res.events if e["event"] == "run.planned")["plan"]}
    assert plan["fence"]["change"] == "will change" and str(primary) in plan["fence"]["summary"]
    assert plan["promote"]["change"] == "may change"  # waits for the fence's WAL position: known at run time
    assert plan["repoint"]["change"] == "will change" and str(standby) in plan["repoint"]["summary"]
    assert plan["preflight"]["change"] == "no change"
    # the health gate waits for the promoted server (regression: it named the server being fenced)
    assert str(standby) in plan["writable"]["summary"] and str(primary) not in plan["writable"]["summary"]
    _unchanged(pair, primary, standby)


def test_standby_that_receives_nothing_from_a_reachable_primary_is_refused(
    fresh_state: tuple[Pair, Path, Path],
) -> None:
    """Everything it received is replayed (no replay lag), but it lags the primary it lost."""
    pair, primary, standby = fresh_state
    pair.write_config({"drill": pair.env_config(primary, standby)})
    with pg.connect(pair.dsn(standby)) as sconn:
        conninfo = scalar(sconn, "SHOW primary_conninfo")
        sconn.execute("ALTER SYSTEM SET primary_conninfo = ''")
        sconn.execute("SELECT pg_reload_conf()")
        try:
            deadline = time.monotonic() + 10
            while scalar(sconn, "SELECT count(*) FROM pg_stat_wal_receiver"):
                assert time.monotonic() < deadline, "the WAL receiver did not stop"
                time.sleep(0.05)
            with pg.connect(pair.dsn(primary, DB)) as pconn:
                pconn.execute("INSERT INTO res_partner (name) VALUES ('never received')")
            res = pair.cli("failover", "--env", "drill", "--yes", "--json")
        finally:
            sconn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
            sconn.execute("SELECT pg_reload_conf()")
    assert res.code == 1, res.stdout[-2000:] + res.stderr[-2000:]
    error = res.finished()["error"]
    assert "does not receive WAL" in error and "bytes ahead" in error, error
    assert not res.ran("fence")
    _unchanged(pair, primary, standby)
