"""Resume: kill -9 an ``erpops run`` in the middle of a run and continue it to success."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from tests.integration.state.conftest import Workspace, lines, wait_for

FIVE_STEPS = """
apiVersion: erpops/v1
kind: Runbook
metadata: {{name: five, version: 1.0.0}}
params:
  label: {{type: string, default: x}}
lock: environment
steps:
  - {{id: s1, action: exec, with: {{argv: [{py}, step.py, log, s1]}}}}
  - {{id: s2, action: exec, with: {{argv: [{py}, step.py, log, "s2-{{{{ params.label }}}}"]}}}}
  - {{id: s3, action: exec, with: {{argv: [{py}, step.py, log, s3, --hold, go]}}}}
  - {{id: s4, action: exec, with: {{argv: [{py}, step.py, log, "s4-{{{{ steps.s2.outputs.exit_code }}}}"]}}}}
  - {{id: s5, action: exec, with: {{argv: [{py}, step.py, log, s5]}}}}
finally:
  - {{id: done, action: exec, with: {{argv: [{py}, step.py, log, finally]}}}}
"""


def _start_and_kill(ws: Workspace) -> str:
    ws.write("five.yaml", FIVE_STEPS.format(py=sys.executable))
    proc = ws.spawn("run", "five.yaml", "--env", "staging", "--param", "label=blue", "--json")
    wait_for(lambda: "s3" in lines(ws.root / "log"), what="step s3 to start")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: not _alive(ws.root / "log.s3.pid"), what="the orphaned s3 program to notice")
    store = ws.store()
    (run,) = store.list_runs()
    store.close()
    return run.id


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (ProcessLookupError, FileNotFoundError, ValueError):
        return False
    return True


def test_sigkill_then_resume_runs_each_completed_step_once(ws: Workspace) -> None:
    run_id = _start_and_kill(ws)
    assert lines(ws.root / "log") == ["s1", "s2-blue", "s3"]
    store = ws.store()
    run = store.get_run(run_id)
    assert run.state == "running"  # the process died before it could say anything
    assert [(s.step_id, s.outcome) for s in store.list_steps(run_id)][:2] == [("s1", "succeeded"), ("s2", "succeeded")]
    store.close()

    (ws.root / "go").touch()
    resumed = ws.erpops("runs", "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert events[0]["event"] == "run.started" and events[0]["resumed"] is True
    assert events[0]["params"] == {"label": "blue"}  # the same params, from the journal
    ran = [e["step"] for e in events if e["event"] == "step.started"]
    assert ran == ["s3", "s4", "s5", "done"]
    # s1 and s2 ran exactly once; s3 was in flight when killed and ran again; s4 used s2's outputs
    assert lines(ws.root / "log") == ["s1", "s2-blue", "s3", "s3", "s4-0", "s5", "finally"]

    store = ws.store()
    run = store.get_run(run_id)
    assert (run.state, run.resumes) == ("succeeded", 1)
    outcomes = [(s.step_id, s.outcome) for s in store.list_steps(run_id)]
    store.close()
    assert outcomes[:2] == [("s1", "succeeded"), ("s2", "succeeded")]
    assert ("s3", "succeeded") in outcomes and ("done", "succeeded") in outcomes
    shown = json.loads(ws.erpops("runs", "show", run_id, "--json").stdout)
    assert shown["state"] == "succeeded" and shown["resumes"] == 1

    again = ws.erpops("runs", "resume", run_id)
    assert again.returncode == 2 and "nothing to resume" in again.stderr


def test_resume_refuses_a_changed_runbook_unless_forced(ws: Workspace) -> None:
    run_id = _start_and_kill(ws)
    path = ws.root / "five.yaml"
    path.write_text(path.read_text().replace("version: 1.0.0", "version: 1.0.1"))
    (ws.root / "go").touch()
    refused = ws.erpops("runs", "resume", run_id)
    assert refused.returncode == 2, refused.stderr
    assert "changed since run" in refused.stderr and "--force" in refused.stderr
    assert lines(ws.root / "log") == ["s1", "s2-blue", "s3"]  # nothing ran
    forced = ws.erpops("runs", "resume", run_id, "--force")
    assert forced.returncode == 0, forced.stderr
    assert lines(ws.root / "log")[3:] == ["s3", "s4-0", "s5", "finally"]


def test_resume_of_a_failed_run_and_literal_secrets(ws: Workspace) -> None:
    ws.write(
        "secret.yaml",
        f"""
        apiVersion: erpops/v1
        kind: Runbook
        metadata: {{name: secret, version: 1.0.0}}
        params:
          token: {{type: secret, required: true}}
          ref: {{type: secret, default: "env:ERPOPS_TEST_REF"}}
        steps:
          - {{id: a, action: exec, with: {{argv: [{sys.executable}, step.py, log, a]}}}}
          - id: b
            action: exec
            with:
              argv: [{sys.executable}, check.py]
              secret_env: {{T: "{{{{ params.token }}}}", R: "{{{{ params.ref }}}}"}}
          - {{id: c, action: exec, with: {{argv: [{sys.executable}, step.py, log, c]}}}}
        """,
    )
    ws.write(
        "check.py",
        """
        import os, sys
        ok = os.path.exists("ok") and os.environ["T"] == open("t").read() and os.environ["R"] == open("r").read()
        sys.exit(0 if ok else 1)
        """,
    )
    (ws.root / "t").write_text("lit-secret-1")
    (ws.root / "r").write_text("ref-value-1")
    failed = ws.erpops(
        "run", "secret.yaml", "--env", "staging", "--param", "token=lit-secret-1", ERPOPS_TEST_REF="ref-value-1"
    )
    assert failed.returncode == 1, failed.stderr
    store = ws.store()
    (run,) = store.list_runs()
    assert run.params == {"token": "***", "ref": "env:ERPOPS_TEST_REF"}
    store.close()
    (ws.root / "ok").touch()

    missing = ws.erpops("runs", "resume", run.id, ERPOPS_TEST_REF="ref-value-1")
    assert missing.returncode == 2 and "--param token=" in missing.stderr

    wrong = ws.erpops("runs", "resume", run.id, "--param", "token=lit-secret-1", "--param", "nope=1")
    assert wrong.returncode == 2

    ok = ws.erpops("runs", "resume", run.id, "--param", "token=lit-secret-1", ERPOPS_TEST_REF="ref-value-1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert lines(ws.root / "log") == ["a", "c"]


def test_resume_of_an_unknown_or_live_run(ws: Workspace) -> None:
    unknown = ws.erpops("runs", "resume", "20260101T000000Z-000000")
    assert unknown.returncode == 2 and "no run" in unknown.stderr

    ws.write("five.yaml", FIVE_STEPS.format(py=sys.executable))
    proc = ws.spawn("run", "five.yaml", "--env", "staging")
    try:
        wait_for(lambda: "s3" in lines(ws.root / "log"), what="step s3 to start")
        store = ws.store()
        (run,) = store.list_runs()
        store.close()
        live = ws.erpops("runs", "resume", run.id)
        assert live.returncode == 4 and "still running" in live.stderr
    finally:
        (ws.root / "go").touch()
        proc.wait(30)
    assert proc.returncode == 0
