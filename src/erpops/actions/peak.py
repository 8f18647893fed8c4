"""Scale-for-peak actions: database headroom, deferring scheduled jobs, and remembering the peak.

A peak is remembered in the state store as one record (kind ``peak``, key ``active``) holding the
replicas before the peak, the peak replicas, when the revert is due (``until``) and the Odoo
scheduled jobs (``ir_cron``) that erpops deactivated — only those, so a revert reactivates exactly
what erpops turned off and never a job that was already inactive.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.errors import InvalidInput, PermanentError, Unreachable
from erpops.runbook.durations import Duration, parse_duration
from erpops.state import utcnow

KIND, KEY = "peak", "active"


def _record(ctx: ActionContext) -> dict[str, Any] | None:
    if ctx.state is None:
        raise PermanentError("no state store: a peak cannot be remembered or reverted")
    rec = ctx.state.get_record(KIND, ctx.env.name, KEY)
    return dict(rec.data) if rec else None


def _save(ctx: ActionContext, data: dict[str, Any]) -> None:
    ctx.state.put_record(KIND, ctx.env.name, KEY, data)


def parse_until(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive means local time) or a duration from now (``4h``, ``90m``), in UTC."""
    now = now or utcnow()
    try:
        return now + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--until {text!r}: use an ISO time (2026-11-28T18:00+01:00) or a duration (4h)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.astimezone(UTC)


def describe_time(when: datetime) -> str:
    """``2026-12-08 09:00 UTC (10:00 CET here)``: the moment both ways, where they differ (a plan read
    at 3 a.m. leaves no doubt which 10:00 was meant)."""
    utc = when.astimezone(UTC)
    local = when.astimezone()
    said = f"{utc:%Y-%m-%d %H:%M} UTC"
    if local.utcoffset() != timedelta(0):
        day = "" if local.date() == utc.date() else f"{local:%Y-%m-%d} "
        zone = local.tzname() or local.strftime("%z")
        said += f" ({day}{local:%H:%M} {zone} here)"
    return said


def _due(until: str) -> bool:
    return datetime.fromisoformat(until) <= utcnow()


class _Db(ActionParams):
    dsn: str | None = Field(None, description="default: the environment's database.dsn")
    database: str | None = Field(None, description="default: the environment's database.name")


def _dsn(params: _Db, ctx: ActionContext) -> tuple[str, str | None]:
    db = ctx.env.database
    if params.dsn is None and db is None:
        raise Unreachable(f"environment {ctx.env.name!r} has no database (database.dsn in erpops.yaml)")
    dsn = ctx.resolve_secret(params.dsn or db.dsn)
    return dsn, params.database or (db.name if db else None)


class Headroom(Action):
    """Refuse a peak the database cannot carry: the sum over services of replicas x Odoo workers x
    ``db_maxconn`` must fit in ``max_connections`` minus the superuser-reserved connections and
    ``reserve``. Services not named keep their current replicas.

    ```yaml
    - id: headroom
      action: peak.headroom
      with: {replicas: {web: 6, worker: 2}, reserve: 10}
    ```
    """

    name = "peak.headroom"
    read_only = True

    class Params(_Db):
        replicas: dict[str, int | None] = Field(description="peak replicas per service")
        reserve: int = Field(10, ge=0, description="connections kept free for everything else")

    outputs = {
        "needed": "connections the peak can open",
        "available": "max_connections - reserved - reserve",
        "max_connections": "the server's max_connections",
        "services": "per service: replicas, workers, db_maxconn, connections",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, "check database connection headroom for " + str(params.replicas))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import peak as peak_sql
        from erpops.backends.runtime import open_runtime

        missing = [s for s, n in params.replicas.items() if n is None]
        if missing:
            raise InvalidInput(f"no peak replica count for {', '.join(missing)}: give --replicas N (or --revert)")
        with open_runtime(ctx.env) as rt:
            for s in params.replicas:
                rt.spec(s)
            now = rt.current().replicas
            per: dict[str, dict[str, int]] = {}
            for service, spec in rt.specs.items():
                replicas = params.replicas.get(service)
                n = int(replicas) if replicas is not None else now.get(service, 0)
                workers = max(1, spec.workers if spec.workers is not None else ctx.env.odoo.workers)
                maxconn = spec.db_maxconn if spec.db_maxconn is not None else ctx.env.odoo.db_maxconn
                per[service] = {
                    "replicas": n,
                    "workers": workers,
                    "db_maxconn": maxconn,
                    "connections": n * workers * maxconn,
                }
        dsn, dbname = _dsn(params, ctx)
        conns = peak_sql.connections(dsn, dbname)
        reserved = conns.superuser_reserved + conns.reserved + params.reserve
        available = conns.max_connections - reserved
        needed = sum(p["connections"] for p in per.values())
        terms = " + ".join(
            f"{s} {p['replicas']} x {p['workers']} workers x {p['db_maxconn']} db_maxconn" for s, p in per.items()
        )
        if needed > available:
            raise PermanentError(
                f"not enough database headroom: {terms} = {needed} connections > max_connections "
                f"{conns.max_connections} - reserved {reserved} = {available}; lower the replicas or db_maxconn, "
                "or raise max_connections"
            )
        ctx.log(f"headroom ok: {needed} <= {available} ({terms})")
        return {"needed": needed, "available": available, "max_connections": conns.max_connections, "services": per}


