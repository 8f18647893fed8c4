"""Restoring an erpops backup: fetch and check every artifact first, then restore.

1. **Fetch** — each artifact is read from the object store once, its SHA-256 and size computed
   while reading and compared with the manifest. The database dump is decompressed on the way
   into a scratch file (``pg_restore -j`` needs a seekable file; from a pipe it can only restore
   with one job). The filestore archive stays compressed: downloaded into scratch from S3, or,
   on a local-directory store, hashed where it lies (no copy; ``<scratch>/filestore.tar.zst`` is
   then a symbolic link to it) and held open until it is unpacked, so the bytes unpacked are the
   bytes checked. A mismatch stops here: nothing has been restored.
2. **Restore** — ``pg_restore --no-owner --no-acl --exit-on-error -j N`` into the (new, empty)
   target database while the filestore is unpacked beside it, into
   ``<scratch>/filestore/<database>`` (Odoo's ``<data_dir>/filestore/<db>`` layout). An archive
   written into since its check is refused before either starts; the unpacked bytes are hashed
   again on the way to ``tar`` and compared with the manifest at the end.

The scratch directory carries a marker file; :func:`remove_scratch` deletes only directories
that have it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from erpops.backends.postgres import client as pg
from erpops.backends.storage.base import ObjectStore
from erpops.backends.storage.local import LocalStore
from erpops.backends.streams import (
    CHUNK,
    CheckedFile,
    Child,
    HashingReader,
    StreamCancelled,
    ZstdError,
    decompress,
)
from erpops.errors import InvalidInput, PermanentError
from erpops.manifest import MANIFEST, Artifact, Manifest, object_key

SCRATCH_MARKER = ".erpops-scratch"
#: The comment ``postgres.create_database`` marks erpops's databases with (same prefix, same form).
MARK = pg.CREATED_MARK
Cancelled = Callable[[], bool]
Progress = Callable[[str, int], None]


class ChecksumMismatch(PermanentError):
    """An artifact's bytes do not match the manifest: the backup is corrupt; nothing was restored.
    ``results``: every artifact as read from the store, when they all were (to record the finding)."""

    def __init__(self, message: str, *, results: list[ArtifactResult] | None = None) -> None:
        super().__init__(message)
        self.results = list(results or [])


class RestoreFailed(PermanentError):
    """``pg_restore`` failed on artifacts that matched the manifest. ``backup_at_fault``: the
    cause is in the backup (the archive cannot be restored), not the moment (the server went
    away, the disk filled up, the step was cancelled)."""

    def __init__(self, message: str, *, backup_at_fault: bool) -> None:
        super().__init__(message)
        self.backup_at_fault = backup_at_fault


#: pg_restore errors that say something about the moment or the target, not about the backup
_NOT_THE_BACKUP = (
    "could not connect",
    "connection to server",
    "server closed the connection",
    "terminating connection",
    "no space left on device",
    "could not extend file",
    "out of memory",
    "too many connections",
    "the database system is",
    "canceling statement",
    "permission denied",
)
#: a real archive format version (1.x) pg_restore does not know: its pg_dump was newer (the tool's
#: fault); a version no pg_dump ever wrote (0.0) is a damaged archive
_NEWER_ARCHIVE = re.compile(r"unsupported version \(1\.\d+\) in file header")


def _never() -> bool:
    return False


@dataclass
class ArtifactResult:
    name: str
    key: str
    expected_sha256: str
    sha256: str
    expected_size: int
    size: int

    @property
    def ok(self) -> bool:
        return self.sha256 == self.expected_sha256 and self.size == self.expected_size

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "key": self.key,
            "ok": self.ok,
            "expected_sha256": self.expected_sha256,
            "sha256": self.sha256,
            "expected_size": self.expected_size,
            "size": self.size,
        }


@dataclass
class Fetched:
    """What :func:`fetch` checked. ``filestore_archive`` is in scratch: the downloaded archive or a
    symbolic link to the store's object (deleting it never touches the store); ``archive`` holds
    the checked archive open for :func:`restore`, which closes it."""

    manifest: Manifest
    scratch: Path
    dump: Path
    filestore_archive: Path | None
    artifacts: list[ArtifactResult] = field(default_factory=list)
    seconds: float = 0.0
    archive: CheckedFile | None = None

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def load_manifest(store: ObjectStore, environment: str, backup_id: str) -> Manifest:
    key = object_key(environment, backup_id, MANIFEST)
    data = store.get_bytes(key)
    return Manifest.from_json(data, where=store.location(key))


# --- scratch directories ----------------------------------------------------------------------


def scratch_dir(root: str | Path | None, database: str) -> Path:
    """Where a restore of ``database`` keeps its files: ``<root>/erpops-scratch-<database>``."""
    base = Path(root).expanduser() if root else Path(os.environ.get("ERPOPS_SCRATCH_DIR") or "/var/tmp")
    return base / f"erpops-scratch-{database}"


def make_scratch(path: Path, run_id: str | None = None) -> Path:
    """Create (or reuse, when erpops made it) a scratch directory; its marker names ``run_id``."""
    if path.exists() and not (path / SCRATCH_MARKER).exists():
        raise InvalidInput(f"{path} exists and was not made by erpops; choose another scratch directory")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    run = f"run={run_id}\n" if run_id else ""
    (path / SCRATCH_MARKER).write_text("created by erpops for a restore; safe to delete\n" + run)
    return path


def scratch_run(path: Path) -> str | None:
    """The run whose restore made scratch directory ``path`` (None: not erpops's, or not said)."""
    try:
        text = (path / SCRATCH_MARKER).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("run="):
            return line[4:].strip() or None
    return None


def list_scratch(root: str | Path | None) -> list[tuple[Path, str | None]]:
    """Scratch directories erpops made under ``root`` (default as :func:`scratch_dir`), each with
    the run that made it."""
    base = Path(root).expanduser() if root else Path(os.environ.get("ERPOPS_SCRATCH_DIR") or "/var/tmp")
    try:
        entries = sorted(base.glob("erpops-scratch-*"))
    except OSError:
        return []
    return [(e, scratch_run(e)) for e in entries if e.is_dir() and (e / SCRATCH_MARKER).exists()]


def marked_databases(dsn: str) -> list[tuple[str, str]]:
    """(database, run id) of every database on the server carrying erpops's exact mark."""
    with pg.connect(dsn, "postgres" if pg.parse_dsn(dsn).get("dbname") is None else None) as conn:
        rows = conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database ORDER BY datname"
        ).fetchall()
    found = []
    for name, comment in rows:
        run = pg.marked_run(comment)
        if run is not None:
            found.append((str(name), run))
    return found


