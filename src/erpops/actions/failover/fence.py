"""Fencing the old primary before anything is promoted, and undoing it while that is still safe.

Part of the ``failover`` family (:mod:`erpops.actions.failover`).
"""

import contextlib
from typing import Any

from pydantic import Field

from erpops.actions.base import Action, ActionContext, Change, PlanResult
from erpops.actions.failover._common import ServerParams, describe_ref, env_of, server_of, target
from erpops.errors import InvalidInput, PermanentError, TargetUnreachable, TemporaryError, Unreachable
from erpops.records import CURRENT, TOPOLOGY
from erpops.runbook.durations import Duration

# --- fence / unfence --------------------------------------------------------------------------


class Fence(Action):
    """Make the old primary refuse writes, and confirm it — before anything is promoted.

    When the server answers: ``ALTER SYSTEM SET default_transaction_read_only = on``,
    ``pg_reload_conf()`` and termination of its client sessions; fenced once a NEW session, as the
    application's user in the application's database, is read-only and cannot create a table. When
    it does not answer (or SQL fencing cannot be confirmed): the environment's
    ``database.fence_command`` (argv, e.g. a script that stops the VM or cuts its network), fenced
    when it exits 0. It gets ``ERPOPS_ENVIRONMENT``, ``ERPOPS_RUN_ID``, ``ERPOPS_FENCE_TARGET`` and
    the server's ``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE`` in its environment.

    Fails closed: if fencing cannot be confirmed the step fails (a half-done SQL fence is reverted),
    unless ``force`` — then it logs a warning and the run goes on. ``lsn`` (the WAL position after
    fencing) lets ``postgres.promote`` wait until the standby has every commit.

    SQL fencing stops well-behaved clients (Odoo); a client that sets its own
    ``default_transaction_read_only = off`` can still write — use a ``fence_command`` for hard fencing.

    ```yaml
    - id: fence
      action: postgres.fence
      with: {server: primary, force: "{{ params.force }}"}
      undo: {action: postgres.unfence, with: {method: "{{ steps.fence.outputs.method }}"}}
    ```
    """

    name = "postgres.fence"

    class Params(ServerParams):
        database: str | None = Field(None, description="database the confirming session opens (default: the app's)")
        fence_command: list[str] | None = Field(None, description="default: the server's fence_command")
        terminate: bool = Field(True, description="terminate the server's client sessions")
        connect_timeout: Duration = Field(3.0, description="give up connecting after this long")
        command_timeout: Duration = Field(120.0, description="kill the fence command after this long")
        force: bool = Field(False, description="go on when fencing cannot be confirmed (split-brain risk)")

    outputs = {
        "server": "the fenced server",
        "fenced": "true when confirmed",
        "method": "sql, command, already-standby, or none (forced)",
        "confirmed": "how fencing was confirmed",
        "terminated_sessions": "client sessions terminated",
        "lsn": "WAL position after fencing (sql method)",
        "command_exit_code": "exit code of the fence command when it ran",
        "forced": "true when the run went on without confirmed fencing",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        where = describe_ref(ctx, params.server, params.dsn)
        return PlanResult(Change.WILL, f"fence {where}: read-only + terminate sessions, or its fence_command")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        env = env_of(ctx)
        dsn, where = target(ctx, params.server, params.dsn)
        command = params.fence_command
        if command is None and params.dsn is None:
            command = server_of(env, params.server).fence_command
        dbname = params.database or (env.database.name if env.database else None)
        out: dict[str, Any] = {
            "server": where,
            "fenced": False,
            "method": "none",
            "confirmed": None,
            "terminated_sessions": 0,
            "lsn": None,
            "command_exit_code": None,
            "forced": False,
        }
        reasons: list[str] = []
        sql_applied = False
        try:
            res = pg_replication.fence(dsn, terminate=params.terminate, timeout=params.connect_timeout)
            if res.already_standby:
                return {**out, "fenced": True, "method": "already-standby", "confirmed": "server is in recovery"}
            sql_applied = True
            out.update(terminated_sessions=res.terminated, lsn=res.lsn)
            ok, detail = pg_replication.confirm_read_only(dsn, dbname, timeout=params.connect_timeout)
            if ok:
                ctx.log(f"fenced {where}: read-only, {res.terminated} session(s) terminated")
                return {**out, "fenced": True, "method": "sql", "confirmed": f"new session read-only ({detail})"}
            reasons.append(f"SQL fencing not confirmed: {detail}")
        except TargetUnreachable as exc:
            reasons.append(f"it does not answer ({exc.message})")
        except PermanentError as exc:
            reasons.append(str(exc))
        if command:
            code, detail = self._run_command(ctx, command, dsn, where, params.command_timeout)
            out["command_exit_code"] = code
            if code == 0:
                ctx.log(f"fenced {where} with its fence_command")
                return {**out, "fenced": True, "method": "command", "confirmed": "fence_command exited 0"}
            reasons.append(f"fence_command {command[0]} {detail}")
        else:
            reasons.append("no fence_command is configured for it")
        why = "; ".join(reasons)
        if params.force:
            ctx.log(f"--force: going on although {where} is not confirmed fenced: {why}", level="warning")
            return {**out, "forced": True, "confirmed": None}
        if sql_applied:
            with contextlib.suppress(Unreachable, PermanentError, TemporaryError):
                pg_replication.unfence(dsn)
        raise PermanentError(
            f"cannot confirm that the old primary {where} refuses writes: {why}; stopped before promoting "
            "(nothing was promoted)",
            hint="fix the cause, set database.fence_command in erpops.yaml, or pass --force if you are sure it "
            "cannot accept writes",
        )

    @staticmethod
    def _run_command(ctx: ActionContext, argv: list[str], dsn: str, where: str, timeout: float) -> tuple[int, str]:
        import os

        from erpops.backends.postgres import client as pg

        env = {k: v for k, v in os.environ.items()}
        with contextlib.suppress(InvalidInput):
            env.update({k: v for k, v in pg.libpq_env(dsn).items() if k != "PGPASSWORD"})
        env.update(ERPOPS_ENVIRONMENT=ctx.env.name, ERPOPS_RUN_ID=ctx.run.id, ERPOPS_FENCE_TARGET=where)
        try:
            res = ctx.run_process(argv, env=env, timeout=timeout)
        except (OSError, PermanentError, TemporaryError) as exc:
            return -1, f"could not run: {exc}"
        last = (res.stderr_tail or res.stdout_tail).strip().splitlines()[-1:] or [""]
        return res.returncode, f"exited with code {res.returncode}" + (f": {last[0]}" if last[0] else "")


class Unfence(Action):
    """Undo ``postgres.fence`` (its ``undo``): reset the read-only default of the old primary — only
    while the standby is still in recovery and the application was not repointed, so that two
    primaries never accept writes. A fence by command cannot be undone here.

    ```yaml
    undo: {action: postgres.unfence, with: {method: "{{ steps.fence.outputs.method }}"}}
    ```
    """

    name = "postgres.unfence"

    class Params(ServerParams):
        method: str = Field("sql", description="the fence step's method output")

    outputs = {"unfenced": "true when the read-only default was reset", "server": "the server"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, f"reset read-only on {describe_ref(ctx, params.server, params.dsn)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        dsn, where = target(ctx, params.server, params.dsn)
        if params.method in ("none", "already-standby"):
            return {"unfenced": False, "server": where}
        if params.method == "command":
            raise PermanentError(
                f"{where} was fenced by its fence_command; erpops cannot undo that: restore it by hand"
            )
        rec = ctx.state.get_record(TOPOLOGY, ctx.env.name, CURRENT) if ctx.state is not None else None
        if rec is not None and rec.data.get("run_id") == ctx.run.id:
            raise PermanentError(f"not unfencing {where}: this run already repointed the application")
        sdsn, swhere = target(ctx, "standby", None)
        try:
            still_standby = pg_replication.server_status(sdsn, timeout=2.0).in_recovery
        except Unreachable:
            still_standby = False
        if not still_standby:
            raise PermanentError(
                f"not unfencing {where}: the standby {swhere} is not (or no longer known to be) in recovery; "
                "two primaries must never accept writes — decide by hand which one is the primary"
            )
        pg_replication.unfence(dsn)
        ctx.log(f"unfenced {where}: it accepts writes again")
        return {"unfenced": True, "server": where}
