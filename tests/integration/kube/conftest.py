"""The test Kubernetes API server (tests/kube), one per test, with the official client and the
real kubectl pointed at it. Every object the server stores or returns is checked strictly
(kubernetes-validate); a test fails when the server saw a path or verb the real API lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube.server import Server, serving

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    """The real kubectl (scripts/kubectl.py fetches it, pinned, once)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kubectl.py")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"kubectl could not be fetched: {done.stderr[-2000:]}"
    return Path(done.stdout.strip())


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Server]:
    with serving() as server:
        server.kubeconfig(tmp_path / "kubeconfig")
        yield server
        assert server.store.errors == [], server.store.errors


@pytest.fixture
def api(kube: Server, tmp_path: Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(tmp_path / "kubeconfig"))


@pytest.fixture
def kubectl(kube: Server, kubectl_bin: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "HOME": str(tmp_path)}

    def run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl_bin), *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
        )

    return run


def deployment(name: str = "web", image: str = "odoo:18", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "ports": [{"containerPort": 8069}],
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ]
                },
            },
            **spec,
        },
    }


def wait(predicate: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
