"""SIGINT / SIGTERM during a step: the step stops, undo and finally run, the run ends
``interrupted`` in the journal and erpops exits 130."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.integration.state.conftest import Workspace, lines, wait_for

RUNBOOK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {{name: stoppable, version: 1.0.0}}
lock: environment
steps:
  - id: s1
    action: exec
    with: {{argv: [{py}, step.py, log, s1]}}
    undo: {{action: exec, with: {{argv: [{py}, step.py, log, undo-s1]}}}}
  - {{id: s2, action: exec, with: {{argv: [{py}, step.py, log, s2, --hold, never]}}}}
  - {{id: s3, action: exec, with: {{argv: [{py}, step.py, log, s3]}}}}
finally:
  - {{id: cleanup, action: exec, with: {{argv: [{py}, step.py, log, finally]}}}}
"""


def _gone(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_step_runs_undo_and_finally_exits_130(ws: Workspace, sig: signal.Signals) -> None:
    ws.write("stoppable.yaml", RUNBOOK.format(py=sys.executable))
    proc = ws.spawn("run", "stoppable.yaml", "--env", "staging", "--json")
    wait_for(lambda: (ws.root / "log.s2.pid").exists(), what="step s2 to start")
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 15
    assert lines(ws.root / "log") == ["s1", "s2", "undo-s1", "finally"]
    wait_for(lambda: _gone(ws.root / "log.s2.pid"), timeout=5, what="the step's child process to be killed")

    events = [json.loads(line) for line in out.splitlines()]
    finished = [e for e in events if e["event"] == "run.finished"][-1]
    assert finished["state"] == "interrupted" and finished["exit_code"] == 130

    store = ws.store()
    (run,) = store.list_runs()
    steps = [(s.step_id, s.phase, s.outcome) for s in store.list_steps(run.id)]
    holder = store.lock_holder("staging")
    store.close()
    assert run.state == "interrupted"
    assert steps == [
        ("s1", "main", "succeeded"),
        ("s2", "main", "cancelled"),
        ("s1", "undo", "succeeded"),
        ("cleanup", "finally", "succeeded"),
    ]
    assert holder is None  # the lock was released on the way out

    # an interrupted run can be resumed: s1 was undone, so it runs again
    (ws.root / "never").touch()
    resumed = ws.erpops("runs", "resume", run.id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lines(ws.root / "log")[4:] == ["s1", "s2", "s3", "finally"]


def test_signal_handlers_are_restored_after_the_run() -> None:
    import threading

    from erpops.engine.signals import interrupt_handlers

    class FakeEngine:
        interrupted = threading.Event()

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    engine = FakeEngine()
    with interrupt_handlers(engine):
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(engine.interrupted.is_set, timeout=5, what="the handler to set the flag")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
