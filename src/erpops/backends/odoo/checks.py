"""What a restore drill checks on a restored Odoo copy (its neutralization: :mod:`.neutralize`).

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from erpops.backends.odoo import db as odoo_db


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