def remove_scratch(path: Path) -> bool:
    """Delete a scratch directory erpops made (it has the marker); anything else is refused. A
    scratch PostgreSQL server still running in it (a physical drill's) is stopped first."""
    if not path.exists():
        return False
    if not (path / SCRATCH_MARKER).exists():
        raise PermanentError(f"not deleting {path}: it has no {SCRATCH_MARKER} marker, so erpops did not create it")
    for pidfile in path.glob("*/postmaster.pid"):
        _stop_postmaster(pidfile)
    shutil.rmtree(path)
    return True


def _stop_postmaster(pidfile: Path, wait: float = 10.0) -> None:
    """Immediate shutdown (SIGQUIT, then SIGKILL) of the postmaster of ``pidfile``'s data directory."""
    import signal

    try:
        pid = int(pidfile.read_text().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if str(pidfile.parent).encode() not in fh.read() and not (pidfile.parent / "PG_VERSION").exists():
                return
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


# --- target databases -------------------------------------------------------------------------


def _admin(dsn: str, target: str) -> Any:
    """A connection for CREATE/DROP DATABASE: the DSN's own database, unless that is the target."""
    own = pg.parse_dsn(dsn).get("dbname")
    return pg.connect(dsn, "postgres" if own in (None, target) else None)


def check_new_database(dsn: str, name: str, *, run_id: str | None = None) -> bool:
    """Refuse before any work when ``name`` exists already: a restore goes into a new database —
    unless run ``run_id`` created it (an earlier attempt of this very run, killed or failed mid-way):
    that half-restored database is dropped, to be restored again. Returns True when it was."""
    pg.quote_ident(name)
    with _admin(dsn, name) as conn:
        pg.refuse_unless_primary(conn, dsn, f"a restore into {name}")
        exists, comment = pg.database_comment(conn, name)
        if not exists:
            return False
        if run_id is not None and pg.marked_run(comment) == run_id:
            pg.drop_database(conn, name)
            return True
        raise InvalidInput(f"database {name!r} already exists on {pg.describe(dsn)}; restore into a new name")


def owner_of(dsn: str, database: str) -> str | None:
    """The role owning ``database`` (None when it does not exist)."""
    with _admin(dsn, database) as conn:
        row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)).fetchone()
    return str(row[0]) if row else None


