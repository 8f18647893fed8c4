"""Put a restored copy in the live database's place, and back.

A rollback that restores the pre-deploy backup restores it into a new database first (an ordinary
``odoo.restore``, checked by ``odoo.verify``), while the application still runs. With the
application stopped, :func:`swap` then exchanges names:

1. refuse unless the replacement carries erpops's ``erpops:created`` mark (erpops restored it),
   the live database exists and the name the live one is to be kept under is free; for the
   filestore, the replacement directory must be on the live filestore's file system (a rename,
   not a copy) and the live filestore must not be a mount point;
2. ``ALLOW_CONNECTIONS false`` on the live database, then every remaining session on both
   databases ended (``pg_terminate_backend``; the sessions are named in the result);
3. in **one transaction**: live -> ``keep_as``, replacement -> live, comments saying what happened
   (the restored database loses erpops's mark, so erpops never drops it);
4. the filestore directories renamed the same way (the database renames are reverted when this
   fails).

The replaced database and filestore are kept, never dropped by erpops. :func:`swap_back` is the
exact reverse (the undo): the copy gets its name and mark back, the replaced database its name
and comment.

Both survive a crash and a resumed run: a swap that finds itself done (the live database's comment
names this run, the kept one exists) only completes what may be missing (the filestore renames,
``ALLOW_CONNECTIONS``); both always leave every database involved accepting connections.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from erpops.backends.postgres import client as pg
from erpops.errors import InvalidInput, PermanentError

MARK = pg.CREATED_MARK

#: Attempts at the rename when a new session slipped in between terminating and renaming.
RENAME_ATTEMPTS = 20


@dataclass
class SwapResult:
    live: str
    replacement: str
    kept_as: str
    sessions_ended: list[str] = field(default_factory=list)
    filestore: str | None = None
    kept_filestore: str | None = None
    live_comment: str | None = None
    replacement_comment: str | None = None
    seconds: float = 0.0


def _admin(dsn: str, names: tuple[str, ...]) -> psycopg.Connection[Any]:
    """A connection to none of ``names`` (a database in use cannot be renamed): the DSN's own
    database, or ``postgres``."""
    own = pg.parse_dsn(dsn).get("dbname")
    return pg.connect(dsn, "postgres" if own is None or own in names else None)


def _comments(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = ANY(%s)", (names,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _end_sessions(conn: psycopg.Connection[Any], names: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT datname, pid, application_name, usename, pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
        (names,),
    ).fetchall()
    return [f"{r[0]}: pid {r[1]} {r[2] or '(no application name)'} as {r[3]}" for r in rows]


def _allow(conn: psycopg.Connection[Any], name: str, allow: bool) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")
        )
    )


def _rename_pair(
    conn: psycopg.Connection[Any], moves: list[tuple[str, str]], comments: dict[str, str | None], ended: list[str]
) -> None:
    """Rename ``moves`` (old, new) and set ``comments`` in one transaction, ending sessions that
    slipped in, a few times over."""
    names = [old for old, _ in moves]
    for attempt in range(RENAME_ATTEMPTS):
        ended += _end_sessions(conn, names)
        try:
            with conn.transaction():
                for old, new in moves:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
                    )
                for name, text in comments.items():
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(name), sql.Literal(text) if text else sql.SQL("NULL")
                        )
                    )
            return
        except psycopg.errors.ObjectInUse:
            if attempt == RENAME_ATTEMPTS - 1:
                raise PermanentError(
                    f"could not rename {', '.join(names)}: sessions kept reconnecting (is the application "
                    "really stopped? see pg_stat_activity)"
                ) from None
            time.sleep(0.1)


def _check_filestores(live: Path, replacement: Path, kept: Path) -> None:
    if not replacement.is_dir():
        raise InvalidInput(f"the restored filestore {replacement} does not exist")
    if kept.exists():
        raise InvalidInput(f"{kept} exists already; the replaced filestore cannot be kept there")
    if live.exists() and os.path.ismount(live):
        raise PermanentError(
            f"the live filestore {live} is a mount point: it cannot be renamed; swap it by hand "
            f"(copy {replacement} into it)"
        )
    if os.stat(replacement).st_dev != os.stat(live.parent).st_dev:
        raise PermanentError(
            f"the restored filestore {replacement} is not on the file system of {live.parent}; restore it "
            "beside the live filestore (odoo.restore beside_filestore: true)"
        )


def swap(
    dsn: str,
    live: str,
    replacement: str,
    keep_as: str,
    *,
    note: str,
    run_id: str,
    filestore: Path | None = None,
    replacement_filestore: Path | None = None,
) -> SwapResult:
    """Put ``replacement`` (an erpops-restored copy) in the place of ``live``; keep the live one as
    ``keep_as``. ``note`` goes into both databases' comments (which run, which backup); ``run_id``
    (the run that restored the copy) into the mark the copy gets back if the swap is undone."""
    t0 = time.monotonic()
    for name in (live, replacement, keep_as):
        pg.quote_ident(name)
    if len({live, replacement, keep_as}) != 3:
        raise InvalidInput(f"swap needs three different names (live {live}, copy {replacement}, keep as {keep_as})")
    kept_filestore = filestore.parent / keep_as if filestore is not None else None
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    restored_note = f"erpops: restored by {note} at "
    with _admin(dsn, (live, replacement, keep_as)) as conn:
        comments = _comments(conn, [live, replacement, keep_as])
        if keep_as in comments and replacement not in comments and (comments.get(live) or "").startswith(restored_note):
            # this swap happened already (a resumed run): finish what may be missing, change nothing else
            _allow_all(conn, [live, keep_as])
            put_back = pg.created_mark(run_id, f"{note} (put back by undo)")
            result = SwapResult(live, replacement, keep_as, replacement_comment=put_back)
            if filestore is not None and replacement_filestore is not None and replacement_filestore.exists():
                assert kept_filestore is not None
                if not kept_filestore.exists():
                    _swap_dirs(filestore, replacement_filestore, kept_filestore)
            if kept_filestore is not None and kept_filestore.exists():
                result.filestore, result.kept_filestore = str(filestore), str(kept_filestore)
            result.seconds = round(time.monotonic() - t0, 3)
            return result
        if keep_as in comments:
            raise InvalidInput(f"database {keep_as!r} exists already; the live database cannot be kept under that name")
        if live not in comments:
            raise InvalidInput(f"the live database {live!r} does not exist on {pg.describe(dsn)}")
        if replacement not in comments:
            raise InvalidInput(f"the restored database {replacement!r} does not exist on {pg.describe(dsn)}")
        if pg.marked_run(comments[replacement]) is None:
            raise PermanentError(
                f"refusing to put {replacement!r} in the place of {live!r}: "
                f"erpops did not restore it (no '{MARK}' mark)"
            )
        if filestore is not None and replacement_filestore is not None:
            assert kept_filestore is not None
            _check_filestores(filestore, replacement_filestore, kept_filestore)
        result = SwapResult(
            live, replacement, keep_as, live_comment=comments[live], replacement_comment=comments[replacement]
        )
        _allow(conn, live, False)
        try:
            _rename_pair(
                conn,
                [(live, keep_as), (replacement, live)],
                {
                    live: f"{restored_note}{at}; the database it replaced is kept as {keep_as}",
                    keep_as: f"erpops: replaced by {note} at {at}; kept for inspection (erpops never drops it)",
                },
                result.sessions_ended,
            )
        finally:
            _allow_all(conn, [live, keep_as])
        if filestore is not None and replacement_filestore is not None:
            assert kept_filestore is not None
            try:
                _swap_dirs(filestore, replacement_filestore, kept_filestore)
            except BaseException:
                _rename_pair(
                    conn,
                    [(live, replacement), (keep_as, live)],
                    {replacement: comments[replacement], live: comments[live]},
                    result.sessions_ended,
                )
                raise
            result.filestore, result.kept_filestore = str(filestore), str(kept_filestore)
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def swap_back(
    dsn: str,
    live: str,
    replacement: str,
    keep_as: str,
    *,
    live_comment: str | None,
    replacement_comment: str | None,
    filestore: Path | None = None,
    replacement_filestore: Path | None = None,
) -> SwapResult:
    """Undo :func:`swap`: the copy (now ``live``) back to ``replacement`` with erpops's mark, the
    kept database back to ``live`` with its comment, the filestores likewise. Nothing to do (an
    empty result) when the swap did not happen."""
    t0 = time.monotonic()
    result = SwapResult(live, replacement, keep_as)
    with _admin(dsn, (live, replacement, keep_as)) as conn:
        names = _comments(conn, [live, replacement, keep_as])
        if keep_as not in names:  # never swapped (or swapped back already); a crash may have left
            _allow_all(conn, [live, replacement])  # the live database refusing connections
            return result
        if replacement in names:
            raise PermanentError(f"cannot swap back: {replacement!r} and {keep_as!r} both exist; sort it out by hand")
        _allow(conn, live, False)
        try:
            _rename_pair(
                conn,
                [(live, replacement), (keep_as, live)],
                {replacement: replacement_comment, live: live_comment},
                result.sessions_ended,
            )
        finally:
            _allow_all(conn, [live, replacement, keep_as])
    if filestore is not None and replacement_filestore is not None:
        kept = filestore.parent / keep_as
        if kept.exists() and not replacement_filestore.exists():
            filestore.rename(replacement_filestore)
            kept.rename(filestore)
            result.filestore, result.kept_filestore = str(filestore), str(kept)
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _allow_all(conn: psycopg.Connection[Any], names: list[str]) -> None:
    """Connections allowed again on each of ``names`` that exists (whatever happened before)."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname = ANY(%s) AND NOT datallowconn", (names,)
    ).fetchall()
    for (name,) in rows:
        _allow(conn, name, True)


def _swap_dirs(live: Path, replacement: Path, kept: Path) -> None:
    """live -> kept, replacement -> live; the first rename undone when the second fails."""
    moved = False
    if live.exists():
        live.rename(kept)
        moved = True
    try:
        replacement.rename(live)
    except BaseException:
        if moved:
            kept.rename(live)
        raise
