"""The backup catalog: states from the objects really stored, on the local store and on S3."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from erpops.backends.storage import ObjectLocked, ObjectStore, Retention, open_store
from erpops.backends.storage.catalog import BackupNotFound, Catalog
from erpops.environments import Storage
from erpops.manifest import ArtifactCheck, VerifyMarker, object_key
from tests.fixtures.s3 import S3Server
from tests.integration.storage.helpers import bid, make_backup, mark_restore_tested


def _local(tmp_path: Path) -> ObjectStore:
    return open_store(Storage(url=str(tmp_path / "store")), lambda v: v)


def _verify(catalog: Catalog, backup_id: str, ok: bool = True) -> None:
    manifest, sha = catalog.read_manifest(backup_id)
    checks = [
        ArtifactCheck(name=n, key=a.key, expected_size=a.size, expected_sha256=a.sha256, ok=ok)
        for n, a in manifest.artifacts.items()
    ]
    catalog.write_verify_marker(
        VerifyMarker(backup_id=backup_id, verified_at=datetime.now(UTC), ok=ok, artifacts=checks, manifest_sha256=sha)
    )


def test_states(tmp_path: Path) -> None:
    store = _local(tmp_path)
    cat = Catalog(store, "prod")
    ids = {
        name: bid(age)
        for name, age in [
            ("incomplete", 0.01),
            ("complete", 1),
            ("verified", 2),
            ("tested", 3),
            ("corrupt", 4),
            ("missing", 5),
            ("badjson", 6),
        ]
    }
    make_backup(store, "prod", ids["incomplete"], complete=False)
    make_backup(store, "prod", ids["complete"])
    make_backup(store, "prod", ids["verified"])
    _verify(cat, ids["verified"])
    make_backup(store, "prod", ids["tested"])
    _verify(cat, ids["tested"])
    mark_restore_tested(store, "prod", ids["tested"])
    make_backup(store, "prod", ids["corrupt"])
    _verify(cat, ids["corrupt"], ok=False)
    make_backup(store, "prod", ids["missing"])
    store.delete(object_key("prod", ids["missing"], "filestore.tar.zst"))
    make_backup(store, "prod", ids["badjson"])
    store.put_bytes(object_key("prod", ids["badjson"], "manifest.json"), b"{not json")
    # Not backups: other environments and foreign folders are ignored.
    make_backup(store, "staging", bid(0.5))
    store.put_bytes("prod/notes/readme.txt", b"hello")
    store.put_bytes("prod/loose-file", b"x")

    entries = cat.list()
    states = {e.backup_id: e.state for e in entries}
    assert states == {
        ids["incomplete"]: "incomplete",
        ids["complete"]: "complete",
        ids["verified"]: "verified",
        ids["tested"]: "restore-tested",
        ids["corrupt"]: "corrupt",
        ids["missing"]: "incomplete",
        ids["badjson"]: "incomplete",
    }
    assert [e.backup_id for e in entries] == sorted(states, reverse=True)
    by_id = {e.backup_id: e for e in entries}
    assert "no manifest" in by_id[ids["incomplete"]].problems
    assert any("filestore" in p and "missing" in p for p in by_id[ids["missing"]].problems)
    assert any("not valid JSON" in p for p in by_id[ids["badjson"]].problems)
    assert by_id[ids["complete"]].size > 4096 and not by_id[ids["complete"]].locked()
    assert by_id[ids["tested"]].as_dict()["restore_tested_at"] is not None

    assert cat.newest() is not None and cat.newest().backup_id == ids["complete"]  # type: ignore[union-attr]  # checked not None just before
    assert cat.choose().backup_id == ids["complete"]
    assert cat.choose(ids["tested"]).state == "restore-tested"
    with pytest.raises(BackupNotFound, match="incomplete"):
        cat.choose(ids["incomplete"])
    with pytest.raises(BackupNotFound, match="corrupt"):
        cat.choose(ids["corrupt"])
    with pytest.raises(BackupNotFound):
        cat.choose(bid(100))
    assert Catalog(store, "empty").list() == []
    with pytest.raises(BackupNotFound, match="no complete backup of empty"):
        Catalog(store, "empty").choose()


def test_stale_verify_marker_is_ignored_and_failed_drill_noted(tmp_path: Path) -> None:
    store = _local(tmp_path)
    cat = Catalog(store, "prod")
    b = bid(1)
    make_backup(store, "prod", b)
    _verify(cat, b)
    make_backup(store, "prod", b)  # rewritten with new artifacts: the old verify.json no longer applies
    mark_restore_tested(store, "prod", b, ok=False)
    entry = cat.get(b)
    assert entry.state == "complete"
    assert any("does not match the manifest" in p for p in entry.problems)
    assert "last restore drill failed" in entry.problems


def test_delete_removes_manifest_first_and_everything(tmp_path: Path) -> None:
    store = _local(tmp_path)
    cat = Catalog(store, "prod")
    b = bid(1)
    make_backup(store, "prod", b)
    mark_restore_tested(store, "prod", b)
    deleted = cat.delete(b)
    assert deleted[0].endswith("manifest.json")
    assert len(deleted) == 4
    assert store.list("prod/") == []
    with pytest.raises(BackupNotFound):
        cat.delete(b)


def test_catalog_on_s3_with_object_lock(s3_server: S3Server, s3_locked_bucket: str) -> None:
    store = open_store(s3_server.storage(s3_locked_bucket, "erp"), lambda v: v)
    cat = Catalog(store, "prod")
    locked, free, running = bid(2), bid(1), bid(0.01)
    make_backup(store, "prod", locked, retention=Retention("compliance", 2))
    make_backup(store, "prod", free)
    make_backup(store, "prod", running, complete=False)
    entries = {e.backup_id: e for e in cat.list()}
    assert entries[locked].locked() and entries[locked].lock_mode == "compliance"
    assert entries[locked].retain_until is not None and entries[locked].as_dict()["locked"] is True
    assert not entries[free].locked()
    assert entries[running].state == "incomplete"
    with pytest.raises(ObjectLocked, match=locked):
        cat.delete(locked)
    assert cat.get(locked).state == "complete"  # nothing was deleted, not even the manifest
    assert len(cat.delete(free)) == 3
    assert sorted(e.backup_id for e in cat.list()) == sorted([locked, running])
