"""What erpops reads from an Odoo database: installed modules, version, row counts, freshness.

Table and column names are Odoo 18's (``ir_module_module.latest_version`` of ``base`` is the Odoo
version). Every reader tolerates tables that a given installation does not have (no ``sale``
module, no ``sale_order``): absent tables are simply left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

#: Tables whose row counts a backup records and a restore drill compares (those that exist).
#: Tables that neutralization changes (ir_cron rows stay, ir_mail_server gains a row,
#: ir_config_parameter gains a key) are left out on purpose.
KEY_TABLES: tuple[str, ...] = (
    "res_company",
    "res_partner",
    "res_users",
    "product_template",
    "product_product",
    "stock_location",
    "stock_quant",
    "stock_move",
    "stock_picking",
    "sale_order",
    "sale_order_line",
    "purchase_order",
    "purchase_order_line",
    "account_account",
    "account_journal",
    "account_move",
    "account_move_line",
    "ir_attachment",
    "ir_module_module",
)

#: Business tables whose newest ``write_date`` measures how fresh a restored copy is (RPO).
FRESHNESS_TABLES: tuple[str, ...] = ("sale_order", "stock_move", "account_move")


def existing_tables(conn: psycopg.Connection[Any], names: Iterable[str]) -> list[str]:
    """The tables among ``names`` that exist in the connection's current schema, in that order."""
    wanted = list(dict.fromkeys(names))
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
        (wanted,),
    ).fetchall()
    found = {r[0] for r in rows}
    return [t for t in wanted if t in found]


def has_table(conn: psycopg.Connection[Any], name: str) -> bool:
    return bool(existing_tables(conn, [name]))


def has_column(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s AND column_name = %s",
        (table, column),
    ).fetchone()
    return row is not None


def installed_modules(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Installed modules: name -> ``latest_version`` (empty when ``ir_module_module`` is absent)."""
    if not has_table(conn, "ir_module_module"):
        return {}
    rows = conn.execute(
        "SELECT name, coalesce(latest_version, '') FROM ir_module_module WHERE state = 'installed' ORDER BY name"
    ).fetchall()
    return {str(name): str(version) for name, version in rows}


def odoo_version(modules: dict[str, str]) -> str | None:
    """The Odoo version as Odoo records it: ``latest_version`` of ``base`` (e.g. ``18.0.1.3``)."""
    return modules.get("base") or None


def row_counts(conn: psycopg.Connection[Any], tables: Iterable[str] | None = None) -> dict[str, int]:
    """Exact row counts of the key tables that exist, in one statement (one snapshot)."""
    present = existing_tables(conn, tables if tables is not None else KEY_TABLES)
    if not present:
        return {}
    parts = [sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(t)) for t in present]
    query = sql.SQL("SELECT ") + sql.SQL(", ").join(parts)
    row = conn.execute(query).fetchone()
    assert row is not None
    return {t: int(n) for t, n in zip(present, row, strict=True)}


def newest_writes(conn: psycopg.Connection[Any], tables: Iterable[str] = FRESHNESS_TABLES) -> dict[str, datetime]:
    """Newest ``write_date`` per business table (Odoo stores naive UTC); tables without rows are
    left out."""
    out: dict[str, datetime] = {}
    for table in existing_tables(conn, tables):
        if not has_column(conn, table, "write_date"):
            continue
        row = conn.execute(sql.SQL("SELECT max(write_date) FROM {}").format(sql.Identifier(table))).fetchone()
        if row and row[0] is not None:
            value = row[0]
            if isinstance(value, datetime):
                value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
                out[table] = value
    return out


def config_parameter(conn: psycopg.Connection[Any], key: str) -> str | None:
    if not has_table(conn, "ir_config_parameter"):
        return None
    row = conn.execute("SELECT value FROM ir_config_parameter WHERE key = %s", (key,)).fetchone()
    return None if row is None else str(row[0])


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
