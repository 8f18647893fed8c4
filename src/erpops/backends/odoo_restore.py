"""Restoring an erpops backup: fetch and check every artifact first, then restore.

1. **Fetch** — each artifact is read from the object store once, its SHA-256 and size computed
   while reading and compared with the manifest. The database dump is decompressed on the way
   into a scratch file (``pg_restore -j`` needs a seekable file; from a pipe it can only restore
   with one job), the filestore archive is kept compressed. A mismatch stops here: nothing has
   been restored.
2. **Restore** — ``pg_restore --no-owner --no-acl --exit-on-error -j N`` into the (new, empty)
   target database while the filestore is unpacked beside it, into
   ``<scratch>/filestore/<database>`` (Odoo's ``<data_dir>/filestore/<db>`` layout).

The scratch directory carries a marker file; :func:`remove_scratch` deletes only directories
that have it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from erpops.backends import pg
from erpops.backends.storage.base import ObjectStore
from erpops.backends.streams import CHUNK, Child, HashingReader, ZstdError, decompress
from erpops.errors import InvalidInput, PermanentError
from erpops.manifest import MANIFEST, Artifact, Manifest, object_key

SCRATCH_MARKER = ".erpops-scratch"
#: The comment ``postgres.create_database`` marks erpops's databases with (same prefix, same form).
MARK = "erpops:created"
Cancelled = Callable[[], bool]
Progress = Callable[[str, int], None]


class ChecksumMismatch(PermanentError):
    """An artifact's bytes do not match the manifest: the backup is corrupt; nothing was restored."""


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
    manifest: Manifest
    scratch: Path
    dump: Path
    filestore_archive: Path | None
    artifacts: list[ArtifactResult] = field(default_factory=list)
    seconds: float = 0.0


def load_manifest(store: ObjectStore, environment: str, backup_id: str) -> Manifest:
    key = object_key(environment, backup_id, MANIFEST)
    data = store.get_bytes(key)
    return Manifest.from_json(data, where=store.location(key))


# --- scratch directories ----------------------------------------------------------------------


def scratch_dir(root: str | Path | None, database: str) -> Path:
    """Where a restore of ``database`` keeps its files: ``<root>/erpops-scratch-<database>``."""
    base = Path(root).expanduser() if root else Path(os.environ.get("ERPOPS_SCRATCH_DIR") or "/var/tmp")
    return base / f"erpops-scratch-{database}"


def make_scratch(path: Path) -> Path:
    if path.exists() and not (path / SCRATCH_MARKER).exists():
        raise InvalidInput(f"{path} exists and was not made by erpops; choose another scratch directory")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    (path / SCRATCH_MARKER).write_text("created by erpops for a restore; safe to delete\n")
    return path


def remove_scratch(path: Path) -> bool:
    """Delete a scratch directory erpops made (it has the marker); anything else is refused."""
    if not path.exists():
        return False
    if not (path / SCRATCH_MARKER).exists():
        raise PermanentError(f"not deleting {path}: it has no {SCRATCH_MARKER} marker, so erpops did not create it")
    shutil.rmtree(path)
    return True


# --- target databases -------------------------------------------------------------------------


def _admin(dsn: str, target: str) -> Any:
    """A connection for CREATE/DROP DATABASE: the DSN's own database, unless that is the target."""
    own = pg.parse_dsn(dsn).get("dbname")
    return pg.connect(dsn, "postgres" if own in (None, target) else None)


def check_new_database(dsn: str, name: str) -> None:
    """Refuse before any work when ``name`` exists already: a restore goes into a new database."""
    pg.quote_ident(name)
    with _admin(dsn, name) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
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
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mark = f"{MARK} run={run_id} at={at}" + (f" {note}" if note else "")
    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
    if owner:
        create = sql.SQL("{} OWNER {}").format(create, sql.Identifier(owner))
    with _admin(dsn, name) as conn:
        conn.execute(create)
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(mark)))
    return mark


