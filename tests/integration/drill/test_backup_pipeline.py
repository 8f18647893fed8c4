"""The backup pipeline itself: cancellation, a failing or too old pg_dump, no filestore."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from erpops.backends.odoo.backup import BackupOptions, run_backup
from erpops.backends.postgres import client as pg
from erpops.backends.storage.local import LocalStore
from erpops.backends.streams import StreamCancelled
from erpops.errors import PermanentError
from tests.fixtures.sql import scalar
from tests.integration.drill.conftest import Drill, local_env


def _opts(seeded_db, **kw) -> BackupOptions:
    kw.setdefault("filestore", seeded_db.filestore)
    return BackupOptions(environment="t", dsn=seeded_db.server_dsn, database=seeded_db.dbname, **kw)


def _pg_dumps_running(seeded_db) -> int:
    with pg.connect(seeded_db.server_dsn) as conn:
        return int(
            scalar(
                conn,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND datname = %s",
                (seeded_db.dbname,),
            )
        )


@pytest.mark.parametrize("parallel", [True, False])
def test_cancelled_backup_leaves_nothing_and_no_process(tmp_path: Path, seeded_db, parallel: bool) -> None:
    store = LocalStore(tmp_path / "store")
    seen: list[str] = []

    def progress(part: str, done: int) -> None:
        seen.append(part)

    with pytest.raises(StreamCancelled):
        run_backup(store, _opts(seeded_db, parallel=parallel), cancelled=lambda: bool(seen), progress=progress)
    assert store.list("t/") == [] or all(not o.key.endswith("manifest.json") for o in store.list("t/"))
    if not parallel:
        assert store.list("t/") == []  # cancelled during the first artifact: nothing published
    assert _pg_dumps_running(seeded_db) == 0


def test_backup_without_a_filestore(tmp_path: Path, seeded_db) -> None:
    store = LocalStore(tmp_path / "store")
    result = run_backup(store, _opts(seeded_db, filestore=None))
    assert set(result.manifest.artifacts) == {"db"}
    keys = sorted(o.key.rsplit("/", 1)[1] for o in store.list("t/"))
    assert keys == ["db.dump.zst", "manifest.json"]


def _fake_pg_dump(bindir: Path, version: str, body: str) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "pg_dump"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) {version}"; exit 0; fi\n' + body + "\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_a_failing_pg_dump_never_yields_a_backup(tmp_path: Path, seeded_db, monkeypatch) -> None:
    """click-odoo-backupdb's failure: pg_dump fails, the tool still reports success. Not here."""
    bindir = tmp_path / "bin"
    _fake_pg_dump(bindir, "18.6", 'printf "PGDMP partial"; echo "pg_dump: error: connection lost" >&2; exit 1')
    monkeypatch.setenv("ERPOPS_PG_BINDIR", str(bindir))
    store = LocalStore(tmp_path / "store")
    with pytest.raises(PermanentError, match=r"pg_dump failed .*connection lost"):
        run_backup(store, _opts(seeded_db))
    assert [o.key for o in store.list("t/") if o.key.endswith(("db.dump.zst", "manifest.json"))] == []


def test_pg_dump_older_than_the_server_is_refused_in_preflight(drill: Drill, seeded_db, tmp_path: Path) -> None:
    bindir = tmp_path / "oldbin"
    _fake_pg_dump(bindir, "15.4", "exit 0")
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    os.environ["ERPOPS_PG_BINDIR"] = str(bindir)
    try:
        res = drill.run("backup", "--env", "local")
    finally:
        del os.environ["ERPOPS_PG_BINDIR"]
    assert res.code == 3  # a misconfigured target, as the README's exit codes say (issue 17 item 6: was 1)
    assert "older than the PostgreSQL 18 server" in res.step("preflight")["error"]
    assert drill.backups("local") == []
