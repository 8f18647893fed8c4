"""How a restore fetches the filestore archive: hashed where it lies on a local-directory store
(no copy in scratch, held open until unpacked), downloaded into scratch from S3 — and, either
way, a corrupt or altered archive is refused before any database restore or unpacked file."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from erpops.backends.odoo import restore as R
from erpops.backends.odoo.backup import BackupOptions, run_backup
from erpops.backends.postgres import client as pg
from erpops.backends.storage import open_store
from erpops.backends.storage.local import LocalStore
from erpops.manifest import Manifest
from tests.fixtures.sql import scalar
from tests.integration.drill.conftest import Drill, drill_databases, local_env


@dataclass
class Backup:
    root: Path
    store: LocalStore
    manifest: Manifest

    @property
    def archive(self) -> Path:
        return self.store.path_of(self.manifest.artifacts["filestore"].key)


@pytest.fixture(scope="module")
def backup(seeded_db, tmp_path_factory) -> Backup:
    """One backup of the seeded database (with its filestore) in a local-directory store."""
    root = tmp_path_factory.mktemp("fetch")
    store = LocalStore(root / "store")
    opts = BackupOptions(
        environment="t", dsn=seeded_db.server_dsn, database=seeded_db.dbname, filestore=seeded_db.filestore
    )
    return Backup(root, store, run_backup(store, opts).manifest)


@pytest.fixture
def own_copy(backup: Backup, tmp_path: Path) -> Backup:
    """The module's backup copied into a store of this test's own, free to damage."""
    shutil.copytree(backup.store.root, tmp_path / "store")
    return Backup(tmp_path, LocalStore(tmp_path / "store"), backup.manifest)


@pytest.fixture
def target(seeded_db) -> Iterator[str]:
    """A new, empty database made the way odoo.restore makes it; dropped after the test."""
    name = f"odoo_seed_fetchtest_{time.monotonic_ns() % 10**8}"
    R.create_database(seeded_db.server_dsn, name, run_id="test-fetch")
    try:
        yield name
    finally:
        R.drop_database(seeded_db.server_dsn, name, run_id=None)


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def table_count(dsn: str, database: str) -> int:
    with pg.connect(dsn, database) as conn:
        return int(scalar(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))


def test_local_archive_is_checked_in_place_then_unpacked_from_the_store(
    backup: Backup, seeded_db, target: str, tmp_path: Path
) -> None:
    scratch = R.make_scratch(tmp_path / "scratch")
    fetched = R.fetch(backup.store, backup.manifest, scratch)
    assert [(a.name, a.ok) for a in fetched.artifacts] == [("db", True), ("filestore", True)]
    # no copy: scratch holds the dump, and a link to the store's object
    assert fetched.filestore_archive is not None and fetched.filestore_archive.is_symlink()
    assert fetched.filestore_archive.resolve() == backup.archive.resolve()
    copies = sorted(p.name for p in scratch.iterdir() if p.is_file() and not p.is_symlink())
    assert copies == [".erpops-scratch", "db.dump"]

    seconds = R.restore(fetched, seeded_db.server_dsn, target, scratch / "filestore" / target)
    assert seconds["filestore"] >= 0 and table_count(seeded_db.server_dsn, target) > 10
    assert digests(scratch / "filestore" / target) == digests(seeded_db.filestore)
    assert fetched.archive is not None and fetched.archive.file.closed  # restore let go of it

    # what odoo.restore does afterwards, then odoo.cleanup: the store keeps its object intact
    fetched.filestore_archive.unlink(missing_ok=True)
    R.remove_scratch(scratch)
    art = backup.manifest.artifacts["filestore"]
    assert backup.store.digest(art.key) == (art.sha256, art.size)


def test_corrupt_local_archive_is_refused_before_anything_is_restored(own_copy: Backup, tmp_path: Path) -> None:
    data = bytearray(own_copy.archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    own_copy.archive.write_bytes(bytes(data))
    scratch = R.make_scratch(tmp_path / "scratch")
    with pytest.raises(R.ChecksumMismatch, match=r"corrupt.*filestore\.tar\.zst"):
        R.fetch(own_copy.store, own_copy.manifest, scratch)
    assert sorted(p.name for p in scratch.iterdir()) == [".erpops-scratch"]  # dump deleted, no link
    assert own_copy.archive.read_bytes() == bytes(data)  # the store's object is left as it was


def test_archive_written_into_after_its_check_is_refused_before_pg_restore(
    own_copy: Backup, seeded_db, target: str, tmp_path: Path
) -> None:
    scratch = R.make_scratch(tmp_path / "scratch")
    fetched = R.fetch(own_copy.store, own_copy.manifest, scratch)
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(own_copy.archive, "r+b") as f:  # same size, one byte changed, in place
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    dest = scratch / "filestore" / target
    with pytest.raises(R.ChecksumMismatch, match="written into after its checksum was checked"):
        R.restore(fetched, seeded_db.server_dsn, target, dest)
    assert table_count(seeded_db.server_dsn, target) == 0  # pg_restore never started
    assert not dest.exists()


def test_unpacked_bytes_that_differ_from_the_manifest_are_deleted(backup: Backup, tmp_path: Path) -> None:
    art = backup.manifest.artifacts["filestore"]
    dest = tmp_path / "fs"
    with pytest.raises(R.ChecksumMismatch, match="changed while it was unpacked"):
        R.extract_filestore(backup.archive, dest, expect=art.model_copy(update={"sha256": "0" * 64}))
    assert dest.is_dir() and not any(dest.iterdir())
    R.extract_filestore(backup.archive, tmp_path / "fs2", expect=art)  # the right checksum unpacks
    assert any((tmp_path / "fs2").iterdir())


def test_s3_archive_is_downloaded_into_scratch_and_checked(
    seeded_db, s3_server, s3_bucket, target: str, tmp_path: Path
) -> None:
    store = open_store(s3_server.storage(s3_bucket, "erp"), lambda ref: ref)
    opts = BackupOptions(
        environment="t", dsn=seeded_db.server_dsn, database=seeded_db.dbname, filestore=seeded_db.filestore
    )
    manifest = run_backup(store, opts).manifest
    scratch = R.make_scratch(tmp_path / "scratch")
    fetched = R.fetch(store, manifest, scratch)
    archive = fetched.filestore_archive
    assert archive is not None and archive.is_file() and not archive.is_symlink()
    R.restore(fetched, seeded_db.server_dsn, target, scratch / "filestore" / target)
    assert digests(scratch / "filestore" / target) == digests(seeded_db.filestore)

    key = manifest.artifacts["filestore"].key
    data = bytearray(store.get_bytes(key, limit=1 << 30))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(key, bytes(data))
    again = R.make_scratch(tmp_path / "again")
    with pytest.raises(R.ChecksumMismatch, match=r"corrupt.*filestore\.tar\.zst"):
        R.fetch(store, manifest, again)
    assert sorted(p.name for p in again.iterdir()) == [".erpops-scratch"]


def test_restore_test_leaves_the_local_store_archive_in_place(drill: Drill, seeded_db) -> None:
    """Through the CLI: odoo.restore deletes its scratch archive after unpacking; on a local store
    that is a link, so the backup's own filestore.tar.zst must survive the drill intact."""
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    res = drill.run("backup", "--env", "local", "--param", "verify=false")
    assert res.code == 0, res.stdout[-3000:]
    backup_id = res.finished()["outputs"]["backup_id"]
    archive = drill.store("local") / "local" / backup_id / "filestore.tar.zst"
    before = hashlib.sha256(archive.read_bytes()).hexdigest()

    res = drill.run("restore-test", "--env", "local")
    assert res.code == 0, res.stdout[-3000:]
    restore = res.step("restore")["outputs"]
    assert [a["name"] for a in restore["artifacts"] if a["ok"]] == ["db", "filestore"]
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before
    assert drill_databases(seeded_db) == []
    assert not any(drill.scratch.glob("erpops-scratch-*"))
