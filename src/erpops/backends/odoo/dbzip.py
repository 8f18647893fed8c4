"""Odoo's database-manager backup zip: export and import.

The format Odoo's ``/web/database/backup`` writes and ``/web/database/restore`` reads::

    dump.sql        plain SQL from ``pg_dump --no-owner``
    manifest.json   {"odoo_dump": "1", "db_name", "version", "version_info", "major_version",
                     "pg_version", "modules": {name: installed version}}
    filestore/...   the contents of the database's filestore directory

Both directions stream: ``pg_dump`` writes into the zip entry as it runs, ``psql`` reads the entry
as it is decompressed. PostgreSQL 17.6+/18 ``pg_dump`` puts a ``\\restrict <key>`` line at the top
of a plain dump (and ``\\unrestrict <key>`` at the end), which older ``psql`` — what an Odoo
server of an older PostgreSQL runs — rejects; the export removes those two lines unless asked to
keep them (``keep_restrict``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from erpops.backends.odoo import db as odoo_db
from erpops.backends.postgres import client as pg
from erpops.backends.streams import CHUNK, Child
from erpops.errors import InvalidInput, PermanentError

_RESTRICT = re.compile(rb"^\\restrict ([A-Za-z0-9]+)\r?\n", re.MULTILINE)
_HEAD = 64 * 1024


def _never() -> bool:
    return False


def odoo_manifest(
    conn: Any, database: str, version: str | None = None, server: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest Odoo's ``dump_db_manifest`` writes, read from the database. ``server`` is the
    running server's ``version_info`` (:func:`erpops.backends.odoo.web.version_info`): Odoo writes
    its own full version (``18.0+e``, ``version_info`` ``[18, 0, 0, 'final', 0, 'e']``); without
    it, the configured ``version`` or the database's ``base`` module give the series."""
    modules = odoo_db.installed_modules(conn)
    base = version or odoo_db.odoo_version(modules) or ""
    parts = base.split(".")
    major = ".".join(parts[:2]) if len(parts) >= 2 else base
    nums = [int(p) for p in parts[:2] if p.isdigit()] + [0, 0]
    full, info = major, [nums[0], nums[1], 0, "final", 0, ""]
    if server:
        full = str(server["server_version"])
        major = str(server.get("server_serie") or major)
        info = list(server.get("server_version_info") or info)
    # Odoo's own formula: "%d.%d" % divmod(server_version / 100, 100) -> "18.0" for 18.6
    major_pg, minor_pg = divmod(pg.server_version_num(conn) / 100, 100)
    return {
        "odoo_dump": "1",
        "db_name": database,
        "version": full,
        "version_info": info,
        "major_version": major,
        "pg_version": f"{int(major_pg)}.{int(minor_pg)}",
        "modules": modules,
    }


class _RestrictFilter:
    """Copies a plain dump, dropping its ``\\restrict``/``\\unrestrict`` pair (see module doc)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.head = bytearray()
        self.tail = bytearray()
        self.key: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if not self.started:
            self.head += data
            if len(self.head) < _HEAD:
                return
            self._start()
        else:
            self.tail += data
        if self.key is not None:
            keep = len(self.key) + 32
            if len(self.tail) > keep:
                self.out.write(self.tail[:-keep])
                del self.tail[:-keep]
        elif self.tail:
            self.out.write(self.tail)
            self.tail.clear()

    def _start(self) -> None:
        self.started = True
        m = _RESTRICT.search(self.head)
        if m is not None:
            self.key = m.group(1)
            del self.head[m.start() : m.end()]
        self.tail, self.head = self.head, bytearray()

    def close(self) -> None:
        if not self.started:
            self._start()
        if self.key is not None:
            line = re.compile(rb"^\\unrestrict " + re.escape(self.key) + rb"\r?\n?", re.MULTILINE)
            self.tail = bytearray(line.sub(b"", bytes(self.tail), count=1))
        self.out.write(self.tail)
        self.tail.clear()


def export_zip(
    dsn: str,
    database: str,
    filestore: Path | None,
    dest: Path,
    *,
    level: int = 6,
    keep_restrict: bool = False,
    version: str | None = None,
    server: dict[str, Any] | None = None,
    cancelled: Callable[[], bool] = _never,
) -> dict[str, Any]:
    """Write ``dest`` (via a temporary file renamed into place); returns the Odoo manifest
    (``server``: the running server's version_info, see :func:`odoo_manifest`)."""
    if filestore is not None and not filestore.is_dir():
        raise InvalidInput(f"filestore {filestore} is not a directory")
    with pg.connect(dsn, database) as conn:
        manifest = odoo_manifest(conn, database, version, server)
        pg_dump = pg.client_for(conn, "pg_dump")
    dest = dest.expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    argv = [str(pg_dump.path), "--no-owner", "--format=plain", "--no-password"]
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=level) as zf:
            with (
                Child(argv, env=pg.libpq_env(dsn, database), stdout=True, name="pg_dump", watch=cancelled) as child,
                zf.open("dump.sql", "w", force_zip64=True) as entry,
            ):
                sink: Any = entry if keep_restrict else _RestrictFilter(entry)
                for chunk in iter(lambda: child.stdout.read(CHUNK), b""):
                    sink.write(chunk)
                    if cancelled():
                        raise PermanentError("export cancelled")
                if not keep_restrict:
                    sink.close()
                child.finish(cancelled=cancelled, what=f"dumping {database}")
            zf.writestr("manifest.json", json.dumps(manifest, indent=4))
            if filestore is not None:
                for root, dirs, files in os.walk(filestore):
                    dirs.sort()
                    for name in sorted(files):
                        path = Path(root, name)
                        zf.write(path, "filestore/" + path.relative_to(filestore).as_posix())
                    if cancelled():
                        raise PermanentError("export cancelled")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def read_manifest(src: Path) -> dict[str, Any]:
    with zipfile.ZipFile(src) as zf:
        return _manifest_of(zf, src)


