"""The default state store: one SQLite file (WAL mode) in the XDG state directory.

Where: ``state: sqlite:///path/to/erpops.db`` in erpops.yaml, the ``ERPOPS_STATE`` environment
variable, or ``$XDG_STATE_HOME/erpops/erpops.db`` (``~/.local/state/erpops/erpops.db``). The
directory is created ``0700`` and the database ``0600``; the audit trail is
``erpops-audit.jsonl`` beside it.

Durability: every journal write is its own transaction, committed before the engine starts the
next step. In WAL mode with ``synchronous=NORMAL`` a committed write survives the erpops process
being killed (``kill -9``), at a few tens of microseconds per write.

Environment lock: an exclusive ``flock`` on ``locks/<env>.lock`` beside the database, held for the
whole run. Any erpops process on the machine respects it, and the kernel drops it when its holder
exits, crashes or is killed, so a dead run never keeps an environment locked. The ``locks`` table
says who holds it (run id, user@host, pid, runbook, since when) for the loser's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from erpops.audit import AuditLog
from erpops.backends.state.sql import SCHEMA_VERSION, SqlStateStore, current_user, describe_holder
from erpops.errors import Interrupted, Locked, Unreachable
from erpops.files import state_dir
from erpops.state import RunRecord, pid_alive

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, runbook TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
    environment TEXT NOT NULL, params TEXT NOT NULL, username TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER, started_at TEXT NOT NULL, state TEXT NOT NULL, ended_at TEXT, error TEXT,
    runbook_path TEXT, parent_id TEXT, plan TEXT NOT NULL DEFAULT '[]', resumes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_env ON runs (environment, started_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    phase TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}', error TEXT, PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, who TEXT NOT NULL,
    how TEXT NOT NULL, message TEXT NOT NULL, approved_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_run ON approvals (run_id);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, environment TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (kind, environment, key)
);
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT PRIMARY KEY, run_id TEXT NOT NULL, username TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER, runbook TEXT NOT NULL, since TEXT NOT NULL
);
"""


def default_path() -> Path:
    return state_dir() / "erpops.db"


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path.db``, ``sqlite:///~/x.db`` or a plain path."""
    rest = url[len("sqlite://") :] if url.startswith("sqlite://") else url
    if rest.startswith("/~"):
        rest = rest[1:]
    elif rest.startswith("//"):  # sqlite:////abs/path (SQLAlchemy's spelling of an absolute path)
        rest = "/" + rest.lstrip("/")
    return Path(os.path.normpath(os.path.expanduser(rest)))


def _lock_name(environment: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", environment) and not environment.startswith("."):
        return environment + ".lock"
    return hashlib.sha256(environment.encode()).hexdigest()[:32] + ".lock"


class SqliteStateStore(SqlStateStore):
    shared = False  # one machine's journal and lock

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        super().__init__(AuditLog(self.path.with_name(self.path.stem + "-audit.jsonl")))
        self.where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._open()
        except (OSError, sqlite3.Error) as exc:
            raise Unreachable(
                f"cannot open the state store {self.path}: {exc}",
                hint="check the path in `state:` (erpops.yaml) or ERPOPS_STATE, and its permissions",
            ) from None
        self.lock_dir = self.path.parent / "locks"

    def _open(self, patience: float = 30.0) -> None:
        """WAL mode and the schema. Another process's checkpoint or first open can make these
        answer "database is locked" at once, without the busy timeout: tried again, not fatal."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._create()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _create(self) -> None:
        row = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if row is not None:
            version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is not None and int(version[0]) > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version[0]} was written by a newer erpops (this one reads {SCHEMA_VERSION})"
                )
            if version is not None:
                return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    # --- hooks ---------------------------------------------------------------------------------
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, args).fetchall()

    def _ts(self, dt: datetime | None) -> Any:
        # fixed width, so text order is time order
        return dt.astimezone(UTC).isoformat(timespec="microseconds") if dt is not None else None

    # --- lock ----------------------------------------------------------------------------------
    def _open_lock_file(self, environment: str) -> int:
        self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(self.lock_dir / _lock_name(environment), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def environment_lock(
        self, environment: str, run: RunRecord, wait: float | None = None, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        """Hold the lock of ``environment`` for the ``with`` block; Locked (exit 4) naming the holder
        at once, or after ``wait`` seconds of trying."""
        fd = self._open_lock_file(environment)
        deadline = time.monotonic() + (wait or 0.0)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        waited = f" (waited {wait:g}s)" if wait else ""
                        raise Locked(
                            describe_holder(environment, self.lock_holder(environment)) + waited,
                            hint="wait for it with --wait DURATION, or see `erpops runs show RUN`",
                        ) from None
                    if cancel is not None and cancel.wait(0.1):
                        raise Interrupted(
                            f"interrupted while waiting for the lock of environment {environment!r}"
                        ) from None
                    if cancel is None:
                        time.sleep(0.1)
            self._write_holder(environment, run)
        except BaseException:
            os.close(fd)
            raise
        try:
            yield
        finally:
            try:
                self._clear_holder(environment, run.id)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def unlock_environment(self, environment: str) -> dict[str, Any] | None:
        """Clear a stale lock row (its holder is gone). Returns the cleared holder, None when there
        was nothing to clear; Locked when the holder is still alive."""
        holder = self.lock_holder(environment)
        if holder is None:
            return None
        fd = self._open_lock_file(environment)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Locked(
                    describe_holder(environment, holder) + "; its process still holds the lock, so it is not stale",
                    hint="stop that run (Ctrl-C or SIGTERM) rather than unlocking it",
                ) from None
            try:
                import socket

                if holder["host"] == socket.gethostname() and holder["pid"] != os.getpid() and pid_alive(holder["pid"]):
                    raise Locked(
                        describe_holder(environment, holder)
                        + f"; process {holder['pid']} is still running on this machine",
                        hint="if that process is not erpops, stop it or wait until it ends",
                    )
                self._clear_holder(environment, holder["run_id"])
                self._mark_abandoned(holder["run_id"])
                self._audit_lock("lock.cleared", environment, holder, current_user())
                return holder
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._stop_flusher()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
