"""Children die with erpops: kill -9 the erpops process and nothing it started keeps working.

Regression (issue 16, item 2): every child ran in its own session and nothing ended it when erpops
died, so a resumed run repeated a step whose first attempt was still finishing (``a b b c`` and
then the first ``b``'s late work), and a killed drill kept restoring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fixtures.processes import alive
from tests.integration.state.conftest import Workspace, lines, wait_for

# step b: writes "b", its shell's pid, then waits for a subshell that finishes b's work 3 s later
# ("b-late") unless the file "go" exists (the resumed attempt)
RUNBOOK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: abc, version: 1.0.0}
lock: environment
steps:
  - {id: a, action: exec, with: {argv: [sh, -c, "echo a >> log"]}}
  - id: b
    action: exec
    with:
      argv:
        - sh
        - -c
        - "echo b >> log; echo $$ > b.pid; if [ ! -e go ]; then (sleep 3; echo b-late >> log) & wait; fi"
  - {id: c, action: exec, with: {argv: [sh, -c, "echo c >> log"]}}
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_killed_runs_children_die_and_resume_ends_what_they_left(ws: Workspace) -> None:
    ws.write("abc.yaml", RUNBOOK)
    proc = ws.spawn("run", "abc.yaml", "--env", "staging", "--json")
    wait_for(lambda: (ws.root / "b.pid").exists() and lines(ws.root / "log") == ["a", "b"], what="step b to start")
    shell = int((ws.root / "b.pid").read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # the step's own process dies with erpops (it would wait 3 s for its subshell otherwise)
    wait_for(lambda: not alive(shell), timeout=1.5, what=f"step b's shell {shell} to die with erpops")

    store = ws.store()
    (run,) = store.list_runs()
    store.close()
    (ws.root / "go").touch()
    resumed = ws.erpops("runs", "resume", run.id)
    assert resumed.returncode == 0, resumed.stderr
    assert "left running by the earlier attempt of this run" in resumed.stdout + resumed.stderr
    time.sleep(3.5)  # past the moment the first attempt's subshell would have written b-late
    assert lines(ws.root / "log") == ["a", "b", "b", "c"]


CHILD_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from erpops.backends.streams import Child
    from erpops.process import run_process

    if sys.argv[1] == "child":  # pg_dump, pg_restore, tar are run so
        with Child(["sleep", "30"], name="sleep") as child:
            print(child.proc.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    else:  # exec steps, fence commands
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        run_process(["sh", "-c", "echo $$; exec sleep 30"], cancel=threading.Event(), stdout=sys.stdout)
    """
)


@pytest.mark.parametrize("how", ["child", "run_process"])
def test_a_tool_erpops_runs_dies_with_it(how: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with out.open("w") as fh:  # a file, not a pipe: a surviving tool would hold a pipe open
        done = subprocess.run(
            [sys.executable, "-c", CHILD_SCRIPT, how], stdout=fh, stderr=subprocess.STDOUT, timeout=30,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, out.read_text()
    pid = int(out.read_text().split()[0])
    try:
        wait_for(lambda: not alive(pid), timeout=2, what=f"the tool (pid {pid}) to die with the process that ran it")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
