"""The state store contract: the journal of runs, and small per-environment records.

Implemented by ``erpops.backends.state.sqlite`` (default) and ``erpops.backends.state.postgres``;
:class:`MemoryStateStore` is the in-process implementation used when no journal is wanted and as
the reference for benchmarks.

Records are small JSON documents keyed by (kind, environment, key): release history
(``kind="release"``), backup marks, scale-for-peak deferrals, database topology... Every playbook
that must remember something between runs uses them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunRecord:
    id: str
    runbook: str
    version: str
    sha256: str
    environment: str
    params: dict[str, Any]
    user: str
    host: str
    started_at: datetime
    state: str = "running"  # running | succeeded | failed | rolled-back | interrupted
    ended_at: datetime | None = None
    error: str | None = None
    runbook_path: str | None = None
    parent_id: str | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)
    #: the process that last ran it (set by the durable stores) and how many times it was resumed
    pid: int | None = None
    resumes: int = 0


def pid_alive(pid: int | None) -> bool:
    """Is process ``pid`` of this machine alive (one we may not signal counts as alive)?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_alive(run: RunRecord) -> bool | None:
    """Is the process that last ran ``run`` alive? None when it ran on another machine (unknown)."""
    if run.host != socket.gethostname():
        return None
    return pid_alive(run.pid)


@dataclass
class StepRecord:
    run_id: str
    step_id: str
    attempt: int
    phase: str  # main | undo | finally
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str = "running"  # running | succeeded | failed | skipped | timeout | cancelled
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Record:
    kind: str
    environment: str
    key: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class StateStore(Protocol):
    #: whether runs on other machines see the same journal and lock (PostgreSQL: yes; SQLite: no)
    shared: bool

    # --- journal -------------------------------------------------------------------------------
    def start_run(self, run: RunRecord) -> None: ...
    def finish_run(self, run_id: str, state: str, ended_at: datetime, error: str | None) -> None: ...
    def record_plan(self, run_id: str, plan: list[dict[str, Any]]) -> None: ...
    def start_step(self, step: StepRecord) -> None: ...
    def finish_step(self, step: StepRecord) -> None: ...
    def record_approval(self, run_id: str, step_id: str, who: str, how: str, message: str) -> None: ...
    def reopen_run(self, run_id: str) -> None: ...
    def list_approvals(self, run_id: str) -> list[dict[str, Any]]: ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def list_runs(self, **filters: Any) -> list[RunRecord]: ...
    def list_steps(self, run_id: str) -> list[StepRecord]: ...

    # --- records -------------------------------------------------------------------------------
    def put_record(self, kind: str, environment: str, key: str, data: dict[str, Any]) -> None: ...
    def get_record(self, kind: str, environment: str, key: str) -> Record | None: ...
    def list_records(self, kind: str, environment: str) -> list[Record]: ...
    def delete_record(self, kind: str, environment: str, key: str) -> None: ...

    # --- lock ----------------------------------------------------------------------------------
    @contextmanager
    def environment_lock(
        self, environment: str, run: RunRecord, wait: float | None = None, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        """Hold the lock of ``environment``; Locked (exit 4) naming the holder at once or after
        ``wait`` seconds; Interrupted (exit 130) if ``cancel`` is set while waiting."""
        ...

    def close(self) -> None: ...


class MemoryStateStore:
    """Everything in dicts; nothing survives the process."""

    #: whether runs on other machines see the same journal and lock (a PostgreSQL store)
    shared = False

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.steps: dict[str, list[StepRecord]] = {}
        self.approvals: list[dict[str, Any]] = []
        self.records: dict[tuple[str, str, str], Record] = {}
        self._locks: dict[str, str] = {}
        self._mutex = threading.Lock()

    def start_run(self, run: RunRecord) -> None:
        self.runs[run.id] = run
        self.steps.setdefault(run.id, [])

    def finish_run(self, run_id: str, state: str, ended_at: datetime, error: str | None) -> None:
        run = self.runs[run_id]
        run.state, run.ended_at, run.error = state, ended_at, error

    def record_plan(self, run_id: str, plan: list[dict[str, Any]]) -> None:
        self.runs[run_id].plan = plan

    def start_step(self, step: StepRecord) -> None:
        self.steps.setdefault(step.run_id, []).append(step)

    def finish_step(self, step: StepRecord) -> None:
        pass  # the same object was appended by start_step

    def record_approval(self, run_id: str, step_id: str, who: str, how: str, message: str) -> None:
        self.approvals.append(
            {"run_id": run_id, "step_id": step_id, "who": who, "how": how, "message": message, "at": utcnow()}
        )

    def reopen_run(self, run_id: str) -> None:
        run = self.runs[run_id]
        run.state, run.ended_at, run.error, run.resumes = "running", None, None, run.resumes + 1

    def list_approvals(self, run_id: str) -> list[dict[str, Any]]:
        return [a for a in self.approvals if a["run_id"] == run_id]

    def get_run(self, run_id: str) -> RunRecord | None:
        return self.runs.get(run_id)

    def list_runs(self, **filters: Any) -> list[RunRecord]:
        runs = list(self.runs.values())
        for key in ("environment", "runbook", "state"):
            if filters.get(key):
                runs = [r for r in runs if getattr(r, key) == filters[key]]
        return sorted(runs, key=lambda r: r.started_at, reverse=True)

    def list_steps(self, run_id: str) -> list[StepRecord]:
        return list(self.steps.get(run_id, []))

    def put_record(self, kind: str, environment: str, key: str, data: dict[str, Any]) -> None:
        now = utcnow()
        old = self.records.get((kind, environment, key))
        self.records[(kind, environment, key)] = Record(
            kind, environment, key, data, old.created_at if old else now, now
        )

    def get_record(self, kind: str, environment: str, key: str) -> Record | None:
        return self.records.get((kind, environment, key))

    def list_records(self, kind: str, environment: str) -> list[Record]:
        recs = [r for (k, e, _), r in self.records.items() if k == kind and e == environment]
        return sorted(recs, key=lambda r: r.created_at)

    def delete_record(self, kind: str, environment: str, key: str) -> None:
        self.records.pop((kind, environment, key), None)

    @contextmanager
    def environment_lock(
        self, environment: str, run: RunRecord, wait: float | None = None, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        from erpops.errors import Locked

        with self._mutex:
            if environment in self._locks:
                raise Locked(f"environment {environment!r} is locked by run {self._locks[environment]}")
            self._locks[environment] = run.id
        try:
            yield
        finally:
            with self._mutex:
                self._locks.pop(environment, None)

    def close(self) -> None:
        pass
