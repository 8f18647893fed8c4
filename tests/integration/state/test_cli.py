"""``erpops runs list/show`` read the journal back; ``erpops env check`` against real targets."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.fixtures.postgres import PgServer
from tests.integration.state.conftest import Workspace, _new_database

RUNBOOK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {{name: {name}, version: 2.1.0}}
params:
  jobs: {{type: integer, default: 2}}
steps:
  - {{id: first, action: log, with: {{message: "jobs={{{{ params.jobs }}}}"}}}}
  - {{id: second, action: exec, retry: {{attempts: 2, backoff: 10ms}},
     with: {{argv: [{py}, -c, "import sys; sys.exit({code})"], temporary_exit_codes: [3]}}}}
"""


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_runs_list_filters_and_show(ws: Workspace) -> None:
    ws.write("good.yaml", RUNBOOK.format(name="good", py=sys.executable, code=0))
    ws.write("bad.yaml", RUNBOOK.format(name="bad", py=sys.executable, code=3))
    assert ws.erpops("run", "good.yaml", "--env", "prod", "--param", "jobs=4").returncode == 0
    assert ws.erpops("run", "bad.yaml", "--env", "staging").returncode == 1

    everything = _json_lines(ws.erpops("runs", "list", "--json").stdout)
    assert [r["runbook"] for r in everything] == ["bad", "good"]  # newest first
    assert [r["runbook"] for r in _json_lines(ws.erpops("runs", "list", "--json", "--env", "prod").stdout)] == ["good"]
    assert _json_lines(ws.erpops("runs", "list", "--json", "--state", "failed").stdout)[0]["runbook"] == "bad"
    assert _json_lines(ws.erpops("runs", "list", "--json", "--runbook", "good").stdout)[0]["params"] == {"jobs": 4}
    assert len(_json_lines(ws.erpops("runs", "list", "--json", "--since", "1h").stdout)) == 2
    assert _json_lines(ws.erpops("runs", "list", "--json", "--since", "2999-01-01").stdout) == []
    assert ws.erpops("runs", "list", "--since", "yesterday-ish").returncode == 2
    table = ws.erpops("runs", "list")
    assert table.returncode == 0 and "good" in table.stdout and "failed" in table.stdout

    bad_id = everything[0]["id"]
    shown = json.loads(ws.erpops("runs", "show", bad_id, "--json").stdout)
    assert shown["state"] == "failed" and shown["version"] == "2.1.0" and len(shown["sha256"]) == 64
    assert shown["user"] and shown["host"] and shown["duration"] is not None
    attempts = [(s["step"], s["attempt"], s["outcome"]) for s in shown["steps"]]
    assert attempts == [("first", 1, "succeeded"), ("second", 1, "failed"), ("second", 2, "failed")]
    assert "exited with code 3" in shown["steps"][-1]["error"] and shown["steps"][0]["duration"] is not None
    assert [p["step"] for p in shown["plan"]] == ["first", "second"]
    text = ws.erpops("runs", "show", bad_id)
    assert text.returncode == 0 and "second" in text.stdout and "exited with code 3" in text.stdout
    assert ws.erpops("runs", "show", "nope").returncode == 2


def test_env_check_against_real_targets(ws: Workspace, pg_server: PgServer) -> None:
    dsn = _new_database(pg_server)
    (ws.root / "backups").mkdir()
    ws.write(
        "erpops.yaml",
        f"""
        environments:
          lab:
            database: {{dsn: "env:LAB_DSN", name: odoo}}
            standby: {{dsn: "{dsn}"}}
            storage: {{url: "file://{ws.root / "backups"}"}}
        """,
    )
    res = ws.erpops("env", "check", "--env", "lab", "--json", LAB_DSN=dsn)
    checks = {c["target"]: c for c in _json_lines(res.stdout)}
    assert checks["database"]["status"] == "ok" and "primary" in checks["database"]["detail"]
    assert checks["storage"]["status"] == "ok" and checks["state store"]["status"] == "ok"
    assert checks["standby"]["status"] == "failed" and "not in recovery" in checks["standby"]["detail"]
    assert checks["runtime"]["status"] == "skipped"
    assert res.returncode == 3  # the 'standby' is a primary
    listed = _json_lines(ws.erpops("env", "list", "--json").stdout)
    assert {e["name"] for e in listed} == {"lab", "sandbox"}
    assert next(e for e in listed if e["name"] == "lab")["database"] == "env:LAB_DSN"


def test_runs_compare_puts_a_rehearsal_beside_the_real_run(ws: Workspace) -> None:
    ws.write("cutover.yaml", RUNBOOK.format(name="cutover", py=sys.executable, code=0))
    ws.write("shaky.yaml", RUNBOOK.format(name="cutover", py=sys.executable, code=3))
    assert ws.erpops("run", "cutover.yaml", "--env", "prod").returncode == 0
    assert ws.erpops("run", "shaky.yaml", "--env", "prod").returncode == 1
    rehearsal, real = reversed([r["id"] for r in _json_lines(ws.erpops("runs", "list", "--json").stdout)])

    doc = json.loads(ws.erpops("runs", "compare", rehearsal, real, "--json").stdout)
    assert (doc["a"]["run_id"], doc["b"]["run_id"]) == (rehearsal, real)
    steps = {s["step"]: s for s in doc["steps"]}
    assert list(steps) == ["first", "second"]
    assert steps["second"]["a"]["outcome"] == "succeeded" and steps["second"]["a"]["attempts"] == 1
    assert steps["second"]["b"]["outcome"] == "failed" and steps["second"]["b"]["attempts"] == 2
    assert steps["first"]["delta_seconds"] is not None
    assert "outcome: succeeded in A, failed in B" in doc["differences"]
    assert "second: succeeded in A, failed in B" in doc["differences"]
    assert "second: 1 attempt(s) in A, 2 in B" in doc["differences"]
    totals = doc["totals"]
    assert totals["delta_seconds"] == round(totals["b_seconds"] - totals["a_seconds"], 3)
    table = ws.erpops("runs", "compare", rehearsal, real)
    assert table.returncode == 0 and "(2 attempts) failed" in table.stdout and "differs: second" in table.stdout
    assert ws.erpops("runs", "compare", rehearsal, "nope").returncode == 2
