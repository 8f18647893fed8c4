"""The production guard: destructive runbooks on a production tier need an approval — typed
environment name on a terminal, or --yes — and are refused (exit 5) before any change without
either. Every approval is journaled and audited: who, when, how."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.integration.state.conftest import Workspace, lines

DESTRUCTIVE = """
apiVersion: erpops/v1
kind: Runbook
metadata: {{name: wipe, version: 1.0.0, destructive: {destructive}}}
steps:
  - {{id: change, action: exec, with: {{argv: [{py}, step.py, log, changed]}}}}
"""


def _write(ws: Workspace, destructive: bool = True) -> None:
    ws.write("wipe.yaml", DESTRUCTIVE.format(py=sys.executable, destructive=str(destructive).lower()))


def test_no_terminal_no_yes_exits_5_before_any_change(ws: Workspace) -> None:
    _write(ws)
    res = ws.erpops("run", "wipe.yaml", "--env", "prod")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "--yes" in res.stdout + res.stderr
    assert lines(ws.root / "log") == []  # nothing changed
    store = ws.store()
    (run,) = store.list_runs()
    assert run.state == "failed" and "approval" in (run.error or "")
    assert store.list_steps(run.id) == [] and store.list_approvals(run.id) == []
    store.close()


def test_yes_approves_and_is_journaled_and_audited(ws: Workspace) -> None:
    _write(ws)
    res = ws.erpops("run", "wipe.yaml", "--env", "prod", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert lines(ws.root / "log") == ["changed"]
    store = ws.store()
    (run,) = store.list_runs()
    (approval,) = store.list_approvals(run.id)
    audit = [e for e in store.audit.entries() if e["event"] == "approval"]
    store.close()
    assert approval["how"] == "--yes" and approval["who"] == f"{run.user}@{run.host}"
    assert approval["at"] is not None and "production" in approval["message"]
    assert audit and audit[0]["run_id"] == run.id and audit[0]["how"] == "--yes"


def test_non_production_and_non_destructive_need_no_approval(ws: Workspace) -> None:
    _write(ws)
    assert ws.erpops("run", "wipe.yaml", "--env", "staging").returncode == 0
    _write(ws, destructive=False)
    assert ws.erpops("run", "wipe.yaml", "--env", "prod").returncode == 0
    assert lines(ws.root / "log") == ["changed", "changed"]


def _on_terminal(ws: Workspace, answer: str) -> tuple[int, str]:
    """Run on a pseudo-terminal and type ``answer`` at the approval prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "erpops", "run", "wipe.yaml", "--env", "prod"],
        cwd=ws.root,
        env=ws.env(TERM="xterm"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"environment name" in seen:
                os.write(master, answer.encode() + b"\r")
                answered = True
        elif proc.poll() is not None:
            break
    code = proc.wait(30)
    os.close(master)
    return code, seen.decode(errors="replace")


def test_terminal_approval_requires_typing_the_environment_name(ws: Workspace) -> None:
    _write(ws)
    code, screen = _on_terminal(ws, "staging")
    assert code == 5, screen
    assert lines(ws.root / "log") == []
    code, screen = _on_terminal(ws, "prod")
    assert code == 0, screen
    assert lines(ws.root / "log") == ["changed"]
    store = ws.store()
    approved = [r for r in store.list_runs() if r.state == "succeeded"]
    (approval,) = store.list_approvals(approved[0].id)
    store.close()
    assert approval["how"] == "terminal"


def test_approve_step_without_terminal_refuses_unless_yes(ws: Workspace) -> None:
    ws.write(
        "gate.yaml",
        f"""
        apiVersion: erpops/v1
        kind: Runbook
        metadata: {{name: gate, version: 1.0.0}}
        steps:
          - {{id: ask, action: approve, with: {{message: "prune old backups?"}}}}
          - {{id: prune, action: exec, with: {{argv: [{sys.executable}, step.py, log, pruned]}}}}
        """,
    )
    refused = ws.erpops("run", "gate.yaml", "--env", "staging")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert lines(ws.root / "log") == []
    ok = ws.erpops("run", "gate.yaml", "--env", "staging", "--yes")
    assert ok.returncode == 0 and lines(ws.root / "log") == ["pruned"]
    store = ws.store()
    run = next(r for r in store.list_runs() if r.state == "succeeded")
    (approval,) = store.list_approvals(run.id)
    store.close()
    assert (approval["step_id"], approval["how"], approval["message"]) == ("ask", "--yes", "prune old backups?")
