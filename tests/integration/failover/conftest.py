"""Two real PostgreSQL servers for the failover tests: a primary and its streaming standby.

Laid out like the sandbox (``<root>/primary`` on port 5432, ``<root>/standby`` on 5433, each
listening on a socket inside its data directory) so that ``erpops.sandbox.reseed_standby`` can
re-create the standby after a failover. Which directory is the primary changes as drills run:
:meth:`Pair.ensure_healthy` finds out and reseeds what is not a streaming standby.

The tests drive the real CLI (``python -m erpops``, the same entry point as ``uv run erpops``) in
a temporary directory holding an ``erpops.yaml`` and a SQLite state store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from erpops import sandbox
from erpops.backends.postgres import client as pg
from erpops.backends.postgres import local_server as pgserver
from erpops.backends.postgres import replication as pg_replication

DB = "odoo"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def step(self, step_id: str, phase: str | None = None) -> dict[str, Any]:
        """The last ``step.finished`` event of a step."""
        found = [
            e
            for e in self.events
            if e.get("event") == "step.finished" and e.get("step") == step_id and (phase is None or e["phase"] == phase)
        ]
        assert found, f"no step.finished for {step_id}; events: {[e.get('event') for e in self.events]}"
        return found[-1]

    def finished(self) -> dict[str, Any]:
        return [e for e in self.events if e.get("event") == "run.finished"][-1]

    def ran(self, step_id: str) -> bool:
        return any(e.get("event") == "step.started" and e.get("step") == step_id for e in self.events)


class Pair:
    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work
        self.paths = sandbox.paths(root)

    # -- servers -------------------------------------------------------------------------------
    def dsn(self, datadir: Path, db: str = "postgres") -> str:
        return pgserver.status(datadir).dsn(db)

    def dirs(self) -> list[Path]:
        return [self.paths.primary, self.paths.standby]

    def in_recovery(self, datadir: Path) -> bool:
        with pg.connect(self.dsn(datadir)) as conn:
            return pg.in_recovery(conn)

    def roles(self) -> tuple[Path, Path]:
        """(primary dir, standby dir) as the servers say (the standby is the one in recovery)."""
        a, b = self.dirs()
        return (b, a) if self.in_recovery(a) else (a, b)

    def ensure_healthy(self) -> tuple[Path, Path]:
        """A writable primary and a streaming standby of it; reseeds the standby when needed."""
        for d in self.dirs():
            if pgserver.is_initialized(d) and not pgserver.status(d).running and (d / "standby.signal").exists():
                pgserver.start(d)
        status = sandbox.status(self.root)
        prim = next((s for s in status.servers if s.name == status.primary), None)
        assert prim is not None, f"no primary in {self.root}: {status.as_dict()}"
        other = next(s for s in status.servers if s.name != status.primary)
        primary_dir = Path(prim.datadir)
        if writable_error(self.dsn(primary_dir, DB)) is not None:
            pg_replication.unfence(self.dsn(primary_dir))  # a fenced primary left by a failed test
        if other.role != "standby" or not other.replaying:
            sandbox.reseed_standby(root=self.root)
        primary_dir, standby_dir = self.roles()
        pgserver.wait_for_streaming(pgserver.status(standby_dir))
        return primary_dir, standby_dir

    # -- configuration and CLI -----------------------------------------------------------------
    def reset_state(self) -> None:
        """A new, empty state store for the next commands (the SQLite file and its WAL)."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            (self.work / f"state.db{suffix}").unlink(missing_ok=True)

    def write_config(self, environments: dict[str, Any], name: str = "erpops.yaml") -> Path:
        path = self.work / name
        path.write_text(yaml.safe_dump({"environments": environments}))
        return path

    def env_config(self, primary: Path | str, standby: Path | str, **extra: Any) -> dict[str, Any]:
        def dsn(d: Path | str) -> str:
            return self.dsn(Path(d)) if Path(d).exists() else f"postgresql://postgres@/postgres?host={d}&port=5432"

        env: dict[str, Any] = {
            "tier": "non-production",
            "database": {"dsn": dsn(primary), "name": DB},
            "standby": {"dsn": dsn(standby), "name": DB},
        }
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(env.get(key), dict):
                env[key] = {**env[key], **value}
            else:
                env[key] = value
        return env

    def cli(
        self, *args: str, state: str = "state.db", timeout: float = 120, program: tuple[str, ...] = ("-m", "erpops")
    ) -> CliResult:
        """The erpops CLI (``program``: how Python starts it) with the pair's state store."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ERPOPS_"))}
        env.update(
            ERPOPS_STATE=f"sqlite:///{self.work / state}",
            XDG_STATE_HOME=str(self.work / "xdg-state"),
            ERPOPS_SANDBOX_DIR=str(self.root),
        )
        proc = subprocess.run(
            [sys.executable, *program, *args],
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        events = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                events.append(json.loads(line))
        return CliResult(proc.returncode, proc.stdout, proc.stderr, events)


def writable_error(dsn: str) -> str | None:
    """None when an INSERT commits on ``dsn``, else the error."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t_fo_check (x int)")
            conn.execute("INSERT INTO t_fo_check VALUES (1)")
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="session")
def fo_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("fo")
    root, work = base / "sb", base / "work"
    work.mkdir()
    t = time.monotonic()
    prim = pgserver.start_primary(root / "primary", 5432)
    with pg.connect(prim.dsn()) as conn:
        conn.execute(f"CREATE DATABASE {DB}")
    with pg.connect(prim.dsn(DB)) as conn:
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO res_partner (name) SELECT 'p' || i FROM generate_series(1, 100) i")
    pgserver.create_standby(prim, root / "standby", 5433)
    (root / sandbox.MARKER).touch()
    print(f"pair ready in {time.monotonic() - t:.1f}s")
    pair = Pair(root, work)
    try:
        yield pair
    finally:
        for d in pair.dirs():
            if pgserver.is_initialized(d):
                pgserver.stop(d, mode="immediate")


@pytest.fixture
def healthy(fo_pair: Pair) -> tuple[Pair, Path, Path]:
    primary, standby = fo_pair.ensure_healthy()
    return fo_pair, primary, standby
