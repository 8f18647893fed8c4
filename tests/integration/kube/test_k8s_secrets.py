"""``k8s-secret:namespace/name#key`` references resolve through the environment's cluster and are
redacted like every secret (issue 11, item 1)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

CANARY = "canary-k8s-5ecret-value-7731"
RUNBOOK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: sec, version: 1.0.0}
params:
  token: {type: secret, required: true}
steps:
  - {id: show, action: log, with: {message: "token={{ params.token }}"}}
"""


def test_a_k8s_secret_reference_resolves_through_the_cluster_and_never_shows(api: Any, tmp_path: Path) -> None:
    core: Any = client.CoreV1Api(api)
    data = {"token": base64.b64encode(CANARY.encode()).decode()}
    core.create_namespaced_secret("default", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"},
                                              "type": "Opaque", "data": data})  # fmt: skip
    (tmp_path / "sec.yaml").write_text(RUNBOOK)
    (tmp_path / "erpops.yaml").write_text(
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        f"environments:\n  k:\n    runtime: {{kind: kubernetes, kubeconfig: {tmp_path / 'kubeconfig'}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env.update(ERPOPS_CONFIG=str(tmp_path / "erpops.yaml"), XDG_STATE_HOME=str(tmp_path / "xdg"))

    def erpops(ref: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "erpops", "run", "sec.yaml", "--env", "k", "--param", f"token={ref}", "--json"]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    ok = erpops("k8s-secret:default/app#token")
    assert ok.returncode == 0, ok.stderr
    assert "token=***" in ok.stdout and CANARY not in ok.stdout + ok.stderr
    assert b"k8s-secret:default/app#token" in (tmp_path / "state.db").read_bytes()  # the reference is journaled
    assert CANARY.encode() not in (tmp_path / "state.db").read_bytes()  # the value never is
    short = erpops("k8s-secret:app#token")  # the environment's namespace (the kubeconfig's: default)
    assert short.returncode == 0 and CANARY not in short.stdout + short.stderr, short.stderr
    for ref, said in (("k8s-secret:default/nope#token", "no Secret nope in namespace default"),
                      ("k8s-secret:default/app#nokey", "has no key 'nokey' (keys: token)"),
                      ("k8s-secret:Bad Ref", "expected k8s-secret:namespace/name#key")):  # fmt: skip
        bad = erpops(ref)
        assert bad.returncode == 2 and said in bad.stderr, (ref, bad.stderr)
