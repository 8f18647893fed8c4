"""What the Odoo actions share: where the database, filestore and object store are, progress."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from erpops.actions.base import ActionContext, ActionParams
from erpops.errors import InvalidInput


class DbParams(ActionParams):
    dsn: str | None = Field(
        None, description="server DSN (a secret reference such as env:VAR is resolved); default: the environment's"
    )


def dsn_of(ctx: ActionContext, given: str | None) -> str:
    """The server DSN: ``given`` or the environment's ``database.dsn``, secret references resolved."""
    raw = given or (ctx.env.database.dsn if getattr(ctx.env, "database", None) else None)
    if not raw:
        raise InvalidInput(f"environment {ctx.env.name!r} has no database.dsn; give dsn:")
    value = ctx.resolve_secret(raw)
    if value != raw:
        ctx.register_secret(value)
    return value


def live_database(ctx: ActionContext) -> str | None:
    db = getattr(ctx.env, "database", None)
    return db.name if db is not None else None


def database_of(ctx: ActionContext, given: str | None) -> str:
    name = given or live_database(ctx)
    if not name:
        raise InvalidInput(f"environment {ctx.env.name!r} has no database.name; give database:")
    return name


def refuse_live(ctx: ActionContext, database: str, what: str, dsn: str | None = None) -> None:
    """Safety rule: restores, neutralization and drops never touch the environment's live database.
    A database of the live name is allowed only on a scratch server erpops made (a physical drill's
    copy: ``dsn`` answers from a data directory inside an erpops scratch directory)."""
    if database == live_database(ctx) and not (dsn and _scratch_server(dsn)):
        raise InvalidInput(
            f"{what} refuses the live database {database!r} of environment {ctx.env.name}; use a new name "
            f"such as {database}_drill"
        )


def _scratch_server(dsn: str) -> bool:
    from erpops.backends.odoo.restore import SCRATCH_MARKER
    from erpops.backends.postgres import client as pg

    try:
        with pg.connect(dsn) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    except Exception:  # not reachable or not allowed to say: not shown to be a scratch server
        return False
    return row is not None and (Path(str(row[0])).parent / SCRATCH_MARKER).is_file()


def env_name(ctx: ActionContext, given: str | None = None) -> str:
    name = given or getattr(ctx.env, "name", None) or ctx.run.environment
    if not name:
        raise InvalidInput("no environment name to find backups under; give environment:")
    return str(name)


def storage_of(ctx: ActionContext) -> Any:
    storage = getattr(ctx.env, "storage", None)
    if storage is None:
        raise InvalidInput(f"environment {ctx.env.name!r} has no storage configured (storage.url in erpops.yaml)")
    return storage


def open_store(ctx: ActionContext) -> Any:
    from erpops.backends.storage import open_store as _open

    return _open(storage_of(ctx), ctx.resolve_secret)


def filestore_of(ctx: ActionContext, given: str | None) -> Path | None:
    raw = given if given is not None else getattr(ctx.env.odoo, "filestore", None)
    if not raw:
        return None
    return Path(raw).expanduser()


_UNSAFE = re.compile(r"[^a-z0-9_]")


def drill_name(database: str, run_id: str, word: str = "drill") -> str:
    """``<db>_<word>_<run id>`` lower-cased, only ``[a-z0-9_]``, at most 63 bytes."""
    name = _UNSAFE.sub("_", f"{database}_{word}_{run_id}".lower())
    return name[:63]


def progress(
    ctx: ActionContext, label: str, total: int | None = None, totals: dict[str, int] | None = None
) -> Callable[[str, int], None]:
    """A (part, bytes) callback, safe from several threads: progress events at most 4 times a
    second per part; ``totals``: each part's size when known (the manifest knows it on restore)."""
    last: dict[str, float] = {}
    lock = threading.Lock()

    def report(part: str, done: int) -> None:
        now = time.monotonic()
        if now - last.get(part, 0.0) < 0.25 or not lock.acquire(blocking=False):
            return
        try:
            last[part] = now
            ctx.progress(f"{label} {part}", done=done, total=(totals or {}).get(part, total))
        finally:
            lock.release()

    return report


def item_progress(ctx: ActionContext, description: str) -> Callable[[int, int], None]:
    """A (done, total) callback counting items (pg_restore's table of contents): progress events
    at most 4 times a second, and the last one always."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.25 and done < total:
            return
        last[0] = now
        ctx.progress(description, done=done, total=total, unit="items")

    return report


def cancelled(ctx: ActionContext) -> Callable[[], bool]:
    return lambda: bool(ctx.cancelled)
