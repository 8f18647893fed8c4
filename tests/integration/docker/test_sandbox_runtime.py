"""The built-in sandbox gets a runtime when a Docker engine answers (issue 12, item 6; SPEC
section 9): ``erpops sandbox up`` builds the demo application and Traefik images with ``docker
import`` (no registry), then ``erpops deploy --env sandbox --image erpops-sandbox/odoo:demo``
runs web (2) and cron (1) behind Traefik on https://localhost:18443; ``sandbox down --purge``
removes the containers."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import docker

from erpops.backends.postgres import local_server as pgserver
from erpops.backends.runtime.docker.sandbox import DEMO_IMAGE


def _erpops(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env.update(ERPOPS_SANDBOX_DIR=str(root), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "erpops", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=root.parent)  # fmt: skip


def test_sandbox_up_then_deploy_runs_web_and_cron_behind_traefik(docker_client: docker.DockerClient) -> None:
    root = Path(tempfile.mkdtemp(prefix="ersr-", dir="/tmp"))
    try:
        up = _erpops(root, "sandbox", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "runtime: Docker, web and cron of erpops-sandbox/odoo:demo behind Traefik" in up.stdout, up.stdout
        assert json.loads((root / "runtime.json").read_text())["image"] == DEMO_IMAGE

        deploy = _erpops(root, "deploy", "--env", "sandbox", "--image", DEMO_IMAGE, "--yes")
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        running = docker_client.containers.list(filters={"label": "erpops.environment=sandbox"})
        roles = sorted((c.labels["erpops.role"], c.labels.get("erpops.service", "")) for c in running)
        assert roles == [("front", "web"), ("service", "cron"), ("service", "web"), ("service", "web")], roles

        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # Traefik's own certificate
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=insecure)
        )
        with opener.open("https://localhost:18443/web/health", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "pass"

        again = _erpops(root, "sandbox", "up")
        assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    finally:
        down = _erpops(root, "sandbox", "down", "--purge")
        left = docker_client.containers.list(all=True, filters={"label": "erpops.environment=sandbox"})
        for name in ("standby", "primary"):
            if (root / name).exists():
                pgserver.destroy(root / name)
        shutil.rmtree(root, ignore_errors=True)
    assert down.returncode == 0 and left == [], (down.stdout + down.stderr, left)
