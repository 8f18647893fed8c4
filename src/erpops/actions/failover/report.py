"""The failover report: JSON, Prometheus text, state-store record — from the run's journal.

Part of the ``failover`` family (:mod:`erpops.actions.failover`).
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.state import utcnow

REPORT = "failover"  # record kind of failover reports, keyed by run id

#: Which fence held, by the fence step's method.
FENCE_HELD = {
    "sql": "SQL (read-only default, database closed, roles without LOGIN)",
    "command": "infrastructure (fence_command)",
    "sql+command": "both: SQL and infrastructure (fence_command)",
    "already-standby": "none needed: the old primary was already in recovery",
    "none": "none (forced)",
}

# --- failover.report --------------------------------------------------------------------------


class Report(Action):
    """The failover report, from the run's journal: outcome, write-unavailable seconds and lost rows
    (from the probe step), each step's duration, the fence method, the new timeline. Written as JSON
    (``report_file``), as Prometheus text (``metrics_file``, for node_exporter's textfile collector),
    into the state store (kind ``failover``, keyed by run id) so rehearsals and real failovers can be
    compared, and returned as this step's outputs (``--json`` prints them).

    ```yaml
    finally:
      - id: report
        action: failover.report
        with: {metrics_file: "{{ params.metrics_file }}", mode: failover}
    ```
    """

    name = "failover.report"

    class Params(ActionParams):
        mode: Literal["failover", "rehearsal"] = Field("failover", description="label of the report and metrics")
        report_file: str | None = Field(None, description="write the JSON report here")
        metrics_file: str | None = Field(None, description="write Prometheus text metrics here")
        probe_step: str = Field("probe-stop", description="id of the failover.probe_stop step")
        preflight_step: str = Field("preflight", description="id of the preflight replication_status step")
        fence_step: str = Field("fence", description="id of the postgres.fence step")
        promote_step: str = Field("promote", description="id of the postgres.promote step")
        repoint_step: str = Field("repoint", description="id of the failover.repoint step")
        first_step: str = Field("fence", description="the write-affecting span starts with this step")
        last_step: str = Field("writable", description="... and ends with this one")

    outputs = {
        "succeeded": "every main step succeeded",
        "promoted": "the standby was promoted",
        "write_unavailable_seconds": "from the probe (null without a probe)",
        "lost_rows": "from the probe",
        "failover_seconds": "first_step start -> last_step end",
        "report": "the whole report",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        files = [f for f in (params.report_file, params.metrics_file) if f]
        return PlanResult(
            Change.MAY if files else Change.NONE, "failover report" + (f" to {', '.join(files)}" if files else "")
        )

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        report = build_report(ctx, params)
        if params.report_file:
            _write_atomic(Path(params.report_file), json.dumps(report, indent=2, default=str) + "\n")
        if params.metrics_file:
            _write_atomic(Path(params.metrics_file), prometheus_text(report))
        if ctx.state is not None:
            ctx.state.put_record(REPORT, ctx.env.name, ctx.run.id, report)
        ctx.log(summary_line(report))
        return {
            "succeeded": report["succeeded"],
            "promoted": report["promoted"],
            "write_unavailable_seconds": report["write_unavailable_seconds"],
            "lost_rows": report["lost_rows"],
            "failover_seconds": report["failover_seconds"],
            "report": report,
        }


def _last_attempts(ctx: ActionContext) -> list[Any]:
    if ctx.state is None:
        return []
    last: dict[tuple[str, str], Any] = {}
    for rec in ctx.state.list_steps(ctx.run.id):
        if rec.step_id == ctx.step_id and rec.phase == "finally":
            continue
        last[(rec.phase, rec.step_id)] = rec  # later attempts replace earlier ones
    return list(last.values())


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 4) if start and end else None


def _old_primary_only(probe: dict[str, Any], promote: dict[str, Any], fence: dict[str, Any]) -> dict[str, Any]:
    """Probe rows on the old primary missing on the new one, and how that is known: read on the old
    primary, or — when its fence closed the database to every new session — from the promotion,
    which waited until the new primary had replayed the fenced primary's last WAL position (after
    the fence no commit can reach the old primary)."""
    rows = probe.get("old_primary_only_rows")
    if rows is not None:
        return {"old_primary_only_rows": rows, "old_primary_only_rows_basis": "read on the old primary"}
    if (fence.get("sql_fence") or {}).get("database") and promote.get("caught_up") is True:
        return {
            "old_primary_only_rows": 0,
            "old_primary_only_rows_basis": "the new primary replayed the fenced primary's WAL up to "
            f"{fence.get('lsn')} before promotion (the fence closed the old primary's database: it cannot be read)",
        }
    return {
        "old_primary_only_rows": None,
        "old_primary_only_rows_basis": "not known: the old primary could not be read",
    }


def build_report(ctx: ActionContext, params: Any) -> dict[str, Any]:
    recs = _last_attempts(ctx)
    steps = [
        {"id": r.step_id, "phase": r.phase, "status": r.outcome, "attempt": r.attempt,
         "seconds": _seconds(r.started_at, r.ended_at), "error": r.error}
        for r in recs
    ]  # fmt: skip
    by_id = {r.step_id: r for r in recs if r.phase == "main"}
    outs = {sid: (r.outputs or {}) for sid, r in by_id.items() if r.outcome == "succeeded"}
    finals = {r.step_id: (r.outputs or {}) for r in recs if r.phase == "finally" and r.outcome == "succeeded"}
    probe = finals.get(params.probe_step) or outs.get(params.probe_step) or {}
    failed = [s for s in steps if s["phase"] == "main" and s["status"] not in ("succeeded", "skipped")]
    first, last = by_id.get(params.first_step), by_id.get(params.last_step)
    span = _seconds(first.started_at, last.ended_at) if first and last and last.outcome == "succeeded" else None
    env = ctx.env
    return {
        "environment": env.name,
        "tier": env.tier,
        "mode": params.mode,
        "run_id": ctx.run.id,
        "started_at": ctx.run.started_at.isoformat(),
        "reported_at": utcnow().isoformat(),
        "succeeded": not failed,
        "failed_step": failed[0]["id"] if failed else None,
        "error": failed[0]["error"] if failed else None,
        "promoted": params.promote_step in outs,
        "repointed": params.repoint_step in outs,
        "old_primary": outs.get(params.fence_step, {}).get("server"),
        "new_primary": outs.get(params.promote_step, {}).get("server"),
        "timeline": outs.get(params.promote_step, {}).get("timeline"),
        "fence_method": outs.get(params.fence_step, {}).get("method"),
        "fence_held": FENCE_HELD.get(str(outs.get(params.fence_step, {}).get("method"))),
        "fence_confirmed": outs.get(params.fence_step, {}).get("confirmed"),
        "fence_sql": outs.get(params.fence_step, {}).get("sql_fence"),
        "forced": any(bool(o.get("forced")) for o in outs.values()),
        "lag_at_start": {
            k: outs.get(params.preflight_step, {}).get(k)
            for k in ("replay_lag_seconds", "lag_bytes", "receive_lsn", "replay_lsn")
        },
        "probe": bool(probe.get("probe")),
        "write_unavailable_seconds": probe.get("write_unavailable_seconds"),
        "lost_rows": probe.get("lost_rows"),
        **_old_primary_only(probe, outs.get(params.promote_step, {}), outs.get(params.fence_step, {})),
        "probe_writes_ok": probe.get("ok"),
        "probe_writes_failed": probe.get("failed"),
        "probe_interval_seconds": probe.get("interval"),
        "outage_windows": probe.get("outage_windows") or [],
        "failover_seconds": span,
        "promote_seconds": outs.get(params.promote_step, {}).get("promote_seconds"),
        "steps": steps,
    }


def summary_line(report: dict[str, Any]) -> str:
    state = "succeeded" if report["succeeded"] else f"failed at {report['failed_step']}"
    parts = [f"{report['mode']} of {report['environment']} {state}"]
    if report.get("fence_held"):
        parts.append(f"fence: {report['fence_held']}")
    if report["write_unavailable_seconds"] is not None:
        parts.append(f"writes unavailable {report['write_unavailable_seconds']:.3f}s")
        parts.append(f"{report['lost_rows']} acknowledged row(s) lost")
    timed = [
        f"{s['id']} {s['seconds']:.3f}s" for s in report["steps"] if s["seconds"] is not None and s["phase"] == "main"
    ]
    return "; ".join(parts) + (" (" + ", ".join(timed) + ")" if timed else "")


def prometheus_text(report: dict[str, Any]) -> str:
    """The report as Prometheus text exposition format (gauges; null values are left out)."""
    from erpops.reports import PrometheusText

    out = PrometheusText(environment=report["environment"], mode=report["mode"])
    metrics: list[tuple[str, str, list[tuple[dict[str, Any], Any]]]] = [
        ("success", "1 when the last failover ran to the end, else 0", [({}, int(report["succeeded"]))]),
        ("info", "The run and the new primary of the last failover",
         [({"run_id": report["run_id"], "new_primary": report["new_primary"] or ""}, 1)]),
        ("promoted", "1 when the standby was promoted", [({}, int(report["promoted"]))]),
        ("write_unavailable_seconds", "Last successful probe write before the outage to the first after",
         [({}, report["write_unavailable_seconds"])]),
        ("lost_rows", "Acknowledged probe writes missing on the new primary", [({}, report["lost_rows"])]),
        ("probe_writes", "Probe writes by result",
         [({"result": "ok"}, report["probe_writes_ok"]), ({"result": "failed"}, report["probe_writes_failed"])]),
        ("fence_to_writable_seconds", "From the fence step's start to the new primary taking writes",
         [({}, report["failover_seconds"])]),
        ("timeline", "Timeline of the new primary", [({}, report["timeline"])]),
        ("step_duration_seconds", "Duration of each step",
         [({"step": s["id"], "phase": s["phase"]}, s["seconds"]) for s in report["steps"]]),
        ("timestamp_seconds", "When the last failover's report was written (Unix time)",
         [({}, datetime.fromisoformat(report["reported_at"]).timestamp())]),
    ]  # fmt: skip
    for name, help_text, samples in metrics:
        out.metric(f"erpops_failover_{name}", "gauge", help_text, samples)
    return out.text()


def _write_atomic(path: Path, text: str) -> None:
    from erpops.files import write_atomic

    write_atomic(path, text.encode())
