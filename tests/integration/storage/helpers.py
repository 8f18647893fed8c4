"""Shared helpers for storage tests: a small action context, and backups written by hand."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from erpops import secrets
from erpops.actions.base import ProcessResult, RunInfo
from erpops.backends.storage import ObjectStore, Retention
from erpops.environments import Environment, Storage
from erpops.manifest import (
    DB_DUMP,
    FILESTORE,
    Artifact,
    Manifest,
    RestoreTestMarker,
    object_key,
)


@dataclass
class FakeCtx:
    """Enough of ``ActionContext`` to call ``Action().apply(params, ctx)`` directly."""

    env: Environment
    step_id: str = "step"
    state: Any = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    progress_events: list[tuple[str, float, float | None]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.run = RunInfo(
            id="run-test",
            started_at=datetime.now(UTC),
            user="tester",
            host="localhost",
            runbook="test",
            runbook_version="0.0.0",
            environment=self.env.name,
        )

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        self.logs.append((level, message))

    def progress(self, description: str, *, done: float, total: float | None = None, unit: str = "B") -> None:
        self.progress_events.append((description, done, total))

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise RuntimeError("cancelled")

    def resolve_secret(self, value: str) -> str:
        self.resolved.append(value)
        return secrets.resolve(value) if secrets.is_reference(value) else value

    def register_secret(self, value: str) -> None:
        secrets.REDACTOR.register(value)

    def run_process(self, argv: Sequence[str], **kwargs: Any) -> ProcessResult:
        raise NotImplementedError

    def approve(self, message: str) -> None:
        return None

    def call_runbook(self, name_or_path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def env_with(storage: Storage, name: str = "prod") -> Environment:
    return Environment(name=name, storage=storage)


def local_env(root: Path, name: str = "prod") -> Environment:
    return env_with(Storage(url=f"file://{root}"), name)


def bid(days_ago: float = 0, *, now: datetime | None = None, suffix: str = "ab12") -> str:
    """A backup id ``days_ago`` days before ``now``."""
    t = (now or datetime.now(UTC)) - timedelta(days=days_ago)
    return f"{t:%Y%m%dT%H%M%SZ}-{suffix}"


def make_backup(
    store: ObjectStore,
    env: str,
    backup_id: str,
    *,
    complete: bool = True,
    size: int = 2048,
    retention: Retention | None = None,
) -> Manifest | None:
    """Write two artifacts (random bytes) and, when ``complete``, a manifest describing them."""
    artifacts = {}
    for name, fname, fmt in (("db", DB_DUMP, "pg_dump-custom"), ("filestore", FILESTORE, "tar")):
        data = os.urandom(size)
        key = object_key(env, backup_id, fname)
        store.put_bytes(key, data, retention)
        artifacts[name] = Artifact(
            key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(), compression="zstd", format=fmt
        )
    if not complete:
        return None
    now = datetime.now(UTC)
    manifest = Manifest(
        backup_id=backup_id,
        environment=env,
        database="odoo",
        started_at=now,
        ended_at=now,
        snapshot_time=now,
        postgres_version="18.0",
        pg_dump_version="18.0",
        odoo_version="17.0",
        modules={"base": "17.0.1.3", "sale": "17.0.1.2"},
        row_counts={"res_partner": 10},
        artifacts=artifacts,
        erpops_version="0.1.0",
    )
    store.put_bytes(object_key(env, backup_id, "manifest.json"), manifest.to_json(), retention)
    return manifest


def mark_restore_tested(store: ObjectStore, env: str, backup_id: str, ok: bool = True) -> None:
    marker = RestoreTestMarker(backup_id=backup_id, tested_at=datetime.now(UTC), ok=ok)
    store.put_bytes(object_key(env, backup_id, "restore-test.json"), marker.to_json())


def storage_of(ctx: FakeCtx) -> Storage:
    """The storage section of the test environment (every storage test declares one)."""
    assert ctx.env.storage is not None, "the test environment declares no storage"
    return ctx.env.storage
