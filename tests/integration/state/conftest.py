"""Fixtures for the state store tests: a real PostgreSQL server (tests.fixtures.postgres), a
store of each kind per test, and a helper running the real ``erpops`` command in a subprocess.

Every test that takes ``store_url`` runs twice: on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.postgres import PgServer, pg_primary  # noqa: F401 - the session server
from tests.fixtures.processes import wait_for  # noqa: F401 - the tests import it from here

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(pg_primary: PgServer) -> PgServer:  # noqa: F811 - the imported fixture
    """The session's PostgreSQL server (tests.fixtures.postgres); each test gets its own database."""
    return pg_primary


def _new_database(server: PgServer) -> str:
    import psycopg

    name = f"erpops_state_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.dsn(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state store: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state' / 'erpops.db'}"
    return _new_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def open_store(store_url: str, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Open (another connection to) the test's state store; all closed at the end."""
    from erpops.backends.state.postgres import PostgresStateStore
    from erpops.backends.state.sqlite import SqliteStateStore, path_from_url

    opened: list[Any] = []

    def make() -> Any:
        if store_url.startswith("postgresql"):
            store: Any = PostgresStateStore(store_url, audit_path=tmp_path / "state" / "pg-audit.jsonl")
        else:
            store = SqliteStateStore(path_from_url(store_url))
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


@dataclass
class Workspace:
    """A directory with an erpops.yaml, a state store and an isolated XDG state directory."""

    root: Path
    store_url: str

    @property
    def xdg_state(self) -> Path:
        return self.root / "xdg-state"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
        env.update(
            {
                "XDG_STATE_HOME": str(self.xdg_state),
                "XDG_CONFIG_HOME": str(self.root / "xdg-config"),
                "ERPOPS_STATE": self.store_url,
                "ERPOPS_CONFIG": str(self.root / "erpops.yaml"),
                "COLUMNS": "200",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def erpops(self, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "erpops", *args],
            cwd=self.root,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def spawn(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "erpops", *args],
            cwd=self.root,
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def store(self) -> Any:
        from erpops.engine.store import open_state_store

        saved = {k: os.environ.get(k) for k in ("ERPOPS_STATE", "XDG_STATE_HOME")}
        os.environ.update({"ERPOPS_STATE": self.store_url, "XDG_STATE_HOME": str(self.xdg_state)})
        try:
            return open_state_store(None)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


CONFIG = """
environments:
  prod:
    tier: production
  staging:
    tier: non-production
"""


@pytest.fixture
def ws(tmp_path: Path, store_url: str) -> Workspace:
    w = Workspace(tmp_path, store_url)
    w.write("erpops.yaml", CONFIG)
    # a tiny program steps call: append NAME to LOG; with --hold FILE, then wait (at most 60 s,
    # and never past the death of the erpops process that started it) until FILE exists
    w.write(
        "step.py",
        """
        import os, sys, time
        log, name = sys.argv[1], sys.argv[2]
        with open(log, "a") as f:
            f.write(name + "\\n")
        if len(sys.argv) > 4 and sys.argv[3] == "--hold":
            parent = os.getppid()
            deadline = time.time() + 60
            with open(log + "." + name + ".pid", "w") as f:
                f.write(str(os.getpid()))
            while not os.path.exists(sys.argv[4]) and time.time() < deadline and os.getppid() == parent:
                time.sleep(0.05)
            if not os.path.exists(sys.argv[4]):
                sys.exit(9)
        """,
    )
    return w


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