def _manifest_of(zf: zipfile.ZipFile, src: Path) -> dict[str, Any]:
    names = set(zf.namelist())
    if "dump.sql" not in names:
        raise InvalidInput(f"{src} is not an Odoo backup zip: no dump.sql")
    if "manifest.json" not in names:
        return {}
    try:
        data = json.loads(zf.read("manifest.json"))
    except ValueError as exc:
        raise InvalidInput(f"{src}: manifest.json is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def import_zip(
    src: Path,
    dsn: str,
    database: str,
    filestore: Path | None,
    *,
    create: Callable[[str], None],
    cancelled: Callable[[], bool] = _never,
) -> dict[str, Any]:
    """Load ``dump.sql`` with ``psql`` into the new database ``database`` (made by ``create``) and
    unpack ``filestore/`` into ``filestore``. Returns the zip's manifest."""
    try:
        zf = zipfile.ZipFile(src)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"cannot read {src}: {exc}") from None
    with zf:
        manifest = _manifest_of(zf, src)
        if filestore is not None and filestore.exists() and any(filestore.iterdir()):
            raise InvalidInput(f"filestore target {filestore} is not empty; import into a new directory")
        for info in zf.infolist():  # refuse a hostile archive before creating anything
            _filestore_target(Path("/filestore-root"), info.filename)
        if zf.getinfo("dump.sql").file_size == 0:
            raise PermanentError(f"{src}: dump.sql is empty: nothing to import (a truncated or failed export?)")
        with pg.connect(dsn) as conn:
            psql = pg.client_for(conn, "psql")
        create(database)
        argv = [str(psql.path), "--quiet", "--no-psqlrc", "--no-password", "-v", "ON_ERROR_STOP=1", "--file=-"]
        with Child(argv, env=pg.libpq_env(dsn, database), stdin=True, name="psql", watch=cancelled) as child:
            try:
                with zf.open("dump.sql") as entry:
                    for chunk in iter(lambda: entry.read(CHUNK), b""):
                        child.stdin.write(chunk)
                        if cancelled():
                            raise PermanentError("import cancelled")
            except BrokenPipeError:
                pass  # psql stopped (ON_ERROR_STOP): its exit status and message say why
            child.finish(cancelled=cancelled, what=f"loading dump.sql into {database}")
        with pg.connect(dsn, database) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            ).fetchone()
        if not tables or not tables[0]:
            raise PermanentError(f"{src}: dump.sql created no table in {database}: it holds no database to import")
        files = _extract_filestore(zf, filestore) if filestore is not None else 0
    manifest.setdefault("db_name", None)
    manifest["files"] = files
    return manifest


def _filestore_target(root: Path, member: str) -> Path | None:
    """Where a ``filestore/...`` zip member goes under ``root``; None for other members.
    Raises InvalidInput for a member that would land outside ``root``."""
    name = PurePosixPath(member)
    if len(name.parts) < 2 or name.parts[0] != "filestore" or member.endswith("/"):
        return None
    target = Path(os.path.normpath(root / Path(*name.parts[1:])))
    if root not in target.parents or name.is_absolute() or "\\" in member:
        raise InvalidInput(f"zip entry {member!r} points outside the filestore; refusing to import it")
    return target


def _extract_filestore(zf: zipfile.ZipFile, dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    count = 0
    for info in zf.infolist():
        target = _filestore_target(root, info.filename)
        if target is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        count += 1
    return count
