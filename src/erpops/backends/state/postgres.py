"""The team state store: PostgreSQL (``state: postgresql://user@host/db`` in erpops.yaml).

Same tables and behaviour as the SQLite store (see :mod:`erpops.backends.state.sql`), plus an
``audit`` table holding the audit trail next to the local audit file. The URL may be a secret
reference (``state: env:ERPOPS_STATE_DSN``); its password never appears in messages.

Environment lock: a session advisory lock (``pg_try_advisory_lock``) on a connection of its own,
held for the whole run. Two engineers on two machines sharing the state store exclude each other,
and the lock disappears when its holder's session ends — the process exits, crashes or is killed
(TCP keepalives on that session let the server notice a vanished laptop within about a minute).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from erpops.audit import AuditLog
from erpops.backends.state.sql import SCHEMA_VERSION, SqlStateStore, current_user, describe_holder, dumps
from erpops.errors import Interrupted, InvalidInput, Locked, Unreachable
from erpops.files import state_dir
from erpops.secrets import REDACTOR, redact
from erpops.state import RunRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS erpops_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id text PRIMARY KEY, runbook text NOT NULL, version text NOT NULL, sha256 text NOT NULL,
    environment text NOT NULL, params jsonb NOT NULL, username text NOT NULL, host text NOT NULL,
    pid integer, started_at timestamptz NOT NULL, state text NOT NULL, ended_at timestamptz, error text,
    runbook_path text, parent_id text, plan jsonb NOT NULL DEFAULT '[]', resumes integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_env ON runs (environment, started_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id text NOT NULL, seq bigint NOT NULL, step_id text NOT NULL, attempt integer NOT NULL,
    phase text NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz, outcome text NOT NULL,
    outputs jsonb NOT NULL DEFAULT '{}', error text, PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS approvals (
    id bigserial PRIMARY KEY, run_id text NOT NULL, step_id text NOT NULL, who text NOT NULL,
    how text NOT NULL, message text NOT NULL, approved_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_run ON approvals (run_id);
CREATE TABLE IF NOT EXISTS records (
    kind text NOT NULL, environment text NOT NULL, key text NOT NULL, data jsonb NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (kind, environment, key)
);
CREATE TABLE IF NOT EXISTS locks (
    environment text PRIMARY KEY, run_id text NOT NULL, username text NOT NULL, host text NOT NULL,
    pid integer, runbook text NOT NULL, since timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), event text NOT NULL, entry jsonb NOT NULL
);
"""

#: advisory lock key guarding schema creation
_SCHEMA_KEY = 0x6572706F70730001
_KEEPALIVE = (
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
)


def lock_key(environment: str) -> int:
    """The 64-bit advisory lock key of an environment."""
    digest = hashlib.sha256(b"erpops-environment-lock:" + environment.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and file names."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable DSN)"
    parts.pop("password", None)
    return conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})


def default_audit_path(dsn: str) -> Path:
    tag = hashlib.sha256(safe_dsn(dsn).encode()).hexdigest()[:12]
    return state_dir() / f"audit-postgres-{tag}.jsonl"


def _connect(dsn: str, what: str) -> psycopg.Connection[Any]:
    from erpops.backends.postgres.client import parse_dsn

    try:
        parse_dsn(dsn)  # a DSN that cannot be right is the user's input (exit 2), not an unreachable server
    except InvalidInput as exc:
        raise InvalidInput(f"state store: {exc}", hint="check `state:` in erpops.yaml (or ERPOPS_STATE)") from None
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="erpops")
    except psycopg.Error as exc:
        raise Unreachable(
            f"cannot connect to the PostgreSQL state store ({what}): {redact(str(exc)).strip()}",
            hint="check `state:` in erpops.yaml (or ERPOPS_STATE) and that the server answers",
        ) from None


