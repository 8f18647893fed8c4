"""Fixtures for the backup / restore-drill tests: a real PostgreSQL with a seeded Odoo-shaped
database (tests.fixtures.postgres), the moto S3 server (tests.fixtures.s3), and a ``Drill``
helper that writes an erpops.yaml in a temporary directory and runs the real CLI in a child
process (``python -m erpops ...``).

pytest refuses ``pytest_plugins`` outside the top-level conftest, so the fixtures are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.postgres import *  # noqa: F403
from tests.fixtures.postgres import SeededDb
from tests.fixtures.s3 import *  # noqa: F403


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def finished(self) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e["event"] == "run.finished" and not e.get("depth"))

    def step(self, step_id: str) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e["event"] == "step.finished" and e["step"] == step_id)


@dataclass
class Drill:
    """An erpops.yaml with environments in a temporary directory, and the CLI to run on it."""

    root: Path
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "erpops.yaml"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    def add(self, name: str, **env: Any) -> Drill:
        self.environments[name] = env
        state = f"sqlite:///{self.root / 'state.db'}"
        self.config.write_text(yaml.safe_dump({"state": state, "environments": self.environments}))
        return self

    def store(self, name: str) -> Path:
        """The local store directory of environment ``name`` (file:// URL)."""
        return Path(self.environments[name]["storage"]["url"].removeprefix("file://"))

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ERPOPS_CONFIG=str(self.config),
            ERPOPS_SCRATCH_DIR=str(self.scratch),
            XDG_STATE_HOME=str(self.root / "xdg-state"),
            XDG_CONFIG_HOME=str(self.root / "xdg-config"),
            COLUMNS="200",
        )
        env.update(extra)
        return env

    def _argv(self, args: tuple[str, ...], json_events: bool) -> list[str]:
        argv = [sys.executable, "-m", "erpops", *args]
        if json_events and args and args[0] in ("backup", "restore-test", "run"):
            argv.append("--json")
        return argv

    def run(self, *args: str, timeout: float = 120, json_events: bool = True, **extra: str) -> Result:
        import time

        t0 = time.monotonic()
        proc = subprocess.run(
            self._argv(args, json_events), capture_output=True, text=True, cwd=self.root, env=self.env(**extra),
            timeout=timeout,
        )  # fmt: skip
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)

    def spawn(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        """The CLI started and not waited for (its output to files in the drill's directory)."""
        with (self.root / "spawned.out").open("w") as out:
            return subprocess.Popen(
                self._argv(args, True), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=self.root,
                env=self.env(**extra), stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def backups(self, name: str) -> list[dict[str, Any]]:
        res = self.run("backups", "list", "--env", name, "--json")
        assert res.code == 0, res.stderr
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def runbook(self, name: str, text: str) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(text)
        return path


def local_env(seeded: SeededDb, store: Path, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "database": {"dsn": seeded.server_dsn, "name": seeded.dbname},
        "storage": {"url": f"file://{store}"},
        "odoo": {"filestore": str(seeded.filestore)},
    }
    env.update(extra)
    return env


@pytest.fixture
def drill() -> Iterator[Drill]:
    root = Path(tempfile.mkdtemp(prefix="erdrill-", dir="/tmp"))
    try:
        yield Drill(root)
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def drill_databases(seeded: SeededDb) -> list[str]:
    """Scratch databases left on the server (names containing _drill_)."""
    from erpops.backends.postgres import client as pg

    with pg.connect(seeded.server_dsn) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", ("%\\_drill\\_%",)).fetchall()
    return sorted(r[0] for r in rows)
