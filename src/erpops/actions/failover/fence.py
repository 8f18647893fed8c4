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

    **Over SQL**, when the server answers — a fence no client can undo: the read-only default for
    every session (``ALTER SYSTEM``, reloaded), the application's database closed to new connections
    (``ALLOW_CONNECTIONS false``), the LOGIN right taken from the roles that own it or are named in
    ``database.app_roles`` (not from the role erpops connects as: its checks need it), and every
    session in that database or of those roles ended. What it changed is recorded on the server
    (``erpops.fence``) first, so ``postgres.unfence`` undoes exactly that. It holds once NEW sessions
    confirm it: read-only, the database refuses a new session, no session left, no named role can log
    in. The database and role changes replicate to the standby: ``postgres.promote`` lifts them
    there (``lift_fence``, the ``sql_fence`` output).

    **By command**, the environment's ``database.fence_command`` (argv, e.g. a script that stops the
    VM or cuts its network): run when the server does not answer or the SQL fence cannot be
    confirmed — and after a SQL fence that held too (infrastructure fencing on top, ``method``
    ``sql+command``); it holds when it exits 0. It gets ``ERPOPS_ENVIRONMENT``, ``ERPOPS_RUN_ID``,
    ``ERPOPS_FENCE_TARGET`` and the server's ``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE``.

    Fails closed: if no fence can be confirmed the step fails (a half-done SQL fence is undone),
    unless ``force`` — then it logs a warning and the run goes on. ``lsn`` (the WAL position after
    fencing) lets ``postgres.promote`` wait until the standby has every commit.

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
        "method": "sql, command, sql+command (both held), already-standby, or none (forced)",
        "sql_fence": "what the SQL fence changed in the catalog: database closed, roles without LOGIN (or null)",
        "roles_kept": "roles named but left able to log in, and why",
        "confirmed": "how fencing was confirmed",
        "terminated_sessions": "client sessions terminated",
        "lsn": "WAL position after fencing (sql method)",
        "command_exit_code": "exit code of the fence command when it ran",
        "forced": "true when the run went on without confirmed fencing",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        where = describe_ref(ctx, params.server, params.dsn)
        env = env_of(ctx)
        dbname, roles, command = self._targets(params, env)
        sql_part = "read-only default" + (f", database {dbname} closed to new sessions" if dbname else "")
        sql_part += ", LOGIN taken from " + (", ".join(roles) + " and " if roles else "") + "the database's owner"
        sql_part += ", sessions ended"
        how = f"over SQL ({sql_part})"
        how += f", then its fence_command {command[0]} too" if command else "; no fence_command configured"
        return PlanResult(Change.WILL, f"fence {where} {how}")

    @staticmethod
    def _targets(params: Any, env: Any) -> tuple[str | None, list[str], list[str] | None]:
        command = params.fence_command
        if command is None and params.dsn is None:
            with contextlib.suppress(Unreachable):
                command = server_of(env, params.server).fence_command
        dbname = params.database or (env.database.name if env.database else None)
        roles = list(env.database.app_roles) if env.database else []
        return dbname, roles, command

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        env = env_of(ctx)
        dsn, where = target(ctx, params.server, params.dsn)
        dbname, roles, command = self._targets(params, env)
        out: dict[str, Any] = {
            "server": where,
            "fenced": False,
            "method": "none",
            "sql_fence": None,
            "roles_kept": {},
            "confirmed": None,
            "terminated_sessions": 0,
            "lsn": None,
            "command_exit_code": None,
            "forced": False,
        }
        reasons: list[str] = []
        sql_applied = sql_held = False
        res = None
        try:
            sql_applied = True  # from here a failure may have left part of it: undone below
            res = pg_replication.fence(
                dsn, database=dbname, roles=roles, terminate=params.terminate, timeout=params.connect_timeout
            )
            if res.already_standby:
                return {**out, "fenced": True, "method": "already-standby", "confirmed": "server is in recovery"}
            out.update(
                terminated_sessions=res.terminated, lsn=res.lsn, sql_fence=res.record(), roles_kept=res.roles_kept
            )
            ok, detail = pg_replication.confirm_fenced(dsn, dbname, res.roles_disabled, timeout=params.connect_timeout)
            if ok:
                sql_held = True
                out.update(fenced=True, method="sql", confirmed=f"new sessions: {detail}")
                ctx.log(f"fenced {where}: {detail}; {res.terminated} session(s) ended")
                for role, why in res.roles_kept.items():
                    ctx.log(f"role {role} can still log in ({why}); database {dbname} is closed to it", level="warning")
            else:
                reasons.append(f"SQL fencing not confirmed: {detail}")
        except TargetUnreachable as exc:
            sql_applied = res is not None  # unreachable before the fence: nothing of it was applied
            reasons.append(f"it does not answer ({exc.message})")
        except PermanentError as exc:
            reasons.append(str(exc))
        if command:
            code, detail = self._run_command(ctx, command, dsn, where, params.command_timeout)
            out["command_exit_code"] = code
            if code == 0:
                ctx.log(f"fenced {where} with its fence_command")
                method = "sql+command" if sql_held else "command"
                confirmed = f"{out['confirmed']}; fence_command exited 0" if sql_held else "fence_command exited 0"
                return {**out, "fenced": True, "method": method, "confirmed": confirmed}
            if sql_held:
                ctx.log(f"fence_command {command[0]} {detail}; the SQL fence holds", level="warning")
            reasons.append(f"fence_command {command[0]} {detail}")
        elif not sql_held:
            reasons.append("no fence_command is configured for it")
        if sql_held:
            return out
        why = "; ".join(reasons)
        if params.force:
            ctx.log(f"--force: going on although {where} is not confirmed fenced: {why}", level="warning")
            return {**out, "forced": True, "confirmed": None}
        if sql_applied:
            with contextlib.suppress(Unreachable, PermanentError, TemporaryError):
                pg_replication.unfence(dsn, out["sql_fence"])
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
    """Undo ``postgres.fence`` (its ``undo``) exactly: what the SQL fence recorded on the old primary
    (and ``sql_fence``, its output) is opened again — the database accepts connections, the roles
    may log in, the read-only default and the record are reset — only while the standby is still in
    recovery and the application was not repointed, so that two primaries never accept writes. A
    fence by command cannot be undone here (after ``sql+command`` the SQL part is undone and the
    step says so).

    ```yaml
    undo:
      action: postgres.unfence
      with: {method: "{{ steps.fence.outputs.method }}", sql_fence: "{{ steps.fence.outputs.sql_fence }}"}
    ```
    """

    name = "postgres.unfence"

    class Params(ServerParams):
        method: str = Field("sql", description="the fence step's method output")
        sql_fence: dict[str, Any] | None = Field(None, description="the fence step's sql_fence output")

    outputs = {
        "unfenced": "true when the SQL fence was undone",
        "undone": "what was opened again",
        "server": "the server",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, f"reset read-only on {describe_ref(ctx, params.server, params.dsn)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        dsn, where = target(ctx, params.server, params.dsn)
        if params.method in ("none", "already-standby"):
            return {"unfenced": False, "undone": [], "server": where}
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
        st = pg_replication.server_status(dsn, timeout=2.0)
        if not st.in_recovery and not st.fenced:  # nothing of a fence on it (undone, or another server now)
            ctx.log(f"{where} carries no fence: nothing to undo")
            return {"unfenced": False, "undone": [], "server": where}
        undone = pg_replication.unfence(dsn, params.sql_fence)
        ctx.log(f"unfenced {where}: {', '.join(undone)}; it accepts writes again")
        if params.method == "sql+command":
            ctx.log(f"{where} was also fenced by its fence_command: undo that by hand", level="warning")
        return {"unfenced": True, "undone": undone, "server": where}
