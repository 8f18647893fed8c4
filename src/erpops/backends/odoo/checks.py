"""What a restore drill does to and checks on a restored Odoo copy: neutralization and checks.

**Neutralization** mirrors what ``odoo-bin neutralize`` does (each installed module's
``data/neutralize.sql``), and what Odoo's *copy* restore adds (a new ``database.uuid`` and
``database.secret``), on the
tables that exist: scheduled jobs off except ``base.autovacuum_job``; outgoing mail servers off
plus an active "neutralization - disable emails" server on host ``invalid`` port 1025, so nothing
falls back to a real server; incoming (fetchmail) servers off; payment providers ``disabled``
unless in test; carriers out of production; the neutralize banner view on;
``database.is_neutralized = 'true'``.

**Checks** each give a :class:`CheckResult` (name, passed, expected, actual, seconds, message):

- ``row_counts``: the key tables hold as many rows as the manifest recorded at the snapshot;
- ``accounting_balanced``: every posted ``account_move`` has ``sum(debit) = sum(credit)``;
- ``attachments``: sampled stored ``ir_attachment`` files exist in the restored filestore and
  their SHA-1 equals ``checksum``;
- ``modules``: installed modules (and versions) equal the manifest's;
- custom SQL checks: with ``expect``, the first column of the first row must equal it; without,
  the query must return no rows (each row it returns is a violation). They run read-only.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from erpops.backends.odoo import db as odoo_db

NEUTRALIZE_SERVER = "neutralization - disable emails"


@dataclass
class CheckResult:
    name: str
    passed: bool
    expected: Any = None
    actual: Any = None
    seconds: float = 0.0
    message: str = ""
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration"] = out.pop("seconds")
        return out


def _timed(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    t0 = time.monotonic()
    try:
        result = fn()
    except psycopg.Error as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result = CheckResult(name, False, message=f"query failed: {msg}")
    result.seconds = round(time.monotonic() - t0, 4)
    return result


def _utcnow_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- neutralization ---------------------------------------------------------------------------


def neutralize(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Neutralize the connected copy in one transaction; returns what changed (counts per kind)."""
    changed: dict[str, Any] = {}
    with conn.transaction():
        tables = set(
            odoo_db.existing_tables(
                conn,
                ["ir_cron", "ir_model_data", "ir_mail_server", "mail_template", "fetchmail_server",
                 "payment_provider", "delivery_carrier", "ir_config_parameter", "ir_ui_view"],
            )
        )  # fmt: skip
        if "ir_cron" in tables:
            keep = (
                "SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'autovacuum_job' "
                "AND model = 'ir.cron' AND res_id IS NOT NULL"
                if "ir_model_data" in tables
                else "SELECT NULL::integer WHERE false"
            )
            cur = conn.execute(f"UPDATE ir_cron SET active = false WHERE active IS NOT false AND id NOT IN ({keep})")
            changed["crons_disabled"] = cur.rowcount
        if "ir_mail_server" in tables:
            cur = conn.execute(
                "UPDATE ir_mail_server SET active = false WHERE active IS NOT false AND name <> %s",
                (NEUTRALIZE_SERVER,),
            )
            changed["mail_servers_disabled"] = cur.rowcount
            changed["neutralize_mail_server_added"] = _add_blackhole_server(conn)
            if "mail_template" in tables and odoo_db.has_column(conn, "mail_template", "mail_server_id"):
                cur = conn.execute("UPDATE mail_template SET mail_server_id = NULL WHERE mail_server_id IS NOT NULL")
                changed["mail_templates_unlinked"] = cur.rowcount
        if "fetchmail_server" in tables:
            cur = conn.execute("UPDATE fetchmail_server SET active = false WHERE active IS NOT false")
            changed["fetchmail_servers_disabled"] = cur.rowcount
        if "payment_provider" in tables:
            cur = conn.execute("UPDATE payment_provider SET state = 'disabled' WHERE state NOT IN ('test', 'disabled')")
            changed["payment_providers_disabled"] = cur.rowcount
        if "delivery_carrier" in tables and odoo_db.has_column(conn, "delivery_carrier", "prod_environment"):
            cur = conn.execute("UPDATE delivery_carrier SET prod_environment = false WHERE prod_environment")
            changed["carriers_to_test"] = cur.rowcount
        if "ir_ui_view" in tables and odoo_db.has_column(conn, "ir_ui_view", "key"):
            cur = conn.execute("UPDATE ir_ui_view SET active = true WHERE key = 'web.neutralize_banner' AND NOT active")
            changed["banner_views_activated"] = cur.rowcount
        if "ir_config_parameter" in tables:
            _set_param(conn, "database.is_neutralized", "true")
            changed["is_neutralized"] = True
            _set_param(conn, "database.uuid", str(uuid.uuid1()))
            changed["new_database_uuid"] = True
            # as Odoo's copy restore: a copy signs nothing (sessions, tokens) with production's secret
            _set_param(conn, "database.secret", str(uuid.uuid4()))
            changed["new_database_secret"] = True
    return changed


