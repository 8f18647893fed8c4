"""Physical backups (issue 14, item 1): ``backup`` with ``backup.method: physical`` streams a
base backup of the real PostgreSQL server (pg_basebackup's tar) into the store beside the
filestore, with PostgreSQL's own backup_manifest; the manifest says where it sits in the WAL; the
stored tar unpacks into a data directory that ``pg_verifybackup`` accepts; the catalog lists and
verifies it like any backup."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import zstandard

from erpops.backends.postgres import client as pg
from erpops.backends.postgres.basebackup import TarSniffer
from tests.integration.drill.conftest import Drill, local_env


def test_a_physical_backup_is_a_verifiable_base_backup_with_its_wal_range(
    drill: Drill, seeded_db, tmp_path: Path
) -> None:
    store = drill.root / "store"
    drill.add("phys", **local_env(seeded_db, store, backup={"method": "physical"}))
    res = drill.run("backup", "--env", "phys")
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    backup_id = res.finished()["outputs"]["backup_id"]
    folder = store / "phys" / backup_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "backup_manifest", "base.tar.zst", "filestore.tar.zst", "manifest.json", "verify.json"]  # fmt: skip
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["method"] == "physical"
    phys = manifest["physical"]
    assert phys["timeline"] >= 1 and len(phys["start_wal"]) == 24
    start, stop = (int(x.split("/")[0], 16) << 32 | int(x.split("/")[1], 16) for x in (phys["start_lsn"],
                                                                                        phys["stop_lsn"]))  # fmt: skip
    assert 0 < start <= stop
    assert "START WAL LOCATION: " + phys["start_lsn"] in phys["backup_label"]
    assert manifest["row_counts"]["sale_order"] == seeded_db.result.counts["sale_order"]
    assert manifest["modules"]["sale"] and manifest["pg_dump_version"].split(".")[0] == manifest[
        "postgres_version"].split(".")[0]  # fmt: skip
    (entry,) = drill.backups("phys")
    assert entry["state"] == "verified"

    # what was stored is a base backup PostgreSQL's own verifier accepts
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with (
        (folder / "base.tar.zst").open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as tar_stream,
        tarfile.open(fileobj=tar_stream, mode="r|") as tar,
    ):
        tar.extractall(data, filter="tar")
    assert (data / "backup_manifest").read_bytes() == (folder / "backup_manifest").read_bytes()
    verifier = pg.find_client("pg_verifybackup")
    done = subprocess.run([str(verifier.path), str(data)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "successfully verified" in done.stdout


def test_the_tar_sniffer_keeps_wanted_members_whatever_the_chunking(tmp_path: Path) -> None:
    import io
    import random

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, size in (("a", 0), ("backup_label", 230), ("big", 70_000), ("deep/" * 20 + "x", 5),
                           ("backup_manifest", 4097)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(random.randrange(256) for _ in range(size))))
    raw = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        want = {m: tar.extractfile(m).read() for m in ("backup_label", "backup_manifest")}  # type: ignore[union-attr]
    for step in (1, 7, 511, 512, 513, 4096, len(raw)):
        sniffer = TarSniffer()
        for i in range(0, len(raw), step):
            sniffer.feed(raw[i : i + step])
        assert sniffer.members == want and sniffer.count == 5 and sniffer.ended, step


def test_a_role_without_replication_is_refused_at_preflight(drill: Drill, seeded_db) -> None:
    import psycopg

    with psycopg.connect(seeded_db.server_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS erp_norepl")
        conn.execute("CREATE ROLE erp_norepl LOGIN")
    try:
        dsn = seeded_db.server_dsn.replace("postgres@", "erp_norepl@", 1)
        env = local_env(seeded_db, drill.root / "store", backup={"method": "physical"})
        env["database"]["dsn"] = dsn
        drill.add("norepl", **env)
        res = drill.run("backup", "--env", "norepl")
        assert res.code == 3, res.stdout[-2000:] + res.stderr
        assert "cannot take a base backup" in res.stdout + res.stderr and "REPLICATION" in res.stdout + res.stderr
        assert not (drill.root / "store" / "norepl").exists() or not any((drill.root / "store" / "norepl").iterdir())
    finally:
        with psycopg.connect(seeded_db.server_dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS erp_norepl")