def create_database(dsn: str, name: str, *, run_id: str, note: str = "", owner: str | None = None) -> str:
    """Create ``name`` with the mark ``postgres.create_database`` puts on its databases
    (``erpops:created run=<run id> at=<time>``), so only erpops's own databases are ever dropped.
    ``owner``: the role that owns it (default: the connecting role). Returns the mark."""
    pg.quote_ident(name)  # refuses names PostgreSQL cannot take
    mark = pg.created_mark(run_id, note)
    with _admin(dsn, name) as conn:
        pg.create_database(conn, name, comment=mark, owner=owner)
    return mark


def drop_database(dsn: str, name: str, *, run_id: str | None) -> bool:
    """Drop ``name`` (its sessions ended) if run ``run_id`` created it (its comment is exactly
    erpops's mark naming that run; ``run_id=None``: any erpops run, for tools and tests); refuse
    any other database. Returns False when it does not exist."""
    with _admin(dsn, name) as conn:
        exists, comment = pg.database_comment(conn, name)
        if not exists:
            return False
        creator = pg.marked_run(comment)
        if creator is None:
            raise PermanentError(
                f"refusing to drop database {name!r}: erpops did not create it (no '{MARK}' mark on it)"
            )
        if run_id is not None and creator != run_id:
            raise PermanentError(
                f"refusing to drop database {name!r}: run {creator} created it, not this run ({run_id})",
                hint=f"to drop a database run {creator} kept, name that run (odoo.cleanup created_by: {creator})",
            )
        pg.drop_database(conn, name)
    return True


# --- fetch ------------------------------------------------------------------------------------


def fetch(
    store: ObjectStore,
    manifest: Manifest,
    scratch: Path,
    *,
    cancelled: Cancelled = _never,
    progress: Progress | None = None,
) -> Fetched:
    """Fetch every artifact of ``manifest`` into ``scratch`` (the filestore archive of a
    local-directory store is only hashed where it lies), checking SHA-256 and size.

    Raises :class:`ChecksumMismatch` (after deleting what was fetched) when any artifact differs.
    """
    t0 = time.monotonic()
    db = manifest.artifacts.get("db")
    if db is None and manifest.method == "physical":
        raise InvalidInput(
            f"backup {manifest.backup_id} is a physical base backup: pg_restore cannot restore it",
            hint="drill it with a physical restore: erpops restore-test --env ENV --to-time latest",
        )
    if db is None:
        raise PermanentError(f"backup {manifest.backup_id} has no database artifact in its manifest")
    results: list[ArtifactResult] = []
    dump = scratch / "db.dump"
    archive = scratch / "filestore.tar.zst"
    archive.unlink(missing_ok=True)  # a link or file left by an interrupted restore
    fs = manifest.artifacts.get("filestore")
    box: dict[str, Any] = {}
    thread = None
    if fs is not None:  # the filestore archive is checked beside the dump
        report = (lambda n: progress("filestore", n)) if progress else None
        args = (store, fs, archive, cancelled, report, box)
        thread = threading.Thread(target=_fetch_archive, args=args, daemon=True, name="erpops-fetch-filestore")
        thread.start()
    try:
        try:
            results.append(_fetch_dump(store, db, dump, cancelled, progress))
        finally:
            if thread is not None:
                thread.join()
        if "error" in box:
            raise box["error"]
        if fs is not None:
            results.append(box["result"])
        bad = [r for r in results if not r.ok]
        if bad:
            what = "; ".join(
                f"{r.key}: sha256 {r.sha256[:12]}… size {r.size}, manifest says {r.expected_sha256[:12]}… size "
                f"{r.expected_size}"
                for r in bad
            )
            raise ChecksumMismatch(f"backup {manifest.backup_id} is corrupt, not restoring it: {what}", results=results)
        checked: CheckedFile | None = box.get("checked")
        if checked is not None and checked.path != archive:
            archive.symlink_to(checked.path)
    except BaseException:
        if "checked" in box:
            box["checked"].close()
        dump.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)  # the download, or the link (never the store's object)
        raise
    return Fetched(manifest, scratch, dump, archive if fs else None, results, round(time.monotonic() - t0, 3), checked)


