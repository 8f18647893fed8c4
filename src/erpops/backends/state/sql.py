"""What the SQLite and PostgreSQL state stores share: one schema, one set of queries.

Tables (the same columns on both databases; PostgreSQL uses ``timestamptz`` and ``jsonb`` where
SQLite keeps ISO-8601 text and JSON text):

``runs``
    one row per run: id, runbook name/version/sha256/path, environment, params (secrets redacted),
    user, host, pid, start/end, state, error, plan, parent run, how many times it was resumed.
``steps``
    one row per step attempt, keyed by (run id, ``seq``, which orders them): phase (main, undo,
    finally), attempt, start/end, outcome, outputs, error.
``approvals``
    who approved what, when and how (``terminal`` or ``--yes``).
``records``
    small JSON documents keyed by (kind, environment, key): releases, backup marks, deferrals.
``locks``
    the holder of each environment lock (run id, user@host, pid, runbook, since when). The lock
    itself is an OS file lock (SQLite) or a session advisory lock (PostgreSQL); the row only says
    who holds it.

Everything written goes through :data:`erpops.secrets.REDACTOR` first, and the run's
beginning, approvals and end are also appended to the audit trail (:mod:`erpops.audit`).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from erpops.audit import AuditLog
from erpops.secrets import redact, redact_obj
from erpops.state import Record, RunRecord, StepRecord, utcnow

SCHEMA_VERSION = 1
#: seconds after which a still-running step attempt is written to the journal
IN_FLIGHT_AFTER = 0.2

RUN_COLUMNS = (
    "id, runbook, version, sha256, environment, params, username, host, pid, started_at, state, ended_at,"
    " error, runbook_path, parent_id, plan, resumes"
)
STEP_COLUMNS = "run_id, step_id, attempt, phase, started_at, ended_at, outcome, outputs, error"
STEP_INSERT_COLUMNS = "run_id, seq, step_id, attempt, phase, started_at, ended_at, outcome, outputs, error"


def dumps(obj: Any) -> str:
    return json.dumps(redact_obj(obj), default=str, separators=(",", ":"))


def loads(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value  # PostgreSQL jsonb arrives decoded


def to_dt_set(value: Any) -> datetime:
    """:func:`to_dt` of a NOT NULL column."""
    dt = to_dt(value)
    if dt is None:
        raise ValueError("a NOT NULL timestamp column held NULL")
    return dt


def to_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    dt = datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class SqlStateStore:
    """The journal, records and lock-holder rows over a DB-API connection.

    Subclasses provide the connection (``self._conn``), the placeholder style, timestamp
    conversion and the environment lock.
    """

    #: "?" for sqlite3, "%s" for psycopg
    ph = "?"
    #: how a JSON parameter is written in SQL (PostgreSQL casts text to jsonb)
    json_ph = "?"
    #: a description of where the store lives, for messages (no password)
    where = ""

    def __init__(self, audit: AuditLog | None) -> None:
        self._mutex = threading.RLock()
        self._step_rows: dict[int, tuple[str, int]] = {}
        self._last_seq = 0
        self._queries: dict[str, str] = {}
        self._pending: dict[int, tuple[StepRecord, float]] = {}
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self.audit = audit

    # --- hooks ---------------------------------------------------------------------------------
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _insert_step(self, args: Sequence[Any]) -> None:
        """Insert one ``steps`` row; ``args`` in the order of :data:`STEP_INSERT_COLUMNS`."""
        self._execute_step(
            self._q(f"INSERT INTO steps ({STEP_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?j, ?)"), args
        )

    def _next_seq(self) -> int:
        """Orders a run's step attempts: microseconds since the epoch, strictly increasing here
        (a resumed run, in a later process, continues after them)."""
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        return self._last_seq

    def _execute_step(self, sql: str, args: Sequence[Any]) -> None:
        """A step-attempt write (frequent; the engine waits for it)."""
        self._execute(sql, args)

    def _ts(self, dt: datetime | None) -> Any:
        """A timestamp as the database takes it."""
        return dt.astimezone(UTC).isoformat() if dt is not None else None

    def _audit_db(self, entry: dict[str, Any]) -> None:
        """PostgreSQL also keeps the audit trail in a table."""

    def _q(self, sql: str) -> str:
        q = self._queries.get(sql)
        if q is None:
            q = self._queries[sql] = sql.replace("?j", self.json_ph).replace("?", self.ph)
        return q

    def _run(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._mutex:
            return self._execute(self._q(sql), args)

    def _audit(self, event: str, **fields: Any) -> None:
        entry = redact_obj({"ts": utcnow().isoformat(timespec="milliseconds"), "event": event, **fields})
        if self.audit is not None:
            self.audit.append(entry)
        self._audit_db(entry)

    # --- journal -------------------------------------------------------------------------------
    def start_run(self, run: RunRecord) -> None:
        self._run(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?j, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?j, 0)",
            (
                run.id,
                run.runbook,
                run.version,
                run.sha256,
                run.environment,
                dumps(run.params),
                run.user,
                run.host,
                os.getpid(),
                self._ts(run.started_at),
                run.state,
                self._ts(run.ended_at),
                redact(run.error) if run.error else None,
                run.runbook_path,
                run.parent_id,
                dumps(run.plan),
            ),
        )
        if run.parent_id is None:
            self._audit(
                "run.started",
                run_id=run.id,
                who=f"{run.user}@{run.host}",
                runbook=run.runbook,
                version=run.version,
                sha256=run.sha256,
                environment=run.environment,
                params=run.params,
            )

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again, in this process."""
        self._run(
            "UPDATE runs SET state = 'running', ended_at = NULL, error = NULL, pid = ?, resumes = resumes + 1"
            " WHERE id = ?",
            (os.getpid(), run_id),
        )
        run = self.get_run(run_id)
        if run is not None:
            self._audit(
                "run.resumed",
                run_id=run_id,
                who=current_user(),
                runbook=run.runbook,
                version=run.version,
                sha256=run.sha256,
                environment=run.environment,
            )

    def finish_run(self, run_id: str, state: str, ended_at: datetime, error: str | None) -> None:
        self._run(
            "UPDATE runs SET state = ?, ended_at = ?, error = ? WHERE id = ?",
            (state, self._ts(ended_at), redact(error) if error else None, run_id),
        )
        run = self.get_run(run_id)
        if run is not None and run.parent_id is None:
            self._audit(
                "run.finished",
                run_id=run_id,
                who=f"{run.user}@{run.host}",
                runbook=run.runbook,
                environment=run.environment,
                state=state,
                error=error,
            )

    def record_plan(self, run_id: str, plan: list[dict[str, Any]]) -> None:
        self._run("UPDATE runs SET plan = ?j WHERE id = ?", (dumps(plan), run_id))

    def start_step(self, step: StepRecord) -> None:
        """Note a step attempt as started. The row is written when the attempt ends, or by the
        background writer once it has run for :data:`IN_FLIGHT_AFTER` seconds, whichever comes
        first: one write per quick step, and a long step shows as running in ``erpops runs show``."""
        with self._mutex:
            self._pending[id(step)] = (step, time.monotonic())
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="erpops-journal", daemon=True)
                self._flusher.start()

    def finish_step(self, step: StepRecord) -> None:
        """Write the attempt's end; done before the engine starts the next step."""
        with self._mutex:
            key = id(step)
            row = self._step_rows.pop(key, None)
            if row is None:  # still pending (or never started here): one insert with the final values
                self._pending.pop(key, None)
                self._insert_step(self._step_args(step))
                return
            self._execute_step(
                self._q(
                    "UPDATE steps SET ended_at = ?, outcome = ?, outputs = ?j, error = ? WHERE run_id = ? AND seq = ?"
                ),
                (
                    self._ts(step.ended_at),
                    step.outcome,
                    dumps(step.outputs),
                    redact(step.error) if step.error else None,
                    *row,
                ),
            )

    def _step_args(self, step: StepRecord) -> tuple[Any, ...]:
        return (
            step.run_id,
            self._next_seq(),
            step.step_id,
            step.attempt,
            step.phase,
            self._ts(step.started_at),
            self._ts(step.ended_at),
            step.outcome,
            dumps(step.outputs),
            redact(step.error) if step.error else None,
        )

    def flush(self, older_than: float = 0.0) -> None:
        """Write the started attempts pending for at least ``older_than`` seconds."""
        with self._mutex:
            now = time.monotonic()
            for key, (step, since) in list(self._pending.items()):
                if now - since >= older_than:
                    del self._pending[key]
                    args = self._step_args(step)
                    self._insert_step(args)
                    self._step_rows[key] = (args[0], args[1])

    def _flush_loop(self) -> None:
        while not self._closed.wait(IN_FLIGHT_AFTER / 2):
            # on error, the next finish_step writes the row anyway (and reports its error)
            with contextlib.suppress(Exception):
                self.flush(IN_FLIGHT_AFTER)

    def _stop_flusher(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        with contextlib.suppress(Exception):
            self.flush()

    def record_approval(self, run_id: str, step_id: str, who: str, how: str, message: str) -> None:
        at = utcnow()
        self._run(
            "INSERT INTO approvals (run_id, step_id, who, how, message, approved_at) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, step_id, who, how, redact(message), self._ts(at)),
        )
        self._audit("approval", run_id=run_id, step=step_id, who=who, how=how, message=message)

    def list_approvals(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT run_id, step_id, who, how, message, approved_at FROM approvals WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [
            {"run_id": r[0], "step_id": r[1], "who": r[2], "how": r[3], "message": r[4], "at": to_dt(r[5])}
            for r in rows
        ]

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._run(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return self._run_record(rows[0]) if rows else None

    def run_process_info(self, run_id: str) -> tuple[str | None, int | None]:
        """(host, pid) of the process that last ran ``run_id``."""
        rows = self._run("SELECT host, pid FROM runs WHERE id = ?", (run_id,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def list_runs(self, **filters: Any) -> list[RunRecord]:
        """Newest first. Filters: environment, runbook, state, since (datetime), limit, top_level."""
        where, args = [], []
        for key in ("environment", "runbook", "state"):
            if filters.get(key):
                where.append(f"{key} = ?")
                args.append(filters[key])
        if filters.get("since") is not None:
            where.append("started_at >= ?")
            args.append(self._ts(filters["since"]))
        if filters.get("top_level"):
            where.append("parent_id IS NULL")
        sql = f"SELECT {RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC"
        if filters.get("limit"):
            sql += f" LIMIT {int(filters['limit'])}"
        return [self._run_record(r) for r in self._run(sql, args)]

    def list_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._run(f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))
        return [
            StepRecord(
                run_id=r[0],
                step_id=r[1],
                attempt=r[2],
                phase=r[3],
                started_at=to_dt_set(r[4]),
                ended_at=to_dt(r[5]),
                outcome=r[6],
                outputs=loads(r[7]) or {},
                error=r[8],
            )
            for r in rows
        ]

    def _run_record(self, r: Sequence[Any]) -> RunRecord:
        return RunRecord(
            id=r[0],
            runbook=r[1],
            version=r[2],
            sha256=r[3],
            environment=r[4],
            params=loads(r[5]) or {},
            user=r[6],
            host=r[7],
            started_at=to_dt_set(r[9]),
            state=r[10],
            ended_at=to_dt(r[11]),
            error=r[12],
            runbook_path=r[13],
            parent_id=r[14],
            plan=loads(r[15]) or [],
            pid=r[8],
            resumes=r[16],
        )

    # --- records -------------------------------------------------------------------------------
    def put_record(self, kind: str, environment: str, key: str, data: dict[str, Any]) -> None:
        now = self._ts(utcnow())
        self._run(
            "INSERT INTO records (kind, environment, key, data, created_at, updated_at) VALUES (?, ?, ?, ?j, ?, ?)"
            " ON CONFLICT (kind, environment, key)"
            " DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (kind, environment, key, dumps(data), now, now),
        )

    def get_record(self, kind: str, environment: str, key: str) -> Record | None:
        rows = self._run(
            "SELECT kind, environment, key, data, created_at, updated_at FROM records"
            " WHERE kind = ? AND environment = ? AND key = ?",
            (kind, environment, key),
        )
        return self._record(rows[0]) if rows else None

    def list_records(self, kind: str, environment: str) -> list[Record]:
        rows = self._run(
            "SELECT kind, environment, key, data, created_at, updated_at FROM records"
            " WHERE kind = ? AND environment = ? ORDER BY created_at, key",
            (kind, environment),
        )
        return [self._record(r) for r in rows]

    def delete_record(self, kind: str, environment: str, key: str) -> None:
        self._run("DELETE FROM records WHERE kind = ? AND environment = ? AND key = ?", (kind, environment, key))

    @staticmethod
    def _record(r: Sequence[Any]) -> Record:
        return Record(r[0], r[1], r[2], loads(r[3]) or {}, to_dt_set(r[4]), to_dt_set(r[5]))

    # --- lock holder rows ----------------------------------------------------------------------
    def lock_holder(self, environment: str) -> dict[str, Any] | None:
        """Who holds (or last held, if it died) the lock of ``environment``."""
        rows = self._run(
            "SELECT environment, run_id, username, host, pid, runbook, since FROM locks WHERE environment = ?",
            (environment,),
        )
        if not rows:
            return None
        r = rows[0]
        return {
            "environment": r[0],
            "run_id": r[1],
            "user": r[2],
            "host": r[3],
            "pid": r[4],
            "runbook": r[5],
            "since": to_dt(r[6]),
        }

    def list_locks(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT environment FROM locks ORDER BY environment")
        return [h for (env,) in rows if (h := self.lock_holder(env)) is not None]

    def _write_holder(self, environment: str, run: RunRecord) -> None:
        self._run(
            "INSERT INTO locks (environment, run_id, username, host, pid, runbook, since) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (environment) DO UPDATE SET run_id = excluded.run_id, username = excluded.username,"
            " host = excluded.host, pid = excluded.pid, runbook = excluded.runbook, since = excluded.since",
            (environment, run.id, run.user, run.host, os.getpid(), run.runbook, self._ts(utcnow())),
        )

    def _clear_holder(self, environment: str, run_id: str | None = None) -> None:
        if run_id is None:
            self._run("DELETE FROM locks WHERE environment = ?", (environment,))
        else:
            self._run("DELETE FROM locks WHERE environment = ? AND run_id = ?", (environment, run_id))

    def _mark_abandoned(self, run_id: str) -> None:
        self._run(
            "UPDATE runs SET state = 'interrupted', ended_at = ?, error = ? WHERE id = ? AND state = 'running'",
            (self._ts(utcnow()), "the erpops process ended without finishing this run (stale lock cleared)", run_id),
        )

    def _audit_lock(self, event: str, environment: str, holder: dict[str, Any] | None, who: str) -> None:
        self._audit(event, environment=environment, who=who, holder=holder)


def describe_holder(environment: str, holder: dict[str, Any] | None) -> str:
    """``environment 'prod' is locked by run X (alice@laptop, runbook failover, since ...)``."""
    if holder is None:
        return f"environment {environment!r} is locked by another run (its holder is still writing who it is)"
    since = holder["since"].strftime("%Y-%m-%d %H:%M:%S UTC") if holder.get("since") else "?"
    return (
        f"environment {environment!r} is locked by run {holder['run_id']} "
        f"({holder['user']}@{holder['host']}, runbook {holder['runbook']}, since {since})"
    )


def current_user() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