def drop_database(dsn: str, name: str) -> bool:
    """Drop ``name`` (its sessions ended) if it carries erpops's mark; refuse any other database.
    Returns False when it does not exist."""
    with _admin(dsn, name) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if row is None:
            return False
        if not (row[0] or "").startswith(MARK):
            raise PermanentError(
                f"refusing to drop database {name!r}: erpops did not create it (no '{MARK}' comment on it)"
            )
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
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
    """Download every artifact of ``manifest`` into ``scratch``, checking SHA-256 and size.

    Raises :class:`ChecksumMismatch` (after deleting what was fetched) when any artifact differs.
    """
    t0 = time.monotonic()
    db = manifest.artifacts.get("db")
    if db is None:
        raise PermanentError(f"backup {manifest.backup_id} has no database artifact in its manifest")
    results: list[ArtifactResult] = []
    dump = scratch / "db.dump"
    archive = None
    fs = manifest.artifacts.get("filestore")
    box: dict[str, Any] = {}
    thread = None
    if fs is not None:  # the filestore archive downloads beside the dump
        archive = scratch / "filestore.tar.zst"
        report = (lambda n: progress("filestore", n)) if progress else None
        thread = threading.Thread(target=_get, args=(store, fs.key, archive, report, box), daemon=True)
        thread.start()
    try:
        results.append(_fetch_dump(store, db, dump, cancelled, progress))
    finally:
        if thread is not None:
            thread.join()
    if fs is not None:
        if "error" in box:
            raise box["error"]
        info = box["info"]
        results.append(ArtifactResult("filestore", fs.key, fs.sha256, info.sha256 or "", fs.size, info.size))
    bad = [r for r in results if not r.ok]
    if bad:
        for path in (dump, archive):
            if path is not None:
                path.unlink(missing_ok=True)
        what = "; ".join(
            f"{r.key}: sha256 {r.sha256[:12]}… size {r.size}, manifest says {r.expected_sha256[:12]}… size "
            f"{r.expected_size}"
            for r in bad
        )
        raise ChecksumMismatch(f"backup {manifest.backup_id} is corrupt, not restoring it: {what}")
    return Fetched(manifest, scratch, dump, archive, results, round(time.monotonic() - t0, 3))


def _get(store: ObjectStore, key: str, dest: Path, progress: Callable[[int], None] | None, box: dict[str, Any]) -> None:
    try:
        box["info"] = store.get_file(key, dest, progress=progress)
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
) -> dict[str, float]:
    """``pg_restore`` the fetched dump into the existing, empty ``database`` while the filestore is
    unpacked into ``filestore`` (in a thread). ``role``: objects are created as this role (``SET
    ROLE``), so they belong to it — the live database's owner when the copy is to replace it.
    Returns seconds: database (pg_restore), filestore (unpacking, side by side) and total."""
    t0 = time.monotonic()
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
        str(fetched.dump),
    ]
    seconds: dict[str, float] = {}
    stop = threading.Event()  # pg_restore failed: stop unpacking the filestore

    def halted() -> bool:
        return stop.is_set() or cancelled()

    box: dict[str, Any] = {}
    thread = None
    with Child(argv, env=pg.libpq_env(dsn, database), name="pg_restore", watch=cancelled) as child:
        if fetched.filestore_archive is not None and filestore is not None:
            args = (fetched.filestore_archive, filestore, halted, box)
            thread = threading.Thread(target=_extract, args=args, daemon=True, name="erpops-filestore")
            thread.start()
        try:
            child.finish(cancelled=cancelled, what=f"restoring into {database}")
            seconds["database"] = round(time.monotonic() - t0, 3)
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


def _extract(archive: Path, dest: Path, cancelled: Cancelled, box: dict[str, Any]) -> None:
    t0 = time.monotonic()
    try:
        extract_filestore(archive, dest, cancelled=cancelled)
        box["seconds"] = round(time.monotonic() - t0, 3)
    except BaseException as exc:  # raised by the caller
        box["error"] = exc


def extract_filestore(archive: Path, dest: Path, *, cancelled: Cancelled = _never) -> None:
    """Unpack a ``filestore.tar.zst`` into ``dest`` (created; must be empty or absent)."""
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"filestore target {dest} is not empty; restore into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    tar = shutil.which("tar")
    with open(archive, "rb") as src:
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
                zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True) as zr,
                tarfile.open(fileobj=zr, mode="r|") as tf,
            ):
                tf.extractall(dest, filter="data")
