"""Fixtures for the PostgreSQL tests: real servers (tests.fixtures.postgres) and a small action
context that runs child processes for real, recording what it was asked to run.

pytest refuses ``pytest_plugins`` outside the top-level conftest, so the fixtures are imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from erpops.actions.base import Action
from erpops.environments import Database, Environment
from tests.fixtures.actions import FakeCtx
from tests.fixtures.postgres import *  # noqa: F403
from tests.fixtures.postgres import PgServer


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
