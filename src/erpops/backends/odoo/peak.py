"""SQL for scale-for-peak: connection headroom and Odoo scheduled jobs (``ir_cron``).

A job is named by its ``cron_name`` (text, or a jsonb of translations in some Odoo versions) or by
its XML id (``module.name`` in ``ir_model_data``, e.g. ``stock.ir_cron_scheduler_action``).
Deactivating waits at most ``lock_timeout`` for a job that is running right now (Odoo holds a row
lock on a job while it runs) and then reports a temporary error, so the step can retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from erpops.backends.postgres import client as pg
from erpops.errors import PermanentError, TemporaryError


@dataclass(frozen=True)
class Connections:
    max_connections: int
    superuser_reserved: int
    reserved: int  # reserved_connections (PostgreSQL 16+), else 0
    in_use: int


@dataclass(frozen=True)
class Cron:
    id: int
    name: str
    xmlid: str | None
    active: bool

    def matches(self, wanted: str) -> bool:
        return wanted in (self.name, self.xmlid)


def connections(dsn: str, dbname: str | None = None) -> Connections:
    with pg.connect(dsn, dbname) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,"
            " coalesce(current_setting('reserved_connections', true), '0')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    assert row is not None
    return Connections(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def _name(value: Any) -> str:
    if isinstance(value, dict):  # jsonb translations: {"en_US": "..."}
        return str(value.get("en_US") or next(iter(value.values()), ""))
    return str(value or "")


def crons(conn: psycopg.Connection[Any], ids: Sequence[int] | None = None) -> list[Cron]:
    sql = (
        "SELECT c.id, c.cron_name, c.active, min(d.module || '.' || d.name)"
        " FROM ir_cron c LEFT JOIN ir_model_data d ON d.model = 'ir.cron' AND d.res_id = c.id"
    )
    params: list[Any] = []
    if ids is not None:
        sql += " WHERE c.id = ANY(%s)"
        params.append(list(ids))
    sql += " GROUP BY c.id, c.cron_name, c.active ORDER BY c.id"
    try:
        rows = conn.execute(sql, params).fetchall()
    except psycopg.errors.UndefinedTable:
        raise PermanentError("this database has no ir_cron table: is it an Odoo database?") from None
    return [Cron(int(r[0]), _name(r[1]), r[3], bool(r[2])) for r in rows]


def find(conn: psycopg.Connection[Any], names: Iterable[str]) -> tuple[list[Cron], list[str]]:
    """The jobs named (by name or XML id), and the names that matched nothing."""
    every = crons(conn)
    found: dict[int, Cron] = {}
    missing: list[str] = []
    for wanted in names:
        hits = [c for c in every if c.matches(wanted)]
        if not hits:
            missing.append(wanted)
        found.update({c.id: c for c in hits})
    return list(found.values()), missing


def _locked(ids: Sequence[int], lock_timeout: float) -> TemporaryError:
    return TemporaryError(
        f"a scheduled job among ids {list(ids)} is running right now (row locked); retry when it ends",
        delay=lock_timeout,
    )


def deactivate(
    conn: psycopg.Connection[Any],
    ids: Sequence[int],
    remember: Callable[[list[Cron]], None],
    *,
    lock_timeout: float = 5.0,
) -> list[Cron]:
    """Deactivate those of ``ids`` that are active. ``remember(jobs)`` is called with exactly the
    jobs about to change, rows locked, before the commit: what it records is never less than
    what changed."""
    if not ids:
        return []
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
            rows = conn.execute(
                "SELECT id FROM ir_cron WHERE id = ANY(%s) AND active FOR UPDATE", (list(ids),)
            ).fetchall()
            changing = crons(conn, [int(r[0]) for r in rows])
            if changing:
                remember(changing)
                conn.execute("UPDATE ir_cron SET active = false WHERE id = ANY(%s)", ([c.id for c in changing],))
    except psycopg.errors.LockNotAvailable:
        raise _locked(ids, lock_timeout) from None
    return changing


def activate(conn: psycopg.Connection[Any], ids: Sequence[int], *, lock_timeout: float = 5.0) -> list[Cron]:
    """Activate those of ``ids`` that are inactive; returns the jobs changed."""
    if not ids:
        return []
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
            rows = conn.execute(
                "UPDATE ir_cron SET active = true WHERE id = ANY(%s) AND NOT active RETURNING id", (list(ids),)
            ).fetchall()
    except psycopg.errors.LockNotAvailable:
        raise _locked(ids, lock_timeout) from None
    return crons(conn, [int(r[0]) for r in rows])


def connect(dsn: str, dbname: str | None) -> psycopg.Connection[Any]:
    return pg.connect(dsn, dbname)
