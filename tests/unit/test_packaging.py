"""An installed erpops finds its runbooks and templates without a source checkout."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_runbooks_and_templates(tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv is how this project builds; pip install uv"
    res = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("erpops-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for book in (ROOT / "runbooks").glob("*.yaml"):
        assert f"erpops/runbooks/{book.name}" in names
    assert "erpops/templates/README.md" in names
    assert "erpops/cli/app.py" in names