class PostgresStateStore(SqlStateStore):
    shared = True  # every machine that uses it sees the same journal and lock
    ph = "%s"
    json_ph = "%s::jsonb"

    def __init__(self, dsn: str, *, audit_path: str | Path | None = None) -> None:
        try:
            password = conninfo.conninfo_to_dict(dsn).get("password")
        except psycopg.ProgrammingError:
            raise Unreachable(
                "the PostgreSQL state store URL cannot be parsed; check `state:` in erpops.yaml"
            ) from None
        if password:
            REDACTOR.register(str(password))
        super().__init__(AuditLog(audit_path or default_audit_path(dsn)))
        self.dsn = dsn
        self.where = safe_dsn(dsn)
        self._conn = _connect(dsn, self.where)
        try:
            # Step attempts are committed before the next step starts, without waiting for the
            # server's WAL flush: a killed erpops loses nothing committed; only a crash of the
            # PostgreSQL server itself within a fraction of a second could lose the last attempts.
            self._conn.execute("SET synchronous_commit = off")
            self._create()
        except psycopg.Error as exc:
            self._conn.close()
            raise Unreachable(f"cannot prepare the state store tables in {self.where}: {redact(str(exc))}") from None

    def _create(self) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_KEY,))
            cur.execute("SELECT to_regclass('erpops_meta') IS NOT NULL")
            row = cur.fetchone()
            if row and row[0]:
                cur.execute("SELECT value FROM erpops_meta WHERE key = 'schema_version'")
                version = cur.fetchone()
                if version is not None and int(version[0]) > SCHEMA_VERSION:
                    raise Unreachable(
                        f"the state store {self.where} has schema version {version[0]}, written by a newer erpops"
                    )
                if version is not None:
                    return
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    cur.execute(stmt)
            cur.execute(
                "INSERT INTO erpops_meta (key, value) VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
                (str(SCHEMA_VERSION),),
            )

    # --- hooks ---------------------------------------------------------------------------------
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if sql.startswith("SELECT"):
            with self._conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        # runs, approvals, records, locks: wait for the server to flush its WAL (durable even
        # if the server crashes right after)
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = on")
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def _execute_step(self, sql: str, args: Sequence[Any]) -> None:
        with self._conn.cursor() as cur:
            cur.execute(sql, args)

    def _ts(self, dt: datetime | None) -> Any:
        return dt

    def _audit_db(self, entry: dict[str, Any]) -> None:
        self._run("INSERT INTO audit (event, entry) VALUES (?, ?j)", (entry.get("event", "?"), dumps(entry)))

    def audit_entries(self) -> list[dict[str, Any]]:
        """The ``audit`` table, oldest first."""
        rows = self._run("SELECT entry FROM audit ORDER BY id")
        return [r[0] for r in rows]

    # --- lock ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def environment_lock(
        self, environment: str, run: RunRecord, wait: float | None = None, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        """Hold the advisory lock of ``environment`` on a session of its own for the ``with`` block."""
        key = lock_key(environment)
        conn = _connect(self.dsn, self.where)
        deadline = time.monotonic() + (wait or 0.0)
        try:
            for stmt in _KEEPALIVE:
                conn.execute(stmt)
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if row and row[0]:
                    break
                if time.monotonic() >= deadline:
                    waited = f" (waited {wait:g}s)" if wait else ""
                    raise Locked(
                        describe_holder(environment, self.lock_holder(environment)) + waited,
                        hint="wait for it with --wait DURATION, or see `erpops runs show RUN`",
                    )
                if cancel is not None and cancel.wait(0.2):
                    raise Interrupted(f"interrupted while waiting for the lock of environment {environment!r}")
                if cancel is None:
                    time.sleep(0.2)
            self._write_holder(environment, run)
        except BaseException:
            conn.close()
            raise
        try:
            yield
        finally:
            try:
                self._clear_holder(environment, run.id)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                conn.close()

    def unlock_environment(self, environment: str) -> dict[str, Any] | None:
        """Clear the holder row of a lock whose session is gone (the advisory lock itself always
        vanishes with its session). Locked when the holder's session is still there."""
        holder = self.lock_holder(environment)
        if holder is None:
            return None
        key = lock_key(environment)
        conn = _connect(self.dsn, self.where)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (row and row[0]):
                raise Locked(
                    describe_holder(environment, holder) + "; its session still holds the lock, so it is not stale",
                    hint="stop that run (Ctrl-C or SIGTERM) rather than unlocking it",
                )
            try:
                self._clear_holder(environment, holder["run_id"])
                self._mark_abandoned(holder["run_id"])
                self._audit_lock("lock.cleared", environment, holder, current_user())
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return holder
        finally:
            conn.close()

    def close(self) -> None:
        self._stop_flusher()
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
