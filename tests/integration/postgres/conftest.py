"""Fixtures for the PostgreSQL tests: real servers (tests.fixtures.postgres) and a small action
context that runs child processes for real, recording what it was asked to run.

pytest refuses ``pytest_plugins`` outside the top-level conftest, so the fixtures are imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from erpops import process, secrets
from erpops.actions.base import Action, ProcessResult, RunInfo
from erpops.environments import Database, Environment
from tests.fixtures.postgres import *  # noqa: F403
from tests.fixtures.postgres import PgServer


@dataclass
class FakeCtx:
    """Enough of ``ActionContext`` to call ``Action().apply(params, ctx)`` directly."""

    env: Environment
    run_id: str = "run-test-1"
    step_id: str = "step"
    state: Any = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    processes: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.run = RunInfo(
            id=self.run_id,
            started_at=datetime.now(UTC),
            user="tester",
            host="localhost",
            runbook="test",
            runbook_version="0.0.0",
            environment=self.env.name,
        )

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        self.logs.append((level, secrets.redact(message)))

    def progress(self, description: str, *, done: float, total: float | None = None, unit: str = "B") -> None:
        pass

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise RuntimeError("cancelled")

    def resolve_secret(self, value: str) -> str:
        return secrets.resolve(value) if secrets.is_reference(value) else value

    def register_secret(self, value: str) -> None:
        secrets.REDACTOR.register(value)

    def run_process(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: Any) -> ProcessResult:
        self.processes.append((list(argv), dict(env or {})))
        code, out, err, secs = process.run_process(argv, cancel=self.cancel, env=env, **kwargs)
        return ProcessResult(list(argv), code, secrets.redact(out), secrets.redact(err), secs)

    def approve(self, message: str) -> None:
        return None

    def call_runbook(self, name_or_path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def run_action(name: str, ctx: FakeCtx, **params: Any) -> dict[str, Any]:
    """Validate ``params`` with the action's model, plan, then apply — as the engine would."""
    from erpops.actions.base import get_action

    cls: type[Action] | None = get_action(name)
    assert cls is not None, f"action {name} is not registered"
    action = cls()
    model = cls.Params.model_validate(params)
    action.plan(model, ctx)
    out = action.apply(model, ctx)
    assert set(out) <= set(cls.outputs), f"undeclared outputs: {set(out) - set(cls.outputs)}"
    return out


@pytest.fixture
def make_ctx(pg_primary: PgServer) -> Callable[..., FakeCtx]:
    """A context whose environment's database is ``database`` on the session's primary."""

    def make(database: str = "odoo_seed", *, dsn: str | None = None, run_id: str = "run-test-1") -> FakeCtx:
        env = Environment(name="pgtest", database=Database(dsn=dsn or pg_primary.dsn(), name=database))
        return FakeCtx(env, run_id=run_id)

    return make