def fetch_checked(
    store: ObjectStore,
    art: Artifact,
    dest: Path,
    *,
    cancelled: Cancelled = _never,
    progress: Callable[[int], None] | None = None,
) -> CheckedFile:
    """An artifact as a local file whose SHA-256 and size match the manifest's (a local store's
    object is hashed where it lies; others downloaded to ``dest``); :class:`ChecksumMismatch` else."""
    box: dict[str, Any] = {}
    _fetch_archive(store, art, dest, cancelled, progress, box)
    if "error" in box:
        raise box["error"]
    result: ArtifactResult = box["result"]
    if not result.ok:
        box["checked"].close()
        dest.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{art.key}: sha256 {result.sha256[:12]}… size {result.size}, the manifest says "
            f"{art.sha256[:12]}… size {art.size}; not restoring it"
        )
    checked: CheckedFile = box["checked"]
    return checked


def _fetch_archive(
    store: ObjectStore,
    art: Artifact,
    dest: Path,
    cancelled: Cancelled,
    progress: Callable[[int], None] | None,
    box: dict[str, Any],
) -> None:
    """Hash a local-directory store's object where it lies (held open); download any other."""
    try:
        if isinstance(store, LocalStore):
            checked = CheckedFile.hash(
                store.path_of(art.key), file=store.reader(art.key), cancelled=cancelled, progress=progress
            )
        else:
            info = store.get_file(art.key, dest, progress=progress)
            checked = CheckedFile.open(dest)
            checked.sha256, checked.size = info.sha256 or "", info.size
        box["checked"] = checked
        box["result"] = ArtifactResult("filestore", art.key, art.sha256, checked.sha256, art.size, checked.size)
    except BaseException as exc:  # raised by the caller
        box["error"] = exc


def _fetch_dump(
    store: ObjectStore, art: Artifact, dest: Path, cancelled: Cancelled, progress: Progress | None
) -> ArtifactResult:
    """Read, hash and decompress in one pass. A decompression error on corrupt bytes is reported
    as the checksum mismatch it is (the rest is still read, to hash all of it)."""
    report = (lambda n: progress("db", n)) if progress else None
    error: str | None = None
    with store.reader(art.key) as raw, open(dest, "wb") as out:
        src = HashingReader(raw, report)
        if art.compression == "zstd":
            try:
                decompress(src, out, cancelled=cancelled)
            except ZstdError as exc:
                error = str(exc)
        else:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                out.write(chunk)
        src.drain()
    result = ArtifactResult("db", art.key, art.sha256, src.hexdigest, art.size, src.size)
    if error is not None and result.ok:
        raise PermanentError(f"{art.key} matches its checksum but cannot be decompressed: {error}")
    return result


# --- restore ----------------------------------------------------------------------------------


