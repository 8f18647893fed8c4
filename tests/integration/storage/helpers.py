"""Shared helpers for storage tests: a small action context, and backups written by hand."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from tests.fixtures.actions import FakeCtx


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