def _insert(conn: psycopg.Connection[Any], table: str, values: dict[str, Any]) -> None:
    """INSERT only the columns the table has (audit columns filled when present)."""
    now = _utcnow_naive()
    for audit in ("create_date", "write_date"):
        values.setdefault(audit, now)
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    ).fetchall()
    present = {r[0] for r in rows}
    cols = [c for c in values if c in present]
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        sql.SQL(", ").join(sql.Placeholder() for _ in cols),
    )
    conn.execute(query, [values[c] for c in cols])


def _add_blackhole_server(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT id FROM ir_mail_server WHERE name = %s", (NEUTRALIZE_SERVER,)).fetchone()
    if row is not None:
        conn.execute("UPDATE ir_mail_server SET active = true WHERE id = %s", (row[0],))
        return False
    _insert(
        conn,
        "ir_mail_server",
        {
            "name": NEUTRALIZE_SERVER,
            "smtp_host": "invalid",
            "smtp_port": 1025,
            "smtp_encryption": "none",
            "smtp_authentication": "login",
            "sequence": 1,
            "active": True,
        },
    )
    return True


def _set_param(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    if odoo_db.has_column(conn, "ir_config_parameter", "write_date"):
        cur = conn.execute(
            "UPDATE ir_config_parameter SET value = %s, write_date = %s WHERE key = %s", (value, _utcnow_naive(), key)
        )
    else:
        cur = conn.execute("UPDATE ir_config_parameter SET value = %s WHERE key = %s", (value, key))
    if cur.rowcount == 0:
        _insert(conn, "ir_config_parameter", {"key": key, "value": value})


# --- checks -----------------------------------------------------------------------------------


def check_row_counts(
    conn: psycopg.Connection[Any], expected: dict[str, int], *, compare: bool = True, why: str = ""
) -> CheckResult:
    """``compare`` False: the copy is of another moment than the manifest's counts (a drill to a
    moment); the counts are reported, not compared (``why`` says so)."""

    def run() -> CheckResult:
        if not expected:
            return CheckResult("row_counts", True, {}, {}, message="the manifest records no row counts", skipped=True)
        actual_present = odoo_db.row_counts(conn, list(expected))
        actual: dict[str, int | None] = {t: actual_present.get(t) for t in expected}
        if not compare:
            said = ", ".join(f"{t} {n}" for t, n in actual.items())
            return CheckResult("row_counts", True, dict(expected), actual, message=f"{why}: {said}", skipped=True)
        diffs = [f"{t}: {actual[t] if actual[t] is not None else 'missing'} (manifest {n})"
                 for t, n in expected.items() if actual[t] != n]  # fmt: skip
        msg = "; ".join(diffs) if diffs else f"{len(expected)} tables match the manifest"
        return CheckResult("row_counts", not diffs, dict(expected), actual, message=msg)

    return _timed("row_counts", run)


def check_balanced(conn: psycopg.Connection[Any]) -> CheckResult:
    def run() -> CheckResult:
        if len(odoo_db.existing_tables(conn, ["account_move", "account_move_line"])) < 2:
            return CheckResult("accounting_balanced", True, message="no account_move tables", skipped=True)
        row = conn.execute("SELECT count(*) FROM account_move WHERE state = 'posted'").fetchone()
        posted = int(row[0]) if row else 0
        bad = conn.execute(
            "SELECT m.id, m.name, coalesce(sum(l.debit), 0), coalesce(sum(l.credit), 0) "
            "FROM account_move m LEFT JOIN account_move_line l ON l.move_id = m.id "
            "WHERE m.state = 'posted' GROUP BY m.id, m.name "
            "HAVING coalesce(sum(l.debit), 0) <> coalesce(sum(l.credit), 0) ORDER BY m.id"
        ).fetchall()
        examples = [f"{name or f'id {mid}'}: debit {_num(d)} credit {_num(c)}" for mid, name, d, c in bad[:5]]
        actual = {"posted_moves": posted, "unbalanced": len(bad), "examples": examples}
        msg = (
            f"{len(bad)} of {posted} posted moves unbalanced: " + "; ".join(examples)
            if bad
            else f"{posted} posted moves balanced"
        )
        return CheckResult("accounting_balanced", not bad, {"unbalanced": 0}, actual, message=msg)

    return _timed("accounting_balanced", run)


def _num(value: Any) -> str:
    return f"{value:f}" if isinstance(value, Decimal) else str(value)


def check_attachments(
    conn: psycopg.Connection[Any], filestore: Path | None, sample: int = 200, until: datetime | None = None
) -> CheckResult:
    """``until``: only attachments created by then have their file in the backup (a physical drill
    replayed past its filestore archive): later ones are counted, not sampled."""

    def run() -> CheckResult:
        if not odoo_db.has_table(conn, "ir_attachment"):
            return CheckResult("attachments", True, message="no ir_attachment table", skipped=True)
        if filestore is None:
            return CheckResult("attachments", True, message="the backup has no filestore", skipped=True)
        stored = (
            "store_fname IS NOT NULL AND store_fname <> '' AND db_datas IS NULL AND coalesce(type, 'binary') = 'binary'"
        )
        later = 0
        if until is not None:
            row = conn.execute(
                f"SELECT count(*) FROM ir_attachment WHERE {stored} AND create_date > %s",
                (until.astimezone(UTC).replace(tzinfo=None),),
            ).fetchone()
            later = int(row[0]) if row else 0
        rows = conn.execute(
            f"SELECT store_fname, checksum FROM ir_attachment WHERE {stored} "
            + ("AND create_date <= %s " if until is not None else "")
            + "ORDER BY random() LIMIT %s",
            ((until.astimezone(UTC).replace(tzinfo=None),) if until is not None else ()) + (max(0, sample),),
        ).fetchall()
        root = filestore.resolve()
        missing: list[str] = []
        mismatched: list[str] = []
        for fname, checksum in rows:
            path = (root / fname).resolve()
            if root not in path.parents or not path.is_file():
                missing.append(fname)
                continue
            if checksum and _sha1(path) != checksum:
                mismatched.append(fname)
        examples = (missing + mismatched)[:5]
        actual = {
            "sampled": len(rows),
            "missing": len(missing),
            "checksum_mismatch": len(mismatched),
            "examples": examples,
        }
        ok = not missing and not mismatched
        if later:
            actual["created_after_filestore"] = later
        if ok:
            msg = f"{len(rows)} sampled attachment files present with matching SHA-1"
            if later:
                msg += f"; {later} attachments created after the filestore was archived have no file in this backup"
        else:
            msg = f"{len(missing)} missing, {len(mismatched)} with a wrong SHA-1, of {len(rows)} sampled: " + ", ".join(
                examples
            )
        return CheckResult(
            "attachments", ok, {"sampled": len(rows), "missing": 0, "checksum_mismatch": 0}, actual, message=msg
        )

    return _timed("attachments", run)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_modules(conn: psycopg.Connection[Any], expected: dict[str, str]) -> CheckResult:
    def run() -> CheckResult:
        actual = odoo_db.installed_modules(conn)
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        changed = sorted(m for m in set(expected) & set(actual) if expected[m] != actual[m])
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("not in the manifest " + ", ".join(extra))
        if changed:
            parts.append("other version " + ", ".join(f"{m} {actual[m]} (manifest {expected[m]})" for m in changed))
        msg = "; ".join(parts) if parts else f"{len(actual)} installed modules match the manifest"
        return CheckResult("modules", not parts, dict(expected), actual, message=msg)

    return _timed("modules", run)


@dataclass
class SqlCheck:
    name: str
    sql: str
    expect: Any = None
    source: str = "runbook"
    extra: dict[str, Any] = field(default_factory=dict)


def check_sql(conn: psycopg.Connection[Any], check: SqlCheck, *, timeout_s: float = 60.0) -> CheckResult:
    def run() -> CheckResult:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(timeout_s * 1000))))
            cur = conn.execute(check.sql)  # the operator's own query
            rows = cur.fetchmany(6) if cur.description else []
        if check.expect is None:
            shown = [_jsonable(r[0] if len(r) == 1 else list(r)) for r in rows[:5]]
            msg = "no violations" if not rows else f"{'6+' if len(rows) > 5 else len(rows)} rows returned: {shown}"
            return CheckResult(check.name, not rows, "no rows", shown, message=msg)
        value = _jsonable(rows[0][0]) if rows else None
        ok = _equal(value, check.expect)
        msg = f"got {value!r}" + ("" if ok else f", expected {check.expect!r}")
        return CheckResult(check.name, ok, check.expect, value, message=msg)

    return _timed(check.name, run)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime,)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _equal(actual: Any, expect: Any) -> bool:
    if isinstance(expect, bool) or isinstance(actual, bool):
        return str(actual).lower() == str(expect).lower()
    if isinstance(actual, (int, float)) and isinstance(expect, (int, float, str)):
        try:
            return float(actual) == float(expect)
        except ValueError:
            return False
    return str(actual) == str(expect)
