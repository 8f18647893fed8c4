"""What the failover actions share: servers by role in the current topology, plan descriptions,
the write probes of running runs.

Servers are named by their role in the environment — ``server: primary`` or ``server: standby`` —
as the environment's *current topology* says (:func:`erpops.records.apply_topology`). Every action
also takes an explicit ``dsn`` instead.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from erpops import secrets
from erpops.actions.base import ActionContext, ActionParams
from erpops.errors import InvalidInput, Unreachable
from erpops.records import apply_topology

if TYPE_CHECKING:
    from erpops.backends.postgres.write_probe import WriteProbe
    from erpops.environments import Database, Environment

Role = Literal["primary", "standby"]

PROBES: dict[str, WriteProbe] = {}
PROBES_LOCK = threading.Lock()


# --- topology ---------------------------------------------------------------------------------


def env_of(ctx: ActionContext) -> Environment:
    return apply_topology(ctx.env, ctx.state)


def server_of(env: Environment, role: Role) -> Database:
    db = env.database if role == "primary" else env.standby
    if db is None:
        key = "database" if role == "primary" else "standby"
        raise Unreachable(f"environment {env.name!r} has no {key} in its configuration; add {key}: {{dsn: ...}}")
    return db


def target(ctx: ActionContext, role: Role, dsn: str | None) -> tuple[str, str]:
    """(resolved DSN, description without secrets) of a role or an explicit DSN."""
    from erpops.backends.postgres import client as pg

    env = env_of(ctx)
    ref = dsn or server_of(env, role).dsn
    resolved = ctx.resolve_secret(ref)
    return resolved, pg.describe(resolved, _app_database(env, dsn))


def _app_database(env: Environment, dsn: str | None) -> str | None:
    """The Odoo database a server of the environment holds (what reports name), not the DSN's
    maintenance database; None for an explicit DSN."""
    return env.database.name if env.database is not None and dsn is None else None


def describe_ref(ctx: ActionContext, role: Role, dsn: str | None) -> str:
    """For plans: where a role points, without resolving secrets."""
    try:
        env = env_of(ctx)
        ref = dsn or server_of(env, role).dsn
    except Unreachable as exc:
        return f"({exc})"
    if secrets.is_reference(ref):
        return ref  # a secret reference (env:VAR): not resolved while planning
    from erpops.backends.postgres import client as pg

    try:
        return pg.describe(ref, _app_database(env, dsn))
    except InvalidInput:
        return "(malformed DSN)"


class ServerParams(ActionParams):
    server: Role = Field("primary", description="which server of the environment's current topology")
    dsn: str | None = Field(None, description="connect here instead (DSN or secret reference)")


def cancel_event(ctx: ActionContext) -> threading.Event | None:
    event = getattr(ctx, "cancel_event", None)
    return event if isinstance(event, threading.Event) else None