class Begin(Action):
    """Remember a peak: the replicas before it (kept from the first run when a peak is already
    active), the peak replicas and when the revert is due.

    ```yaml
    - id: begin
      action: peak.begin
      with: {replicas: {web: 6}, until: "{{ params.until }}"}
      undo: {action: peak.end, with: {run_id: "{{ run.id }}"}}
    ```
    """

    name = "peak.begin"

    class Params(ActionParams):
        replicas: dict[str, int]
        until: str | None = Field(None, description="ISO time or duration from now; null: until --revert")

    outputs = {"previous": "replicas before the peak", "until": "when the revert is due (UTC, ISO)"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if not params.until:
            return PlanResult(Change.WILL, "remember the peak (until --revert)")
        try:
            when = parse_until(params.until)
        except InvalidInput as exc:
            return PlanResult(Change.FAILS, str(exc))
        if when <= utcnow():
            return PlanResult(Change.FAILS, f"--until {params.until!r} is in the past")
        return PlanResult(Change.WILL, f"remember the peak until {describe_time(when)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.runtime import open_runtime

        until = parse_until(params.until).isoformat() if params.until else None
        if until and _due(until):
            raise InvalidInput(f"--until {params.until!r} is in the past")
        data = _record(ctx)
        if data is None:
            with open_runtime(ctx.env) as rt:
                now = rt.current().replicas
            data = {"run_id": ctx.run.id, "started_at": utcnow().isoformat(), "previous": {}, "crons": []}
            data["previous"] = {s: now.get(s, 0) for s in params.replicas}
        else:
            ctx.log(f"a peak is already active since {data.get('started_at')}; keeping its previous replicas")
            with open_runtime(ctx.env) as rt:
                now = rt.current().replicas
            for s in params.replicas:
                data["previous"].setdefault(s, now.get(s, 0))
        data["replicas"] = {**data.get("replicas", {}), **params.replicas}
        data["until"] = until
        _save(ctx, data)
        return {"previous": data["previous"], "until": until}


class Status(Action):
    """Whether a peak is active, its replicas before and during, and whether its revert is due.

    ```yaml
    - id: status
      action: peak.status
    ```
    """

    name = "peak.status"
    read_only = True

    outputs = {
        "active": "a peak is remembered",
        "due": "active and its --until has passed",
        "until": "when the revert is due (null: only on --revert)",
        "previous": "replicas before the peak",
        "replicas": "peak replicas",
        "crons": "names of the jobs erpops deferred",
    }

    def plan(self, params: ActionParams, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, "read the active peak")

    def apply(self, params: ActionParams, ctx: ActionContext) -> dict[str, Any]:
        data = _record(ctx) or {}
        until = data.get("until")
        return {
            "active": bool(data),
            "due": bool(data) and until is not None and _due(until),
            "until": until,
            "previous": data.get("previous", {}),
            "replicas": data.get("replicas", {}),
            "crons": [c["name"] for c in data.get("crons", [])],
        }


class End(Action):
    """Forget the active peak (after a revert). With ``run_id``, only if that run started it.

    ```yaml
    - id: end
      action: peak.end
    ```
    """

    name = "peak.end"

    class Params(ActionParams):
        run_id: str | None = None

    outputs = {"ended": "true when a peak record was removed"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, "forget the active peak")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        data = _record(ctx)
        if data is None or (params.run_id and data.get("run_id") != params.run_id):
            return {"ended": False}
        if data.get("crons"):
            raise PermanentError(f"the peak still has deferred jobs ({len(data['crons'])}): revert them first")
        ctx.state.delete_record(KIND, ctx.env.name, KEY)
        return {"ended": True}


class DeferCrons(Action):
    """Deactivate non-essential Odoo scheduled jobs for the peak, by name or XML id, and remember
    exactly which ones erpops deactivated (jobs already inactive are left alone and not recorded).

    ```yaml
    - id: defer
      action: peak.defer_crons
      with: {crons: ["stock.ir_cron_scheduler_action", "Digest Emails"]}
      undo: {action: peak.revert_crons}
    ```
    """

    name = "peak.defer_crons"

    class Params(_Db):
        crons: list[str] = Field(description="job names or XML ids (a string: comma-separated)")
        lock_timeout: Duration = Field(5.0, description="wait this long for a running job")

        @field_validator("crons", mode="before")
        @classmethod
        def _split(cls, value: Any) -> Any:
            if isinstance(value, str):
                return [part.strip() for part in re.split(r"[,\n]", value) if part.strip()]
            return value

    outputs = {
        "deferred": "jobs deactivated by this step",
        "already_inactive": "named jobs that were inactive already (not recorded)",
        "missing": "names that matched no job",
        "total": "jobs deferred by the active peak",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if not params.crons:
            return PlanResult(Change.NONE, "no job to defer")
        return PlanResult(Change.WILL, f"deactivate {len(params.crons)} scheduled job(s) if active")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import peak as peak_sql

        data = _record(ctx)
        if data is None:
            data = {"run_id": ctx.run.id, "started_at": utcnow().isoformat(), "previous": {}, "crons": []}
        dsn, dbname = _dsn(params, ctx)
        with peak_sql.connect(dsn, dbname) as conn:
            jobs, missing = peak_sql.find(conn, params.crons)
            for name in missing:
                ctx.log(f"no scheduled job named {name!r} in this database", level="warning")

            def remember(changing: list[Any]) -> None:
                known = {c["id"] for c in data["crons"]}
                data["crons"] += [{"id": c.id, "name": c.name, "xmlid": c.xmlid} for c in changing if c.id not in known]
                _save(ctx, data)

            changed = peak_sql.deactivate(conn, [j.id for j in jobs], remember, lock_timeout=params.lock_timeout)
        changed_ids = {c.id for c in changed}
        return {
            "deferred": [c.name for c in changed],
            "already_inactive": [j.name for j in jobs if j.id not in changed_ids],
            "missing": missing,
            "total": len(data["crons"]),
        }


class RevertCrons(Action):
    """Reactivate exactly the scheduled jobs erpops deferred for the active peak.

    ```yaml
    - id: revert-crons
      action: peak.revert_crons
    ```
    """

    name = "peak.revert_crons"

    class Params(_Db):
        lock_timeout: Duration = 5.0

    outputs = {"reverted": "jobs reactivated", "count": "how many"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, "reactivate the jobs erpops deferred")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import peak as peak_sql

        data = _record(ctx)
        if not data or not data.get("crons"):
            return {"reverted": [], "count": 0}
        dsn, dbname = _dsn(params, ctx)
        with peak_sql.connect(dsn, dbname) as conn:
            changed = peak_sql.activate(conn, [c["id"] for c in data["crons"]], lock_timeout=params.lock_timeout)
        data["crons"] = []
        _save(ctx, data)
        return {"reverted": [c.name for c in changed], "count": len(changed)}
