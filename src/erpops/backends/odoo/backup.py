"""The Odoo backup pipeline: one consistent database snapshot plus the filestore, streamed into
the object store, the manifest written last.

How it works, so it can be checked by hand:

1. A read-only ``REPEATABLE READ`` transaction exports its snapshot (``pg_export_snapshot()``);
   the snapshot time is taken in that statement.
2. ``pg_dump -Fc -Z0 --snapshot=<id>`` dumps exactly that snapshot (custom format, uncompressed:
   the embedded PostgreSQL build has no zstd); its output is compressed with zstd (level 3,
   worker threads) and streamed into the object store, SHA-256 computed on the way. Meanwhile
   the same transaction reads the installed modules, the Odoo version (``base``'s
   ``latest_version``) and the row counts of the key tables — the facts the manifest records
   are those of the dumped snapshot.
3. Meanwhile the filestore directory is archived with ``tar`` (Python's ``tarfile`` when there
   is no ``tar``), compressed and streamed the same way. Odoo writes an attachment's file before
   committing the row naming it, so every file the snapshot references is already there.
4. ``manifest.json`` is written last. A backup killed before that point has no manifest and is
   ``incomplete``: never chosen for a restore, removed by pruning.

Nothing is staged on local disk and memory use does not grow with the database size.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import psycopg

from erpops import __version__
from erpops.backends.odoo import db as odoo_db
from erpops.backends.postgres import client as pg
from erpops.backends.storage.base import ObjectStore, Retention
from erpops.backends.streams import Child, StreamCancelled, compress
from erpops.errors import InvalidInput, PermanentError
from erpops.manifest import (
    DB_DUMP,
    FILESTORE,
    MANIFEST,
    Artifact,
    Manifest,
    RunbookRef,
    new_backup_id,
    object_key,
    restore_commands,
)

Log = Callable[[str], None]
#: (artifact name, bytes read from the source so far)
Progress = Callable[[str, int], None]


@dataclass
class BackupOptions:
    environment: str
    dsn: str
    database: str
    filestore: Path | None
    level: int = 3
    threads: int = 2
    retention: Retention | None = None
    backup_id: str | None = None
    run_id: str | None = None
    runbook: RunbookRef | None = None
    #: Tables whose row counts are recorded (default: odoo_db.KEY_TABLES that exist).
    tables: tuple[str, ...] | None = None
    #: Archive the filestore while the database is dumped (False: one after the other).
    parallel: bool = True
    #: ``logical`` (pg_dump of the database) or ``physical`` (a base backup of the whole server:
    #: :mod:`erpops.backends.postgres.basebackup`).
    method: str = "logical"


@dataclass
class BackupResult:
    manifest: Manifest
    manifest_key: str
    durations: dict[str, float] = field(default_factory=dict)


@dataclass
class _Facts:
    modules: dict[str, str] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None


def _never() -> bool:
    return False


def run_backup(
    store: ObjectStore,
    opts: BackupOptions,
    *,
    cancelled: Callable[[], bool] = _never,
    progress: Progress | None = None,
    log: Log | None = None,
) -> BackupResult:
    """Back up ``opts.database`` and ``opts.filestore`` into ``store``; returns the manifest."""
    if opts.filestore is not None and not opts.filestore.is_dir():
        raise InvalidInput(f"filestore {opts.filestore} is not a directory (odoo.filestore of {opts.environment})")
    store.check()
    if opts.method == "physical":
        return _run_physical(store, opts, cancelled=cancelled, progress=progress, log=log)
    backup_id = opts.backup_id or new_backup_id()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    durations: dict[str, float] = {}
    key = lambda name: object_key(opts.environment, backup_id, name)  # noqa: E731

    stop = threading.Event()  # set when one half of the backup failed: the other half stops too

    def halted() -> bool:
        return stop.is_set() or cancelled()

    filestore_job: _Job | None = None
    conn = pg.connect(opts.dsn, opts.database, autocommit=False)
    try:
        pg.refuse_unless_primary(conn, opts.dsn, f"a backup of {opts.database}")
        conn.rollback()  # the check's transaction: the snapshot below starts a fresh one
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot(), clock_timestamp()").fetchone()
        assert row is not None
        snapshot_id, snapshot_time = str(row[0]), row[1].astimezone(UTC)
        server_version = pg.server_version(conn)
        pg_dump = pg.client_for(conn, "pg_dump")
        facts = _Facts()
        reader = threading.Thread(target=_read_facts, args=(conn, opts.tables, facts), daemon=True)
        reader.start()
        if opts.filestore is not None and opts.parallel:
            # The filestore is archived beside the dump: Odoo writes a file before committing the
            # row that names it, so every file the snapshot references exists already.
            filestore_job = _Job(lambda: _archive_filestore(store, key(FILESTORE), opts, halted, progress), stop)
        try:
            db_art = _dump_database(store, key(DB_DUMP), opts, pg_dump, snapshot_id, halted, progress)
        except BaseException as exc:
            stop.set()
            other = filestore_job.join() if filestore_job is not None else None
            if isinstance(exc, StreamCancelled) and other is not None and not isinstance(other, StreamCancelled):
                raise other from None  # the filestore failed first; the dump only stopped because of it
            raise
        finally:
            if reader.is_alive() and halted():
                conn.cancel_safe()
            reader.join()
        if facts.error is not None:
            stop.set()
            if filestore_job is not None:
                filestore_job.join()
            raise PermanentError(f"reading modules and row counts of {opts.database} failed: {facts.error}")
    finally:
        conn.close()
    durations["database"] = round(time.monotonic() - t0, 3)
    if log:
        log(f"database {opts.database}: {db_art.uncompressed_size} bytes dumped, {db_art.size} stored")

    artifacts = {"db": db_art}
    if filestore_job is not None:
        artifacts["filestore"] = filestore_job.wait()
        durations["filestore"] = filestore_job.seconds
    elif opts.filestore is not None:
        t1 = time.monotonic()
        artifacts["filestore"] = _archive_filestore(store, key(FILESTORE), opts, cancelled, progress)
        durations["filestore"] = round(time.monotonic() - t1, 3)
    elif log:
        log("no filestore configured (odoo.filestore): backing up the database only")

    return _write_manifest(
        store, opts, backup_id, started, t0, durations, cancelled, f"{opts.database}_restored",
        snapshot_time=snapshot_time, postgres_version=server_version, pg_dump_version=pg_dump.version_text,
        odoo_version=odoo_db.odoo_version(facts.modules), modules=facts.modules, row_counts=facts.row_counts,
        artifacts=artifacts,
    )  # fmt: skip


def _write_manifest(
    store: ObjectStore,
    opts: BackupOptions,
    backup_id: str,
    started: datetime,
    t0: float,
    durations: dict[str, float],
    cancelled: Callable[[], bool],
    target_db: str,
    **fields: Any,
) -> BackupResult:
    """The manifest (what every backup records, and ``fields``), written last: before it the
    backup is incomplete."""
    manifest = Manifest(
        backup_id=backup_id,
        environment=opts.environment,
        database=opts.database,
        started_at=started,
        ended_at=datetime.now(UTC),
        erpops_version=__version__,
        runbook=opts.runbook,
        run_id=opts.run_id,
        **fields,
    )
    manifest.restore_commands = restore_commands(manifest, store.url, target_db=target_db)
    if cancelled():
        raise StreamCancelled("backup cancelled before its manifest was written; it stays incomplete")
    key = object_key(opts.environment, backup_id, MANIFEST)
    store.put_bytes(key, manifest.to_json(), opts.retention)
    durations["total"] = round(time.monotonic() - t0, 3)
    return BackupResult(manifest, key, durations)


def _facts_now(opts: BackupOptions) -> tuple[dict[str, str], dict[str, int]]:
    with pg.connect(opts.dsn, opts.database) as conn:
        return odoo_db.installed_modules(conn), odoo_db.row_counts(conn, opts.tables)


def _run_physical(
    store: ObjectStore,
    opts: BackupOptions,
    *,
    cancelled: Callable[[], bool],
    progress: Progress | None,
    log: Log | None,
) -> BackupResult:
    """A base backup of the server (``base.tar.zst`` and PostgreSQL's ``backup_manifest``) and the
    filestore beside it; the Odoo facts (modules, row counts) read as the copy starts and ends."""
    from erpops.backends.postgres import basebackup
    from erpops.manifest import BASE_BACKUP, PG_BACKUP_MANIFEST, Physical

    backup_id = opts.backup_id or new_backup_id()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    key = lambda name: object_key(opts.environment, backup_id, name)  # noqa: E731
    with pg.connect(opts.dsn, opts.database) as conn:
        pg.refuse_unless_primary(conn, opts.dsn, f"a base backup of {opts.database}'s server")
        server_version = pg.server_version(conn)
    facts: dict[str, Any] = {}

    def read_facts(when: str) -> None:
        try:
            facts[when] = _facts_now(opts)
        except BaseException as exc:  # raised below
            facts["error"] = exc

    reader = threading.Thread(target=read_facts, args=("start",), daemon=True)
    reader.start()  # beside the copy: the Odoo facts as it starts
    stop = threading.Event()

    def halted() -> bool:
        return stop.is_set() or cancelled()

    filestore_job = None
    if opts.filestore is not None:
        filestore_job = _Job(lambda: _archive_filestore(store, key(FILESTORE), opts, halted, progress), stop)
    copy_started = time.monotonic()
    try:
        base = basebackup.stream(
            store, key(BASE_BACKUP), key(PG_BACKUP_MANIFEST), opts.dsn, level=opts.level, threads=opts.threads,
            retention=opts.retention, cancelled=halted, progress=(lambda n: progress("base", n)) if progress else None,
        )  # fmt: skip
    except BaseException:
        stop.set()
        if filestore_job is not None:
            filestore_job.join()
        raise
    stopped = datetime.now(UTC)
    copy_seconds = round(time.monotonic() - copy_started, 3)
    reader.join()
    durations = {"database": round(time.monotonic() - t0, 3), "copy": copy_seconds}
    if log:
        log(f"base backup: {base.artifact.uncompressed_size} bytes copied, {base.artifact.size} stored; "
            f"WAL {base.label.start_lsn} .. {base.label.stop_lsn} on timeline {base.label.timeline}")  # fmt: skip
    artifacts = {"base": base.artifact, "backup_manifest": base.manifest}
    reader = threading.Thread(target=read_facts, args=("end",), daemon=True)
    reader.start()  # and as it ended, beside the filestore's end
    if filestore_job is not None:
        artifacts["filestore"] = filestore_job.wait()
        durations["filestore"] = filestore_job.seconds
    reader.join()
    if "error" in facts:
        raise PermanentError(f"reading modules and row counts of {opts.database} failed: {facts['error']}")
    (modules, counts), (_, counts_end) = facts["start"], facts["end"]
    physical = Physical(
        start_lsn=base.label.start_lsn,
        stop_lsn=base.label.stop_lsn,
        timeline=base.label.timeline,
        start_wal=base.label.start_wal,
        start_time=base.label.start_time,
        stop_time=stopped,
        system_identifier=base.label.system_identifier,
        backup_label=base.label.label,
    )
    return _write_manifest(
        store, opts, backup_id, started, t0, durations, cancelled, "odoo_restored",
        snapshot_time=stopped, postgres_version=server_version, pg_dump_version=base.client_version,
        method="physical", physical=physical, odoo_version=odoo_db.odoo_version(modules), modules=modules,
        row_counts=counts, row_counts_end=counts_end, artifacts=artifacts,
    )  # fmt: skip


class _Job:
    """Run ``fn`` in a thread; its result or error is kept; an error sets ``stop``."""

    def __init__(self, fn: Callable[[], Artifact], stop: threading.Event) -> None:
        self.result: Artifact | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._fn, self._stop = fn, stop
        self._thread = threading.Thread(target=self._run, daemon=True, name="erpops-filestore")
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc
            self._stop.set()
        self.seconds = round(time.monotonic() - t0, 3)

    def join(self) -> BaseException | None:
        self._thread.join()
        return self.error

    def wait(self) -> Artifact:
        """Join; the artifact, or the thread's error raised here."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError("filestore job ended without an artifact or an error")
        return self.result


def _read_facts(conn: psycopg.Connection[Any], tables: tuple[str, ...] | None, facts: _Facts) -> None:
    """In the exporting transaction: what the dumped snapshot holds (runs beside pg_dump)."""
    try:
        facts.modules = odoo_db.installed_modules(conn)
        facts.row_counts = odoo_db.row_counts(conn, tables)
    except BaseException as exc:  # reported by the caller
        facts.error = exc


def _dump_database(
    store: ObjectStore,
    key: str,
    opts: BackupOptions,
    pg_dump: pg.PgClient,
    snapshot_id: str,
    cancelled: Callable[[], bool],
    progress: Progress | None,
) -> Artifact:
    argv = [str(pg_dump.path), "--format=custom", "--compress=0", f"--snapshot={snapshot_id}", "--no-password"]
    env = pg.libpq_env(opts.dsn, opts.database)
    report = (lambda n: progress("db", n)) if progress else None
    with (
        Child(argv, env=env, stdout=True, name="pg_dump", watch=cancelled) as child,
        store.writer(key, opts.retention) as writer,
    ):
        read = compress(
            child.stdout, writer, level=opts.level, threads=opts.threads, cancelled=cancelled, progress=report
        )
        child.finish(cancelled=cancelled, what=f"dumping {opts.database}")
        if read == 0:
            raise PermanentError(f"pg_dump produced no output for {opts.database}; not storing an empty dump")
    info = writer.info
    assert info is not None and info.sha256 is not None
    return Artifact(
        key=key,
        size=info.size,
        sha256=info.sha256,
        compression="zstd",
        format="pg_dump-custom",
        uncompressed_size=read,
    )


def _count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


class _Listed:
    """Counts the files GNU tar --verbose names on stderr (directories end with "/"); its own
    messages ("tar: ...") are left for error reports."""

    def __init__(self) -> None:
        self.files = 0

    def __call__(self, line: str) -> bool:
        if line.startswith("tar: "):
            return False
        if not line.endswith("/"):
            self.files += 1
        return True


def _archive_filestore(
    store: ObjectStore,
    key: str,
    opts: BackupOptions,
    cancelled: Callable[[], bool],
    progress: Progress | None,
) -> Artifact:
    assert opts.filestore is not None
    report = (lambda n: progress("filestore", n)) if progress else None
    # Beside the dump, one worker is enough (attachments are mostly compressed already) and it
    # keeps memory down: each zstd worker buffers a few MiB jobs.
    threads = min(opts.threads, 1) if opts.parallel else opts.threads
    tar = shutil.which("tar")
    with store.writer(key, opts.retention) as writer:
        if tar:
            # GNU tar exits 1 when a file changed while it was read (Odoo kept writing): still a
            # usable archive of the directory as it was; anything else is a failure.
            # --verbose names each member on stderr as tar writes it: the files are counted there
            # (a directory ends with "/"), instead of walking the filestore a second time
            argv = [tar, "--create", "--file=-", f"--directory={opts.filestore}", "--numeric-owner", "--verbose", "."]
            listed = _Listed()
            with Child(argv, stdout=True, name="tar", ok_codes=(0, 1), watch=cancelled, on_stderr=listed) as child:
                read = compress(
                    child.stdout, writer, level=opts.level, threads=threads, cancelled=cancelled, progress=report
                )
                child.finish(cancelled=cancelled, what=f"archiving {opts.filestore}")
            files = listed.files
        else:
            files = _count_files(opts.filestore)
            read = _tarfile_archive(opts, writer, cancelled)
    info = writer.info
    assert info is not None and info.sha256 is not None
    return Artifact(
        key=key,
        size=info.size,
        sha256=info.sha256,
        compression="zstd",
        format="tar",
        uncompressed_size=read,
        files=files,
    )


class _Counting:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return int(self.raw.write(data) or len(data))


def _tarfile_archive(opts: BackupOptions, writer: Any, cancelled: Callable[[], bool]) -> int:
    """Without a ``tar`` binary: Python's tarfile in streaming mode into the compressor."""
    import zstandard

    assert opts.filestore is not None
    cctx = zstandard.ZstdCompressor(level=opts.level, threads=opts.threads, write_checksum=True)
    with cctx.stream_writer(writer, closefd=False) as zw:
        counting = _Counting(zw)
        stream = cast(IO[bytes], counting)  # tarfile's stream mode "w|" only calls write()
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.GNU_FORMAT) as tf:
            for entry in sorted(opts.filestore.iterdir()):
                if cancelled():
                    raise StreamCancelled("cancelled while archiving the filestore")
                tf.add(entry, arcname=f"./{entry.name}")
    return counting.size
