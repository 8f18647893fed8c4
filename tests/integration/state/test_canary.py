"""The canary: a secret used in an exec environment, in a template, in a failing step, in an
error message, in a would-be command line and in an unexpected exception, then searched for in
every byte erpops wrote — stdout, stderr, the state store (files or tables), the audit trail and
saved tracebacks. It must be nowhere."""

from __future__ import annotations

import base64
import secrets
import sys

from tests.integration.state.conftest import Workspace

RUNBOOK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {{name: canary, version: 1.0.0}}
params:
  token: {{type: secret, default: "env:ERPOPS_CANARY"}}
steps:
  - id: in-exec-env
    action: exec
    with: {{argv: [{py}, child.py], secret_env: {{CANARY: "env:ERPOPS_CANARY"}}}}
  - id: in-template
    action: log
    with: {{message: "the token is {{{{ params.token }}}}"}}
  - id: in-failing-step
    action: exec
    on_failure: continue
    with:
      argv:
        - {py}
        - -c
        - "import os, sys; print('out', os.environ['C']); print('err', os.environ['C'], file=sys.stderr); sys.exit(3)"
      secret_env: {{C: "{{{{ params.token }}}}"}}
  - id: in-command-line
    action: exec
    on_failure: continue
    with: {{argv: [echo, "{{{{ params.token }}}}"]}}
  - id: in-unexpected-exception
    action: wait
    on_failure: continue
    with: {{until: {{tcp: "127.0.0.1:{{{{ params.token }}}}"}}, timeout: 1s}}
  - id: in-error-message
    action: assert
    with: {{that: false, message: "token {{{{ params.token }}}} was rejected"}}
finally:
  - id: report
    action: log
    with: {{message: "finally: {{{{ params.token }}}}"}}
"""

CHILD = """
import os
value = os.environ.get("CANARY", "")
cmdline = open("/proc/self/cmdline", "rb").read()
ok = len(value) > 10 and value.encode() not in cmdline
open("child-result", "w").write("ok" if ok else "bad")
print("child sees", value)
"""


def _every_byte(ws: Workspace, outputs: list[str]) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = [(f"output {i}", o.encode()) for i, o in enumerate(outputs)]
    for d in (ws.xdg_state, ws.root / "state"):  # XDG state (tracebacks, audit), SQLite store + audit
        for path in d.rglob("*") if d.exists() else []:
            if path.is_file():
                found.append((str(path), path.read_bytes()))
    if ws.store_url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(ws.store_url) as conn:
            tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            assert {"runs", "steps", "approvals", "records", "locks", "audit"} <= set(tables)
            for table in tables:
                rows = conn.execute(f"SELECT t::text FROM {table} t").fetchall()
                found.append((f"table {table}", "\n".join(r[0] for r in rows).encode()))
    return found


def _assert_nowhere(canary: str, found: list[tuple[str, bytes]]) -> None:
    needles = [canary.encode(), base64.b64encode(canary.encode())]
    leaks = [where for where, data in found for n in needles if n in data]
    assert not leaks, f"the canary leaked into: {leaks}"


def test_the_canary_is_nowhere(ws: Workspace) -> None:
    canary = "canary-" + secrets.token_hex(12)
    ws.write("canary.yaml", RUNBOOK.format(py=sys.executable))
    ws.write("child.py", CHILD)
    outputs: list[str] = []

    for extra in ([], ["--json"]):
        res = ws.erpops("run", "canary.yaml", "--env", "staging", *extra, ERPOPS_CANARY=canary)
        assert res.returncode == 1, res.stdout + res.stderr
        outputs += [res.stdout, res.stderr]
    assert (ws.root / "child-result").read_text() == "ok"  # it got the secret, by environment only

    store = ws.store()
    runs = store.list_runs()
    steps = {s.step_id: s for s in store.list_steps(runs[0].id)}
    store.close()
    assert len(runs) == 2
    # each leak path was exercised (and masked), not skipped
    assert steps["in-failing-step"].outcome == "failed" and "***" in steps["in-failing-step"].error
    assert "command line" in steps["in-command-line"].error
    assert (
        steps["in-unexpected-exception"].outcome == "failed" and "ValueError" in steps["in-unexpected-exception"].error
    )
    assert "***" in steps["in-error-message"].error
    assert steps["in-template"].outputs["message"] == "the token is ***"
    tracebacks = list((ws.xdg_state / "erpops" / "tracebacks").glob("*.txt"))
    assert tracebacks and all("***" in p.read_text() for p in tracebacks)

    for args in (
        ["runs", "list"],
        ["runs", "list", "--json"],
        ["runs", "show", runs[0].id],
        ["runs", "show", runs[0].id, "--json"],
    ):
        shown = ws.erpops(*args)
        assert shown.returncode == 0, shown.stderr
        outputs += [shown.stdout, shown.stderr]
    _assert_nowhere(canary, _every_byte(ws, outputs))


def test_a_literal_secret_parameter_is_never_written(ws: Workspace) -> None:
    literal = "literal-" + secrets.token_hex(12)
    ws.write(
        "lit.yaml",
        """
        apiVersion: erpops/v1
        kind: Runbook
        metadata: {name: lit, version: 1.0.0}
        params:
          password: {type: secret, required: true}
        steps:
          - {id: say, action: log, with: {message: "password={{ params.password }}"}}
          - {id: fail, action: assert, with: {that: false, message: "wrong password {{ params.password }}"}}
        """,
    )
    outputs: list[str] = []
    for extra in ([], ["--json"]):
        res = ws.erpops("run", "lit.yaml", "--env", "staging", "--param", f"password={literal}", *extra)
        assert res.returncode == 1, res.stderr
        outputs += [res.stdout, res.stderr]
    store = ws.store()
    (run, _) = store.list_runs()
    store.close()
    assert run.params == {"password": "***"}
    _assert_nowhere(literal, _every_byte(ws, outputs))