def restore(
    fetched: Fetched,
    dsn: str,
    database: str,
    filestore: Path | None,
    *,
    jobs: int = 2,
    cancelled: Cancelled = _never,
    role: str | None = None,
    items: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """``pg_restore`` the fetched dump into the existing, empty ``database`` while the filestore is
    unpacked into ``filestore`` (in a thread). ``role``: objects are created as this role (``SET
    ROLE``), so they belong to it — the live database's owner when the copy is to replace it.
    ``items(done, total)``: progress in the dump's table of contents (tables, data, indexes,
    constraints) as pg_restore reports them — what moves while the catalog is recreated.
    Returns seconds: database (pg_restore), filestore (unpacking, side by side) and total.

    Raises :class:`ChecksumMismatch` before anything starts when the filestore archive was written
    into since :func:`fetch` checked it."""
    try:
        return _restore(fetched, dsn, database, filestore, jobs=jobs, cancelled=cancelled, role=role, items=items)
    finally:
        fetched.close()


def _restore(
    fetched: Fetched,
    dsn: str,
    database: str,
    filestore: Path | None,
    *,
    jobs: int,
    cancelled: Cancelled,
    role: str | None,
    items: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    t0 = time.monotonic()
    art = fetched.manifest.artifacts.get("filestore")
    source = None
    if fetched.filestore_archive is not None and filestore is not None and art is not None:
        source = fetched.archive or CheckedFile.open(fetched.filestore_archive)
        fetched.archive = source
        if not source.unchanged():
            raise ChecksumMismatch(f"{art.key} was written into after its checksum was checked; not restoring it")
    with pg.connect(dsn, database) as conn:
        pg_restore = pg.client_for(conn, "pg_restore")
    argv = [
        str(pg_restore.path),
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--no-password",
        f"--jobs={max(1, jobs)}",
        f"--dbname={database}",
        *([f"--role={role}"] if role else []),
        *(["--verbose"] if items else []),
        str(fetched.dump),
    ]
    on_stderr = _ItemCounter(_toc_entries(pg_restore.path, fetched.dump, cancelled), items) if items else None
    seconds: dict[str, float] = {}
    stop = threading.Event()  # pg_restore failed: stop unpacking the filestore

    def halted() -> bool:
        return stop.is_set() or cancelled()

    box: dict[str, Any] = {}
    thread = None
    with Child(argv, env=pg.libpq_env(dsn, database), name="pg_restore", watch=cancelled, on_stderr=on_stderr) as child:
        if source is not None and art is not None and filestore is not None:
            args = (source, art, filestore, halted, box)
            thread = threading.Thread(target=_extract, args=args, daemon=True, name="erpops-filestore")
            thread.start()
        try:
            child.finish(cancelled=cancelled, what=f"restoring into {database}")
            seconds["database"] = round(time.monotonic() - t0, 3)
            if on_stderr is not None:
                on_stderr.done()
        except StreamCancelled:
            stop.set()
            raise
        except PermanentError as exc:
            stop.set()
            said = " ".join(child.stderr_tail).lower()
            moment = any(word in said for word in _NOT_THE_BACKUP) or _NEWER_ARCHIVE.search(said) is not None
            at_fault = not moment and _reachable(dsn, database)
            raise RestoreFailed(str(exc), backup_at_fault=at_fault) from None
        except BaseException:
            stop.set()
            raise
        finally:
            if thread is not None:
                thread.join()
    if "error" in box:
        raise box["error"]
    if "seconds" in box:
        seconds["filestore"] = box["seconds"]
    seconds["total"] = round(time.monotonic() - t0, 3)
    return seconds


#: pg_restore --verbose lines that mark one table-of-contents entry being restored: each entry says
#: one of these once, in the serial and in the parallel phase ("launching item" / "finished item"
#: lines of the parallel phase repeat entries already counted)
_ITEM_DONE = re.compile(r"^pg_restore: (creating |executing |processing data for )")
_VERBOSE = re.compile(
    r"^pg_restore: (connecting|creating|executing|processing|finished|launching|entering|implied|"
    r"dropping|setting owner)"
)


def _toc_entries(pg_restore: Path, dump: Path, cancelled: Cancelled) -> int:
    """How many entries the dump's table of contents has (``pg_restore --list``; milliseconds).
    0 when it cannot say: the restore then runs without a total, and fails itself if it must."""
    with Child([str(pg_restore), "--list", str(dump)], stdout=True, name="pg_restore", watch=cancelled) as child:
        listing = child.stdout.read()
        try:
            child.finish(cancelled=cancelled, what="listing the dump")
        except PermanentError:
            return 0
    return sum(1 for line in listing.splitlines() if line.strip() and not line.startswith(b";"))


class _ItemCounter:
    """Counts the entries pg_restore --verbose says it restored; the chatter is not kept for error
    messages (its errors are)."""

    def __init__(self, total: int, report: Callable[[int, int], None]) -> None:
        self.total, self.report, self.count = total, report, 0

    def __call__(self, line: str) -> bool:
        if _ITEM_DONE.match(line):
            self.count += 1
            if self.total and self.count < self.total:  # the last one is said by done()
                self.report(self.count, self.total)
        return bool(_VERBOSE.match(line))

    def done(self) -> None:
        if self.total:
            self.report(self.total, self.total)


def _reachable(dsn: str, database: str) -> bool:
    """Does the target database still answer (after a failed pg_restore)?"""
    try:
        with pg.connect(dsn, database) as conn:
            conn.execute("SELECT 1")
    except Exception:  # any failure means "not reachable" here
        return False
    return True


def _extract(source: CheckedFile, art: Artifact, dest: Path, cancelled: Cancelled, box: dict[str, Any]) -> None:
    t0 = time.monotonic()
    try:
        extract_filestore(source, dest, cancelled=cancelled, expect=art)
        box["seconds"] = round(time.monotonic() - t0, 3)
    except BaseException as exc:  # raised by the caller
        box["error"] = exc


def extract_filestore(
    archive: Path | CheckedFile, dest: Path, *, cancelled: Cancelled = _never, expect: Artifact | None = None
) -> None:
    """Unpack a ``filestore.tar.zst`` into ``dest`` (created; must be empty or absent).

    ``expect``: the manifest's artifact; the archive's bytes are hashed while they are unpacked
    and, should they differ from it after all, what was unpacked is deleted and
    :class:`ChecksumMismatch` raised. A :class:`CheckedFile` is refused before anything is
    unpacked when it was written into since its check."""
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"filestore target {dest} is not empty; restore into a new directory")
    checked = archive if isinstance(archive, CheckedFile) else CheckedFile.open(archive)
    try:
        if not checked.unchanged():
            raise ChecksumMismatch(f"{checked.path} was written into after its checksum was checked; not unpacking it")
        src = HashingReader(checked.rewind())
        dest.mkdir(parents=True, exist_ok=True)
        _unpack(src, dest, cancelled)
        src.drain()
    finally:
        if checked is not archive:
            checked.close()
    if expect is not None and (src.hexdigest, src.size) != (expect.sha256, expect.size):
        for child in dest.iterdir():  # all of it is ours: dest was empty
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise ChecksumMismatch(
            f"{expect.key} changed while it was unpacked (sha256 {src.hexdigest[:12]}…, manifest says "
            f"{expect.sha256[:12]}…); the unpacked files were deleted"
        )


def _unpack(src: HashingReader, dest: Path, cancelled: Cancelled) -> None:
    tar = shutil.which("tar")
    if tar:
        argv = [tar, "--extract", "--file=-", f"--directory={dest}", "--no-same-owner", "--no-same-permissions"]
        with Child(argv, stdin=True, name="tar", watch=cancelled) as child:
            try:
                decompress(src, child.stdin, cancelled=cancelled)
            except BrokenPipeError:
                pass  # tar stopped reading: its exit status says why
            finally:
                with contextlib.suppress(OSError):
                    child.stdin.close()
            child.finish(cancelled=cancelled, what=f"unpacking the filestore into {dest}")
    else:
        import zstandard

        with (
            # zstandard only calls .read() on its source; a HashingReader is that duck-typed stream
            zstandard.ZstdDecompressor().stream_reader(
                cast(IO[bytes], src), read_across_frames=True, closefd=False
            ) as zr,
            tarfile.open(fileobj=zr, mode="r|") as tf,
        ):
            tf.extractall(dest, filter="data")
