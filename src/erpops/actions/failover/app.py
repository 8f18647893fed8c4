"""Failover actions on the application side: repoint, record the topology, the write probe, the report.

Part of the ``failover`` family (:mod:`erpops.actions.failover`).
"""

from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.actions.failover._common import PROBES, PROBES_LOCK, describe_ref, env_of, server_of, target
from erpops.errors import InvalidInput, PermanentError, Unreachable
from erpops.records import CURRENT, TOPOLOGY
from erpops.runbook.durations import Duration
from erpops.state import utcnow

DsnPart = Literal["host", "port", "user", "dbname", "dsn", "password"]


def _default_runtime_env() -> dict[str, DsnPart]:
    return {"PGHOST": "host", "PGPORT": "port"}


# --- failover.repoint -------------------------------------------------------------------------


class Repoint(Action):
    """Point the application at the promoted standby.

    1. checks that the standby is promoted (not in recovery) — never points the application at a
       standby;
    2. records the new topology in the state store (kind ``topology``: the standby is the primary, the
       old primary is the standby to re-create), so every later run of erpops uses the new primary;
    3. with a runtime (``runtime.kind`` docker or kubernetes): sets the connection variables of the
       application's services to the new primary (``runtime_env``: variable -> part of its DSN), which
       replaces their instances (a rolling restart); with an empty ``runtime_env`` it only restarts
       them, for an endpoint that does not change (a proxy, a DNS name);
    4. points the run's write probe at the new primary.

    ```yaml
    - id: repoint
      action: failover.repoint
      with: {runtime_env: {HOST: host, PORT: port}, services: [web, worker, cron]}
    ```
    """

    name = "failover.repoint"

    class Params(ActionParams):
        runtime_env: dict[str, DsnPart] = Field(
            default_factory=_default_runtime_env,
            description="service environment variable -> host, port, user, dbname, dsn or password of the new primary",
        )
        services: list[str] | None = Field(None, description="default: every declared service that runs")
        timeout: Duration = Field(300.0, description="longest wait for each service's new instances")

    outputs = {
        "primary": "the new primary",
        "previous_primary": "the old primary (now recorded as the standby to re-create)",
        "services": "runtime services updated",
        "timeline": "the new primary's timeline",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        to = describe_ref(ctx, "standby", None)
        rt = "" if ctx.env.runtime.kind == "none" else f" and restart the {ctx.env.runtime.kind} services"
        return PlanResult(Change.WILL, f"record {to} as primary{rt}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import replication as pg_replication

        env = env_of(ctx)
        old, new = server_of(env, "primary"), server_of(env, "standby")
        new_dsn, new_where = target(ctx, "standby", None)
        _, old_where = target(ctx, "primary", None)
        st = pg_replication.server_status(new_dsn)
        if st.in_recovery:
            raise PermanentError(f"refusing to point the application at {new_where}: it is still a standby")
        if ctx.state is None:
            raise PermanentError("no state store: the new topology cannot be recorded")
        ctx.state.put_record(
            TOPOLOGY,
            env.name,
            CURRENT,
            {
                "primary_dsn": new.dsn,  # as configured: a secret reference stays a reference
                "standby_dsn": old.dsn,
                "primary": new_where,
                "standby": old_where,
                "standby_state": "former primary, fenced: re-create it as a standby of the primary",
                "run_id": ctx.run.id,
                "repointed_at": utcnow().isoformat(),
                "timeline": st.timeline,
                "verified": False,
            },
        )
        ctx.log(f"recorded {new_where} as the primary of {env.name}")
        services = self._runtime(ctx, env, params, new_dsn) if env.runtime.kind != "none" else []
        with PROBES_LOCK:
            probe = PROBES.get(ctx.run.id)
        if probe is not None:
            probe.set_endpoint(new_dsn)
        return {"primary": new_where, "previous_primary": old_where, "services": services, "timeline": st.timeline}

    @staticmethod
    def _runtime(ctx: ActionContext, env: Any, params: Any, dsn: str) -> list[str]:
        from erpops.backends.postgres import client as pg
        from erpops.backends.runtime import open_runtime

        parts = pg.parse_dsn(dsn)
        parts.setdefault("port", "5432")
        values: dict[str, str | None] = {}
        for var, part in params.runtime_env.items():
            value = dsn if part == "dsn" else parts.get(part)
            if value is None:
                raise InvalidInput(f"runtime_env {var}: the new primary's DSN has no {part}")
            if part in ("dsn", "password"):
                ctx.register_secret(value)
            values[var] = value
        done: list[str] = []
        with open_runtime(env) as rt:
            now = rt.current()
            for service in params.services if params.services is not None else list(env.runtime.services):
                rt.spec(service)
                if params.services is None and (service not in now.services or not now.services[service].replicas):
                    continue
                if values:
                    ctx.log(f"setting {', '.join(sorted(values))} on {service}")
                    rt.set_env(service, values, timeout=params.timeout)
                else:
                    ctx.log(f"restarting {service}")
                    rt.restart(service, timeout=params.timeout)
                done.append(service)
        return done


class Record(Action):
    """Mark the topology recorded by ``failover.repoint`` as verified (after the health gate), with
    the promoted server's timeline.

    ```yaml
    - id: record-topology
      action: failover.record_topology
      with: {timeline: "{{ steps.promote.outputs.timeline }}"}
    ```
    """

    name = "failover.record_topology"

    class Params(ActionParams):
        timeline: int | None = Field(None, description="the promoted server's timeline (postgres.promote output)")

    outputs = {"primary": "the primary", "standby": "the standby to re-create", "timeline": "timeline"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, "record the verified topology")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        rec = ctx.state.get_record(TOPOLOGY, ctx.env.name, CURRENT) if ctx.state is not None else None
        if rec is None or rec.data.get("run_id") != ctx.run.id:
            raise PermanentError("this run recorded no topology change (failover.repoint did not run)")
        data = dict(rec.data)
        data.update(verified=True, verified_at=utcnow().isoformat())
        if params.timeline is not None:
            data["timeline"] = params.timeline
        ctx.state.put_record(TOPOLOGY, ctx.env.name, CURRENT, data)
        return {"primary": data["primary"], "standby": data["standby"], "timeline": data.get("timeline")}


# --- the write probe --------------------------------------------------------------------------


class ProbeStart(Action):
    """Start the write probe: a row inserted every ``interval`` into ``erpops_failover_probe`` in the
    application's database through the application's endpoint (the primary), from a background
    thread, until ``failover.probe_stop``. Waits for the first write (the baseline); when the
    primary is already down it starts anyway and the outage counts from the start.

    ```yaml
    - id: probe-start
      action: failover.probe_start
      with: {interval: 200ms}
      on_failure: continue
    ```
    """

    name = "failover.probe_start"

    class Params(ActionParams):
        interval: Duration = Field(0.2, gt=0.0, description="time between two probe writes")
        database: str | None = Field(None, description="default: the application's database")

    outputs = {"endpoint": "where it writes", "first_write_ok": "the baseline write succeeded", "interval": "s"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        where = describe_ref(ctx, "primary", None)
        return PlanResult(Change.WILL, f"write a probe row every {params.interval:g}s to {where}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres.write_probe import WriteProbe

        env = env_of(ctx)
        dsn, where = target(ctx, "primary", None)
        dbname = params.database or server_of(env, "primary").name
        probe = WriteProbe(dsn, dbname, ctx.run.id, params.interval)
        prepared = True
        try:
            probe.prepare()
        except Unreachable as exc:
            prepared = False
            ctx.log(f"the primary does not answer ({exc}); the probe starts anyway", level="warning")
        with PROBES_LOCK:
            earlier = PROBES.pop(ctx.run.id, None)
            PROBES[ctx.run.id] = probe
        if earlier is not None:
            earlier.stop(settle=0)
        probe.start()
        ok = probe.wait_first_success(2.0) if prepared else False
        return {"endpoint": where, "first_write_ok": ok, "interval": params.interval}


class ProbeStop(Action):
    """Stop the write probe (put it in ``finally``) and report what it measured: write-unavailable
    seconds (last successful write before the outage -> first after), acknowledged rows missing on
    the new primary, writes made and failed. Waits up to ``settle`` for an outage in progress to end.

    ```yaml
    finally:
      - id: probe-stop
        action: failover.probe_stop
    ```
    """

    name = "failover.probe_stop"

    class Params(ActionParams):
        settle: Duration = Field(3.0, description="after a repoint, longest wait for a write to the new primary")
        keep_rows: bool = Field(False, description="keep this run's probe rows (deleted by default)")

    outputs = {
        "probe": "false when no probe ran in this run",
        "write_unavailable_seconds": "longest outage: last write before -> first write after",
        "lost_rows": "acknowledged probe rows missing on the final primary",
        "old_primary_only_rows": "probe rows on the old primary missing on the new one",
        "*": "attempts, ok, failed, outages, outage_windows...",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, "stop the write probe and report")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        with PROBES_LOCK:
            probe = PROBES.pop(ctx.run.id, None)
        if probe is None:
            return {"probe": False, "write_unavailable_seconds": None, "lost_rows": None}
        try:
            report = probe.stop(settle=params.settle)
        finally:
            if not params.keep_rows:
                probe.cleanup()
        if report.lost_rows:
            ctx.log(f"{report.lost_rows} acknowledged probe write(s) did not reach the new primary", level="warning")
        return {"probe": True, **report.as_dict()}
