"""A failover drill end to end through the CLI, against a real primary and its streaming standby:
promote with the write probe, the old primary refusing writes, later runs using the new primary,
a second failover refused until the standby is re-created, and the drill repeated after that."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .conftest import DB, Pair, writable_error

pytestmark = pytest.mark.postgres

SHOW_PRIMARY = """\
apiVersion: erpops/v1
kind: Runbook
metadata: {name: show-primary, version: 1.0.0}
steps:
  - id: show
    action: log
    with: {message: "primary={{ env.database.dsn }} standby={{ env.standby.dsn }}"}
"""


def _failover(pair: Pair, *extra: str):
    return pair.cli(
        "failover", "--env", "drill", "--yes", "--json",
        "--metrics-file", str(pair.work / "failover.prom"),
        "--param", f"report_file={pair.work / 'failover.json'}",
        *extra,
    )  # fmt: skip


def _topology(pair: Pair) -> dict:
    with sqlite3.connect(pair.work / "state.db") as conn:
        row = conn.execute(
            "SELECT data FROM records WHERE kind = 'topology' AND environment = 'drill' AND key = 'current'"
        ).fetchone()
    return json.loads(row[0]) if row else {}


def test_failover_drill_end_to_end(healthy: tuple[Pair, Path, Path]) -> None:
    pair, old_primary, old_standby = healthy
    pair.write_config({"drill": pair.env_config(old_primary, old_standby)})
    pair.reset_state()

    # 1. the failover, measured by the probe
    res = _failover(pair)
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = res.step("report", "finally")["outputs"]
    print(json.dumps({k: v for k, v in report["report"].items() if k != "steps"}, indent=1))
    assert report["succeeded"] is True and report["promoted"] is True
    assert report["lost_rows"] == 0
    unavailable = report["write_unavailable_seconds"]
    assert unavailable is not None and 0 < unavailable < 5, unavailable
    full = report["report"]
    assert full["probe_writes_ok"] >= 2  # the baseline on the old primary, then the new one
    assert full["fence_method"] == "sql" and full["timeline"] >= 2
    assert (
        full["old_primary_only_rows"] == 0
        and "replayed the fenced primary's WAL" in full["old_primary_only_rows_basis"]
    )
    assert {s["id"] for s in full["steps"]} >= {"preflight", "fence", "promote", "repoint", "writable"}
    assert json.loads((pair.work / "failover.json").read_text())["run_id"] == full["run_id"]
    prom = (pair.work / "failover.prom").read_text()
    assert 'erpops_failover_write_unavailable_seconds{environment="drill",mode="failover"}' in prom
    assert 'erpops_failover_lost_rows{environment="drill",mode="failover"} 0' in prom
    assert 'erpops_failover_step_duration_seconds{environment="drill",mode="failover",step="promote"' in prom

    # 2. the old primary refuses writes; the new one takes them
    err = writable_error(pair.dsn(old_primary, DB))
    assert err is not None and "not currently accepting connections" in err, err  # the fence closed it
    assert writable_error(pair.dsn(old_standby, DB)) is None
    assert not pair.in_recovery(old_standby)

    # 3. later runs use the new primary (the topology record is applied when the env is loaded)
    topo = _topology(pair)
    assert topo["verified"] is True and str(old_standby) in topo["primary"]
    (pair.work / "show.yaml").write_text(SHOW_PRIMARY)
    shown = pair.cli("run", "show.yaml", "--env", "drill", "--json")
    assert shown.code == 0, shown.stdout + shown.stderr
    message = shown.step("show")["outputs"]["message"]
    assert f"primary=postgresql://postgres@/postgres?host={old_standby}&" in message, message
    assert f"standby=postgresql://postgres@/postgres?host={old_primary}&" in message, message

    # 4. a second failover on the promoted topology is refused clearly, and changes nothing
    again = _failover(pair)
    assert again.code == 1, again.stdout[-2000:]
    error = again.finished()["error"]
    assert "is not a standby" in error and "former primary" in error and "reseed-standby" in error, error
    assert not again.ran("fence") and not again.ran("promote")
    assert writable_error(pair.dsn(old_standby, DB)) is None
    assert writable_error(pair.dsn(old_primary, DB)) is not None
    assert _topology(pair)["run_id"] == topo["run_id"]

    # 5. re-create the standby from the new primary, and the drill repeats (back to the first server)
    reseeded = pair.cli("sandbox", "reseed-standby", "--json")
    assert reseeded.code == 0, reseeded.stdout[-2000:] + reseeded.stderr[-2000:]
    assert pair.in_recovery(old_primary)
    res2 = _failover(pair, "--rehearse")  # a rehearsal runs the same steps and reports the same figures
    assert res2.code == 0, res2.stdout[-3000:] + res2.stderr[-3000:]
    report2 = res2.step("report", "finally")["outputs"]
    assert report2["lost_rows"] == 0 and 0 < report2["write_unavailable_seconds"] < 5
    assert report2["report"]["mode"] == "rehearsal"
    assert (
        'erpops_failover_success{environment="drill",mode="rehearsal"} 1' in (pair.work / "failover.prom").read_text()
    )
    assert writable_error(pair.dsn(old_primary, DB)) is None
    assert "not currently accepting connections" in (writable_error(pair.dsn(old_standby, DB)) or "")
    assert str(old_primary) in _topology(pair)["primary"]
