"""The environment lock between two real ``erpops`` processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from tests.integration.state.conftest import Workspace, lines, wait_for

LOCKING = """
apiVersion: erpops/v1
kind: Runbook
metadata: {{name: {name}, version: 1.0.0}}
lock: environment
steps:
  - id: hold
    action: exec
    with: {{argv: [{py}, step.py, log, {name}, --hold, release]}}
"""


def _runbooks(ws: Workspace) -> None:
    ws.write("holder.yaml", LOCKING.format(name="holder", py=sys.executable))
    ws.write("second.yaml", LOCKING.format(name="second", py=sys.executable))


def test_second_run_fails_at_once_naming_the_holder_then_waits(ws: Workspace) -> None:
    _runbooks(ws)
    holder = ws.spawn("run", "holder.yaml", "--env", "prod", "--json")
    try:
        wait_for(lambda: "holder" in lines(ws.root / "log"), what="the holder's step to start")
        store = ws.store()
        (run,) = store.list_runs(environment="prod")
        store.close()

        start = time.monotonic()
        loser = ws.erpops("run", "second.yaml", "--env", "prod")
        took = time.monotonic() - start
        assert loser.returncode == 4, loser.stderr
        assert took < 10  # interpreter start included; the lock itself does not wait
        err = loser.stderr
        assert f"run {run.id}" in err and f"{run.user}@{run.host}" in err and "runbook holder" in err
        assert run.started_at.strftime("%Y-%m-%d") in err and "since" in err
        assert "second" not in lines(ws.root / "log")  # nothing of the loser ran
        # journaled as refused, not among the failed runs (regression: refusals cluttered them)
        store = ws.store()
        try:
            assert [r.runbook for r in store.list_runs(environment="prod", state="refused")] == ["second"]
            assert store.list_runs(environment="prod", state="failed") == []
        finally:
            store.close()
        failed = ws.erpops("runs", "list", "--state", "failed")
        assert failed.returncode == 0 and "second" not in failed.stdout

        ws.write("free.yaml", LOCKING.format(name="free", py=sys.executable).replace("--hold, release", "--hold, ."))
        other_env = ws.erpops("run", "free.yaml", "--env", "staging")  # other environments are free
        assert other_env.returncode == 0, other_env.stderr
    finally:
        (ws.root / "release").touch()
        holder.wait(30)
    assert holder.returncode == 0, holder.stderr


def test_wait_takes_the_lock_when_the_holder_finishes(ws: Workspace) -> None:
    _runbooks(ws)
    holder = ws.spawn("run", "holder.yaml", "--env", "prod")
    wait_for(lambda: "holder" in lines(ws.root / "log"), what="the holder's step to start")
    waiter = ws.spawn("run", "second.yaml", "--env", "prod", "--wait", "60s", "--json")
    time.sleep(1.5)
    assert waiter.poll() is None  # still waiting for the lock
    assert "second" not in lines(ws.root / "log")
    (ws.root / "release").touch()
    assert holder.wait(30) == 0
    _out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert lines(ws.root / "log") == ["holder", "second"]


def test_a_killed_holder_never_keeps_the_lock(ws: Workspace) -> None:
    _runbooks(ws)
    holder = ws.spawn("run", "holder.yaml", "--env", "prod")
    wait_for(lambda: "holder" in lines(ws.root / "log"), what="the holder's step to start")
    store = ws.store()
    (run,) = store.list_runs(environment="prod")
    store.close()

    refused = ws.erpops("runs", "unlock", "--env", "prod")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "not stale" in refused.stderr

    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    (ws.root / "release").touch()  # the next run's step need not wait

    # the lock went with its holder: the next run gets it at once
    nxt = ws.erpops("run", "second.yaml", "--env", "prod")
    assert nxt.returncode == 0, nxt.stderr
    assert lines(ws.root / "log")[-1] == "second"

    # the killed run stays 'running' in the journal until unlocked or resumed; runs show says so
    shown = ws.erpops("runs", "show", run.id)
    assert "process gone" in shown.stdout


def test_unlock_clears_a_stale_lock_row_after_a_crash(ws: Workspace) -> None:
    _runbooks(ws)
    holder = ws.spawn("run", "holder.yaml", "--env", "prod")
    wait_for(lambda: "holder" in lines(ws.root / "log"), what="the holder's step to start")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    store = ws.store()
    (run,) = store.list_runs(environment="prod")
    assert store.lock_holder("prod")["run_id"] == run.id  # the row outlived its holder
    store.close()

    cleared = ws.erpops("runs", "unlock", "--env", "prod")
    assert cleared.returncode == 0, cleared.stderr
    assert run.id in cleared.stdout
    store = ws.store()
    assert store.lock_holder("prod") is None
    assert store.get_run(run.id).state == "interrupted"
    events = [e["event"] for e in store.audit.entries()]
    store.close()
    assert "lock.cleared" in events
    again = ws.erpops("runs", "unlock", "--env", "prod")
    assert again.returncode == 0 and "not locked" in again.stdout
    (ws.root / "release").touch()


def test_waiting_for_the_lock_stops_on_sigterm(ws: Workspace) -> None:
    _runbooks(ws)
    holder = ws.spawn("run", "holder.yaml", "--env", "prod")
    try:
        wait_for(lambda: "holder" in lines(ws.root / "log"), what="the holder's step to start")
        waiter = ws.spawn("run", "second.yaml", "--env", "prod", "--wait", "10m", "--json")
        wait_for(lambda: len(_runs(ws)) == 2, what="the waiting run to be journaled")
        time.sleep(0.5)
        waiter.send_signal(signal.SIGTERM)
        _out, err = waiter.communicate(timeout=15)
        assert waiter.returncode == 130, err
        states = {r.runbook: r.state for r in _runs(ws)}
        assert states == {"holder": "running", "second": "interrupted"}
    finally:
        (ws.root / "release").touch()
        holder.wait(30)
    assert "second" not in lines(ws.root / "log")


def _runs(ws: Workspace) -> list[Any]:
    store = ws.store()
    try:
        return list(store.list_runs())
    finally:
        store.close()
