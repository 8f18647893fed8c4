"""The environment lock on the cluster (issue 11, item 3): two machines that share a cluster but
not a state database (each its own SQLite journal) cannot both run a locking runbook; a killed
holder's Lease is taken over once it expired."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.integration.kube.conftest import wait
from tests.kube.server import Server

HOLD = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: hold, version: 1.0.0}
lock: environment
steps:
  - {id: hold, action: exec, with: {argv: [sh, -c, "touch started; while [ ! -e go ]; do sleep 0.1; done"]}}
"""
QUICK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: quick, version: 1.0.0}
lock: environment
steps:
  - {id: hello, action: log, with: {message: hello}}
"""


def test_the_cluster_lease_keeps_two_machines_apart_and_expires(kube: Server, api: Any, tmp_path: Path) -> None:
    (tmp_path / "hold.yaml").write_text(HOLD)
    (tmp_path / "quick.yaml").write_text(QUICK)
    runtime = f"{{kind: kubernetes, kubeconfig: {tmp_path / 'kubeconfig'}, lease_seconds: 2}}"
    (tmp_path / "erpops.yaml").write_text(f"environments:\n  k:\n    runtime: {runtime}\n")

    def env(machine: str) -> dict[str, str]:  # each "machine" has its own local journal
        out = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
        out.update(ERPOPS_CONFIG=str(tmp_path / "erpops.yaml"),
                   ERPOPS_STATE=f"sqlite:///{tmp_path / machine / 'state.db'}",
                   XDG_STATE_HOME=str(tmp_path / machine / "xdg"))  # fmt: skip
        return out

    def erpops(machine: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "erpops", *args], cwd=tmp_path, env=env(machine),
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    argv = [sys.executable, "-m", "erpops", "run", "hold.yaml", "--env", "k", "--json"]
    holder = subprocess.Popen(argv, cwd=tmp_path, env=env("a"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: (tmp_path / "started").exists() or holder.poll() is not None, "the first run to hold the lock")
        assert holder.poll() is None
        lease: Any = client.CoordinationV1Api(api).read_namespaced_lease("erpops-lock-k", "default")
        run_a = lease.spec.holder_identity
        assert lease.metadata.annotations["erpops.io/runbook"] == "hold"

        refused = erpops("b", "run", "quick.yaml", "--env", "k")
        assert refused.returncode == 4, refused.stderr
        assert f"locked by run {run_a}" in refused.stderr and "cluster Lease default/erpops-lock-k" in refused.stderr
        time.sleep(2.5)  # renewed while the holder lives: still refused after its duration
        assert erpops("b", "run", "quick.yaml", "--env", "k").returncode == 4

        os.kill(holder.pid, signal.SIGKILL)  # the holder dies without releasing: the Lease expires
        holder.wait(10)
        t0 = time.monotonic()
        taken = erpops("b", "run", "quick.yaml", "--env", "k", "--wait", "20s")
        assert taken.returncode == 0, taken.stderr
        assert time.monotonic() - t0 < 10
    finally:
        if holder.poll() is None:
            holder.kill()
    leases = client.CoordinationV1Api(api).list_namespaced_lease("default").items
    assert leases == []  # released at the end of the run
