"""``postgres.replication_status``, ``postgres.promote``, ``postgres.wait_writable``: the
PostgreSQL side of a failover (part of the ``failover`` family, :mod:`erpops.actions.failover`)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from erpops.actions.base import Action, ActionContext, Change, PlanResult
from erpops.actions.failover._common import Role, ServerParams, cancel_event, describe_ref, env_of, target
from erpops.errors import InvalidInput, PermanentError, TemporaryError, Unreachable
from erpops.records import CURRENT, TOPOLOGY
from erpops.runbook.durations import Duration

# --- postgres.replication_status --------------------------------------------------------------


class ReplicationStatus(Action):
    """Replication state of a server. On a primary: its standbys, their state and lag in bytes. On
    a standby: in recovery, received and replayed WAL positions, replay lag in seconds (0 when
    everything received is replayed), and bytes behind the primary when the primary answers.

    With ``expect`` and ``max_lag`` it is a preflight that refuses, with the numbers: a server that
    is not what was expected (``force`` does not override that), or a standby lagging more than
    ``max_lag`` (unless ``force``).

    ```yaml
    - id: preflight
      action: postgres.replication_status
      with: {server: standby, expect: standby, max_lag: 5s, force: "{{ params.force }}"}
    ```
    """

    name = "postgres.replication_status"
    read_only = True

    class Params(ServerParams):
        server: Role = Field("standby", description="which server of the environment's current topology")
        expect: Role | None = Field(None, description="refuse unless the server has this role")
        max_lag: Duration | None = Field(None, description="refuse when the standby's replay lag is larger")
        force: bool = Field(False, description="proceed past the lag limit (logged)")
        timeout: Duration = Field(3.0, description="connect timeout")

    outputs = {
        "server": "where the server is (no password)",
        "role": "primary or standby",
        "in_recovery": "true on a standby",
        "timeline": "the server's timeline",
        "receive_lsn": "standby: last WAL position received",
        "replay_lsn": "standby: last WAL position replayed",
        "replay_lag_seconds": "standby: seconds of replay lag (0 when caught up)",
        "lag_bytes": "standby: bytes behind the primary's current position (when the primary answers)",
        "replay_paused": "standby: WAL replay pause state",
        "receiver_status": "standby: WAL receiver status (streaming...)",
        "standbys": "primary: pg_stat_replication rows with lag_bytes",
        "primary_reachable": "standby: whether the primary answered",
        "forced": "true when a refusal was overridden by force",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        what = f"replication status of {params.server} {describe_ref(ctx, params.server, params.dsn)}"
        if params.max_lag is not None:
            what += f" (refuse over {params.max_lag:g}s replay lag)"
        return PlanResult(Change.NONE, what)

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        dsn, where = target(ctx, params.server, params.dsn)
        st = pg_replication.server_status(dsn, timeout=params.timeout)
        out: dict[str, Any] = {"server": where, **st.as_dict(), "primary_reachable": None, "forced": False}
        out.pop("system_identifier", None)
        if params.expect is not None and st.role != params.expect:
            raise PermanentError(self._wrong_role(ctx, params, where, st))
        if st.in_recovery and params.dsn is None and params.server == "standby":
            self._compare_with_primary(ctx, st, out, where)
        if st.in_recovery and params.max_lag is not None:
            problem = self._lag_problem(st, params.max_lag, out["lag_bytes"])
            if problem:
                numbers = (
                    f"received {st.receive_lsn}, replayed {st.replay_lsn}, "
                    f"{out['lag_bytes'] if out['lag_bytes'] is not None else 'unknown'} bytes behind the primary, "
                    f"WAL receiver {st.receiver_status}, replay {st.replay_paused}"
                )
                if not params.force:
                    raise PermanentError(
                        f"standby {where}: {problem} ({numbers}); promoting it now would lose those transactions",
                        hint="wait until it catches up, raise --max-lag, or pass --force to accept the loss",
                    )
                ctx.log(f"--force: promoting past the lag limit: {problem} ({numbers})", level="warning")
                out["forced"] = True
        return out

    @staticmethod
    def _lag_problem(st: Any, max_lag: float, lag_bytes: int | None) -> str | None:
        if lag_bytes and st.receiver_status != "streaming":
            # replayed all it received, but it receives nothing from a primary that is ahead of it
            return f"it does not receive WAL (receiver: {st.receiver_status}) from a primary {lag_bytes} bytes ahead"
        if st.replay_lag_seconds is None:
            return "replay lag is unknown (nothing replayed yet and WAL still to replay)"
        if st.replay_lag_seconds > max_lag:
            return f"replay lag {st.replay_lag_seconds:.3f}s is over the limit of {max_lag:g}s"
        return None

    @staticmethod
    def _compare_with_primary(ctx: ActionContext, st: Any, out: dict[str, Any], where: str) -> None:
        from erpops.backends.postgres import replication as pg_replication

        try:
            pdsn, pwhere = target(ctx, "primary", None)
            prim = pg_replication.server_status(pdsn, timeout=2.0)
        except (Unreachable, InvalidInput) as exc:
            out["primary_reachable"] = False
            ctx.log(f"primary does not answer ({exc}); lag measured on the standby alone")
            return
        out["primary_reachable"] = True
        if prim.system_identifier != st.system_identifier:
            raise Unreachable(
                f"standby {where} is not a copy of primary {pwhere} (system identifiers differ); "
                "check database.dsn and standby.dsn in erpops.yaml"
            )
        if not prim.in_recovery and prim.current_lsn and st.replay_lsn:
            out["lag_bytes"] = max(pg_replication.lsn_diff(pdsn, prim.current_lsn, st.replay_lsn), 0)

    @staticmethod
    def _wrong_role(ctx: ActionContext, params: Any, where: str, st: Any) -> str:
        from erpops.backends.postgres import replication as pg_replication

        if params.expect == "primary":
            return f"{where} is in recovery (a standby), not a primary"
        rec = ctx.state.get_record(TOPOLOGY, ctx.env.name, CURRENT) if ctx.state is not None else None
        msg = f"{where} is not a standby: it is not in recovery, so there is nothing to promote"
        if params.dsn is not None:
            return msg
        if st.fenced:
            msg += ". It is a former primary that a failover fenced"
            if rec is not None:
                d = rec.data
                msg += (
                    f" (failover run {d.get('run_id')}, {str(d.get('repointed_at', ''))[:19]}; the primary is now "
                    f"{d.get('primary')})"
                )
            return msg + (
                ". Re-create it as a standby of the new primary before failing over again (`erpops sandbox "
                "reseed-standby` on the sandbox; pg_basebackup or pg_rewind elsewhere)"
            )
        # an unfenced primary where the record says standby: promoted, and the record not written
        try:
            pdsn, pwhere = target(ctx, "primary", None)
            prim = pg_replication.server_status(pdsn, timeout=2.0)
            pfacts = "in recovery" if prim.in_recovery else ("fenced" if prim.fenced else "a primary too")
            pfacts += f", timeline {prim.timeline}"
        except (Unreachable, InvalidInput):
            pwhere, prim, pfacts = describe_ref(ctx, "primary", None), None, "not answering"
        msg += f" — it is a primary on timeline {st.timeline}, while the recorded topology names {pwhere} ({pfacts})"
        msg += " the primary"
        unfinished = [
            r
            for r in (ctx.state.list_runs(environment=ctx.env.name, runbook="failover") if ctx.state else [])
            if r.state in ("running", "interrupted", "failed") and r.id != ctx.run.id
        ]
        if unfinished and (prim is None or prim.fenced or prim.in_recovery):
            r = unfinished[0]
            msg += (
                f". Failover run {r.id} ({r.state}, started {r.started_at:%Y-%m-%d %H:%M:%S}) promoted it and did not "
                f"finish: `erpops runs resume {r.id}` finishes it (repoints the application, records the topology)"
            )
        elif prim is not None and not prim.in_recovery and not prim.fenced:
            msg += ". Both servers take writes (two primaries): decide by hand which one is the primary"
        return msg


# --- promote / wait_writable ------------------------------------------------------------------


class Promote(Action):
    """Promote the standby with ``pg_promote(wait => true)``. With ``wait_for_lsn`` (the fence's
    ``lsn``) it first waits until the standby has replayed that position — every commit of the
    fenced primary — and refuses when it does not within ``catchup_timeout`` (unless ``force``).
    With ``lift_fence`` (the fence's ``sql_fence``) it then opens again on the promoted server what
    the old primary's fence closed and replication carried over: the application's database and the
    LOGIN right of its roles.

    ```yaml
    - id: promote
      action: postgres.promote
      with:
        server: standby
        wait_for_lsn: "{{ steps.fence.outputs.lsn }}"
        lift_fence: "{{ steps.fence.outputs.sql_fence }}"
        force: "{{ params.force }}"
    ```
    """

    name = "postgres.promote"

    class Params(ServerParams):
        server: Role = Field("standby", description="which server of the environment's current topology")
        wait_for_lsn: str | None = Field(None, description="replay at least up to here first")
        catchup_timeout: Duration = Field(30.0, description="longest wait for the replay of wait_for_lsn")
        wait_seconds: int = Field(60, ge=1, le=3600, description="pg_promote's wait_seconds")
        force: bool = Field(False, description="promote even if the standby did not catch up")
        lift_fence: dict[str, Any] | None = Field(
            None, description="the fence's sql_fence output: reopened on the promoted server"
        )

    outputs = {
        "server": "the promoted server",
        "timeline": "its new timeline",
        "lsn": "WAL position right after promotion",
        "promote_seconds": "time pg_promote took",
        "caught_up": "whether it had replayed wait_for_lsn (null when not asked)",
        "catchup_seconds": "time spent waiting for replay",
        "behind_bytes": "bytes still to replay when promoted",
        "fence_lifted": "what of the old primary's replicated fence was reopened on the promoted server",
        "already_promoted": "true when an earlier attempt of this run had promoted it (killed before it said so)",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"promote {describe_ref(ctx, params.server, params.dsn)} (pg_promote)")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        dsn, where = target(ctx, params.server, params.dsn)
        st = pg_replication.server_status(dsn)
        other = self._other(ctx, params)
        if not st.in_recovery:
            return self._promoted_already(ctx, params, dsn, where, st, other)
        ost = other[2] if other is not None else None
        if params.lift_fence and other is not None and ost is not None and not ost.in_recovery and not ost.fenced:
            # this run fenced it over SQL, and the fence is gone (the server re-created? unfenced?)
            msg = f"{other[1]} is a primary that takes writes again (its fence is gone)"
            if not params.force:
                raise PermanentError(
                    f"not promoting {where}: {msg}; promoting would make two primaries",
                    hint="check which server is the primary (`erpops env check`); --force promotes anyway",
                )
            ctx.log(f"--force: {msg}; promoting anyway", level="warning")
        out: dict[str, Any] = {
            "server": where,
            "caught_up": None,
            "catchup_seconds": 0.0,
            "behind_bytes": None,
            "already_promoted": False,
        }
        if params.wait_for_lsn:
            cu = pg_replication.wait_replayed(dsn, params.wait_for_lsn, params.catchup_timeout, cancel_event(ctx))
            out.update(caught_up=cu.caught_up, catchup_seconds=round(cu.seconds, 4), behind_bytes=cu.behind_bytes)
            if cu.resumed_replay:
                ctx.log("WAL replay was paused on the standby; resumed it before promoting", level="warning")
            if not cu.caught_up:
                msg = (
                    f"standby {where} replayed up to {cu.replay_lsn} but the fenced primary is at "
                    f"{params.wait_for_lsn} ({cu.behind_bytes} bytes behind) after {cu.seconds:.1f}s"
                )
                if not params.force:
                    raise PermanentError(
                        msg + "; promoting now would lose those commits", hint="pass --force to accept"
                    )
                ctx.log(f"--force: {msg}; promoting anyway", level="warning")
        p = pg_replication.promote(dsn, params.wait_seconds)
        ctx.log(f"promoted {where} in {p.seconds:.3f}s (timeline {p.timeline})")
        lifted = pg_replication.lift_replicated_fence(dsn, params.lift_fence)
        if lifted:
            ctx.log(f"reopened on {where} what the old primary's fence closed: {', '.join(lifted)}")
        return {
            **out,
            "timeline": p.timeline,
            "lsn": p.lsn,
            "promote_seconds": round(p.seconds, 4),
            "fence_lifted": lifted,
        }

    @staticmethod
    def _other(ctx: ActionContext, params: Params) -> tuple[str, str, Any] | None:
        """(DSN, description, status or None when it does not answer) of the other server of the
        topology; None when the step names an explicit DSN (there is no "other")."""
        from erpops.backends.postgres import replication as pg_replication

        if params.dsn is not None:
            return None
        role: Role = "primary" if params.server == "standby" else "standby"
        try:
            odsn, owhere = target(ctx, role, None)
        except (Unreachable, InvalidInput):
            return None
        try:
            return odsn, owhere, pg_replication.server_status(odsn, timeout=2.0)
        except Unreachable:
            return odsn, owhere, None

    def _promoted_already(
        self, ctx: ActionContext, params: Params, dsn: str, where: str, st: Any, other: tuple[str, str, Any] | None
    ) -> dict[str, Any]:
        """The server to promote is a primary already. After a fence (``wait_for_lsn`` or
        ``lift_fence``: this is a failover) it may be this run's own work, its earlier attempt killed
        in the middle of promoting: then it is finished (the fence lifted there), provided the facts
        say so — the server is not fenced itself, and the other server is a copy of it on an older
        timeline that is fenced, a standby (re-created) or gone. Anything else is refused, naming
        what each server is."""
        from erpops.backends.postgres import replication as pg_replication

        def facts(s: Any) -> str:
            what = "a standby" if s.in_recovery else ("a fenced former primary" if s.fenced else "a primary")
            return f"{what} on timeline {s.timeline}"

        ostatus = other[2] if other else None
        said = f"{where} is {facts(st)}"
        if other is not None:
            said += f"; {other[1]} is " + (facts(ostatus) if ostatus is not None else "not answering")
        after_fence = bool(params.wait_for_lsn or params.lift_fence)
        problem = None
        if not after_fence:
            problem = "it is already a primary"
        elif st.fenced:
            problem = "it is the former primary a failover fenced (the recorded topology is inverted)"
        elif ostatus is not None and ostatus.system_identifier != st.system_identifier:
            problem = "the two servers are not copies of one another"
        elif ostatus is not None and not ostatus.in_recovery and not ostatus.fenced:
            problem = "both servers take writes (two primaries)"
        elif ostatus is not None and not ostatus.in_recovery and (ostatus.timeline or 0) >= (st.timeline or 0):
            problem = "it is not on a newer timeline than the fenced primary"
        if problem is not None:
            raise PermanentError(f"nothing promoted: {said}: {problem}")
        caught_up, behind = None, None
        switch = pg_replication.timeline_switch(dsn, st.timeline or 0)
        if params.wait_for_lsn and switch:
            behind = max(pg_replication.lsn_diff(dsn, params.wait_for_lsn, switch), 0)
            caught_up = behind == 0
            if not caught_up and not params.force:
                raise PermanentError(
                    f"{where} was promoted (timeline {st.timeline} from {switch}) {behind} bytes before the fenced "
                    f"primary's last position {params.wait_for_lsn}: those commits are not on it",
                    hint="pass --force to accept the loss and finish the failover",
                )
        ctx.log(
            f"{said}: an earlier attempt of this run promoted it (killed before it could say so); finishing",
            level="warning",
        )
        lifted = pg_replication.lift_replicated_fence(dsn, params.lift_fence)
        if lifted:
            ctx.log(f"reopened on {where} what the old primary's fence closed: {', '.join(lifted)}")
        return {
            "server": where,
            "timeline": st.timeline,
            "lsn": st.current_lsn,
            "promote_seconds": None,
            "caught_up": caught_up,
            "catchup_seconds": 0.0,
            "behind_bytes": behind,
            "fence_lifted": lifted,
            "already_promoted": True,
        }


class WaitWritable(Action):
    """Wait until a server takes writes: a new session in the database creates and rolls back a
    temporary table (fails on a standby and on a read-only server).

    ```yaml
    - id: writable
      action: postgres.wait_writable
      with: {server: primary, timeout: 30s}
    ```
    """

    name = "postgres.wait_writable"
    read_only = True

    class Params(ServerParams):
        database: str | None = Field(None, description="default: the application's database")
        timeout: Duration = Field(30.0, description="fail when it does not take writes within this")
        interval: Duration = Field(0.1, description="time between two checks")
        after_promotion: bool = Field(
            False,
            description=(
                "the step follows this run's promotion and repoint: the plan names the standby being promoted "
                "(the primary once the run repointed), not the server being fenced"
            ),
        )

    outputs = {"server": "the server", "waited": "seconds waited", "checks": "checks made"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if params.after_promotion and params.dsn is None and params.server == "primary":
            promoted = describe_ref(ctx, "standby", None)
            return PlanResult(Change.NONE, f"wait until the promoted server {promoted} takes writes")
        return PlanResult(Change.NONE, f"wait until {describe_ref(ctx, params.server, params.dsn)} takes writes")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        env = env_of(ctx)
        from erpops.backends.postgres import client as pg

        dsn, _ = target(ctx, params.server, params.dsn)
        dbname = params.database or (env.database.name if env.database else None)
        where = pg.describe(dsn, dbname)
        start = time.monotonic()
        checks = 0
        while True:
            ctx.check_cancelled()
            checks += 1
            why = pg_replication.write_check(dsn, dbname, timeout=min(params.timeout, 2.0) or 1.0)
            if why is None:
                return {"server": where, "waited": round(time.monotonic() - start, 4), "checks": checks}
            if time.monotonic() - start + params.interval > params.timeout:
                raise TemporaryError(f"{where} still does not take writes after {params.timeout:g}s: {why}")
            time.sleep(params.interval)
