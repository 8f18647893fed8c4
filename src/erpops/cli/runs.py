"""``erpops runs list|show|compare|resume|unlock``: the journal of runs, read back, compared and continued."""

import json as _json
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from erpops.cli.boundary import abort, guarded
from erpops.cli.common import (
    Common,
    ConfigOpt,
    JsonOpt,
    ParamOpt,
    WaitOpt,
    YesOpt,
    parse_params,
    parse_wait,
    run_runbook,
)

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


def _open(config: str | None) -> tuple[Any, Any]:
    from erpops.engine.store import open_state_store
    from erpops.environments import load_config

    cfg = load_config(config)
    return cfg, open_state_store(cfg)


def _since(text: str | None) -> datetime | None:
    """``2h``, ``7d`` (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    if not text:
        return None
    from erpops.runbook.durations import parse_duration

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        abort(f"--since {text!r}: use a duration (2h, 7d) or an ISO date/time (2026-11-23, 2026-11-23T02:00)")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _fmt_time(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def _state_label(store: Any, run: Any) -> str:
    """The recorded state, and whether a 'running' run's process is in fact gone."""
    if run.state != "running":
        return str(run.state)
    from erpops.state import run_alive

    alive = run_alive(run)
    if alive is False:
        return "running (process gone: resume it)"
    return "running" if alive else "running (on another machine)"


def _run_json(store: Any, run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "runbook": run.runbook,
        "version": run.version,
        "sha256": run.sha256,
        "runbook_path": run.runbook_path,
        "environment": run.environment,
        "state": run.state,
        "state_detail": _state_label(store, run),
        "user": run.user,
        "host": run.host,
        "pid": run.pid,
        "params": run.params,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "duration": _duration(run.started_at, run.ended_at),
        "error": run.error,
        "parent_id": run.parent_id,
        "resumes": run.resumes,
    }


@app.command("list")
@guarded
def list_(
    env: str = typer.Option(None, "--env", "-e", metavar="ENV", help="Only runs on this environment."),
    runbook: str = typer.Option(None, "--runbook", metavar="FILE", help="Only runs of this runbook (name)."),
    state: str = typer.Option(
        None, "--state", metavar="STATE", help="Only runs in this state (succeeded, failed, ...)."
    ),
    since: str = typer.Option(
        None, "--since", metavar="DURATION", help="Only runs started since: 2h, 7d or an ISO date/time."
    ),
    limit: int = typer.Option(50, "--limit", metavar="N", help="At most this many runs (newest first); 0 for all."),
    all_: bool = typer.Option(False, "--all", help="Include runs started by runbook.call."),
    json: bool = JsonOpt,
    config: str = ConfigOpt,
) -> None:
    """Runs in the journal, newest first."""
    _cfg, store = _open(config)
    try:
        runs = store.list_runs(
            environment=env,
            runbook=runbook,
            state=state,
            since=_since(since),
            limit=limit or None,
            top_level=not all_,
        )
        if not all_:
            runs = [r for r in runs if not r.parent_id]
        if json:
            for r in runs:
                typer.echo(_json.dumps(_run_json(store, r), default=str))
            return
        from erpops.cli.tables import age, listing, print_list

        # The id carries the start time (UTC); the runbook's version and who ran it are in
        # `runs show` and --json (as `gh run list`: the list fits 80 columns with the ids whole).
        table = listing("run", "runbook", "env", "state", "took", "age", right=("took", "age"))
        for r in runs:
            took = _duration(r.started_at, r.ended_at)
            table.add_row(
                r.id,
                r.runbook,
                r.environment,
                _state_label(store, r),
                f"{took:.1f}s" if took is not None else "-",
                age(r.started_at),
            )
        print_list(table if runs else "no runs")
    finally:
        store.close()


@app.command("show")
@guarded
def show(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (see `erpops runs list`) or fleet id (fleet-...)."),
    json: bool = JsonOpt,
    config: str = ConfigOpt,
) -> None:
    """One run: runbook, parameters, every step attempt with timings and errors, approvals.

    A fleet id (printed by a run over several environments) shows its members together, each
    with its outcome in the journal now.
    """
    _cfg, store = _open(config)
    try:
        run = store.get_run(run_id)
        if run is None and run_id.startswith("fleet-"):
            _show_fleet(store, run_id, json)
            return
        if run is None:
            abort(f"no run {run_id!r} in the state store; see `erpops runs list`")
        steps = store.list_steps(run_id)
        approvals = store.list_approvals(run_id) if hasattr(store, "list_approvals") else []
        children = [r for r in store.list_runs() if r.parent_id == run_id]
        if json:
            doc = _run_json(store, run)
            doc["plan"] = run.plan
            doc["steps"] = [
                {
                    "step": s.step_id,
                    "phase": s.phase,
                    "attempt": s.attempt,
                    "outcome": s.outcome,
                    "started_at": s.started_at.isoformat() if s.started_at else None,
                    "ended_at": s.ended_at.isoformat() if s.ended_at else None,
                    "duration": _duration(s.started_at, s.ended_at),
                    "outputs": s.outputs,
                    "error": s.error,
                }
                for s in steps
            ]
            doc["approvals"] = [{**a, "at": a["at"].isoformat() if a.get("at") else None} for a in approvals]
            doc["children"] = [c.id for c in children]
            typer.echo(_json.dumps(doc, default=str))
            return
        _print_run(store, run, steps, approvals, children)
    finally:
        store.close()


def _show_fleet(store: Any, fleet_id: str, json: bool) -> None:
    """A fleet run: its members (each its own run), their outcome now in the journal."""
    from erpops.engine.fleet import FLEET_RECORD, FLEET_SCOPE

    record = store.get_record(FLEET_RECORD, FLEET_SCOPE, fleet_id)
    if record is None:
        abort(f"no fleet {fleet_id!r} in the state store; see `erpops runs list`")
    doc = dict(record.data)
    for member in doc.get("members", []):
        run = store.get_run(member["run_id"]) if member.get("run_id") else None
        member["state"] = _state_label(store, run) if run is not None else member["outcome"]
    if json:
        typer.echo(_json.dumps({"fleet": fleet_id, **doc}, default=str))
        return
    from rich.markup import escape

    from erpops.cli.tables import list_console, listing, print_list

    con = list_console()
    con.print(f"[bold]fleet {fleet_id}[/bold]  {doc.get('runbook')} {doc.get('version')}, "
              f"started {doc.get('started_at')}")  # fmt: skip
    table = listing("environment", "outcome", "state now", "took", "run", "error",
                    wrap=("error",), right=("took",))  # fmt: skip
    for m in doc.get("members", []):
        took = f"{m['seconds']:.1f}s" if m.get("seconds") is not None else "-"
        table.add_row(m["environment"], m["outcome"], m["state"], took, m.get("run_id") or "-",
                      escape(m.get("error") or ""))  # fmt: skip
    print_list(table, con)


def _print_run(store: Any, run: Any, steps: list[Any], approvals: list[dict[str, Any]], children: list[Any]) -> None:
    from rich.markup import escape

    from erpops.cli.tables import list_console, listing, print_list

    con = list_console()
    took = _duration(run.started_at, run.ended_at)
    con.print(f"[bold]run {run.id}[/bold]  {run.runbook} {run.version} on [bold]{run.environment}[/bold]")
    con.print(f"  state      {_state_label(store, run)}")
    con.print(f"  by         {run.user}@{run.host}")
    con.print(f"  started    {_fmt_time(run.started_at)} UTC" + (f", took {took:.1f}s" if took is not None else ""))
    con.print(f"  runbook    {run.runbook_path} (sha256 {run.sha256[:12]})")
    if run.resumes:
        con.print(f"  resumed    {run.resumes} time(s)")
    if run.params:
        con.print("  params     " + escape(", ".join(f"{k}={v}" for k, v in run.params.items())))
    if run.parent_id:
        con.print(f"  called by  run {run.parent_id}")
    for c in children:
        con.print(f"  called     run {c.id} ({c.runbook}, {c.state})")
    if run.error:
        con.print(f"  [red]error      {escape(run.error)}[/red]")
    table = listing("step", "phase", "attempt", "outcome", "started (UTC)", "took", "error", title="steps",
                    wrap=("error",), right=("attempt", "took"))  # fmt: skip
    for s in steps:
        d = _duration(s.started_at, s.ended_at)
        table.add_row(
            s.step_id,
            s.phase,
            str(s.attempt),
            s.outcome,
            _fmt_time(s.started_at),
            f"{d:.2f}s" if d is not None else "-",
            escape(s.error or ""),
        )
    print_list(table, con)
    for a in approvals:
        con.print(f"  approved by {a['who']} ({a['how']}) at {_fmt_time(a.get('at'))}: {escape(a['message'])}")


@app.command("compare")
@guarded
def compare(
    run_a: str = typer.Argument(..., metavar="RUN_A", help="The reference run (a rehearsal, an earlier drill)."),
    run_b: str = typer.Argument(..., metavar="RUN_B", help="The run to compare with it."),
    json: bool = JsonOpt,
    config: str = ConfigOpt,
) -> None:
    """Two runs side by side: each step's duration, attempts and outcome in A and B, the
    difference, what differs (steps only in one, other outcomes or attempts) and the totals."""
    from erpops.engine.compare import compare as compared

    _cfg, store = _open(config)
    try:
        runs = []
        for run_id in (run_a, run_b):
            run = store.get_run(run_id)
            if run is None:
                abort(f"no run {run_id!r} in the state store; see `erpops runs list`")
            runs.append(run)
        doc = compared(runs[0], store.list_steps(run_a), runs[1], store.list_steps(run_b))
    finally:
        store.close()
    if json:
        typer.echo(_json.dumps(doc, default=str))
        return
    from rich.markup import escape

    from erpops.cli.tables import list_console, listing, print_list

    def secs(value: float | None) -> str:
        return f"{value:.2f}s" if value is not None else "-"

    con = list_console()
    for side in ("a", "b"):
        r = doc[side]
        con.print(f"{side.upper()}  run {r['run_id']}  {r['runbook']} {r['version']} on {r['environment']}: "
                  f"{r['state']}, {secs(r['seconds'])}")  # fmt: skip
    table = listing("step", "A", "B", "B - A", right=("A", "B", "B - A"))
    for row in doc["steps"]:
        name = row["step"] if row["phase"] == "main" else f"{row['step']} ({row['phase']})"
        cells = []
        for side in ("a", "b"):
            got = row[side]
            if got is None:
                cells.append("-")
                continue
            tries = f" ({got['attempts']} attempts)" if got["attempts"] > 1 else ""
            mark = "" if got["outcome"] == "succeeded" else f" {got['outcome']}"
            cells.append(f"{secs(got['seconds'])}{tries}{mark}")
        delta = row["delta_seconds"]
        table.add_row(escape(name), *cells, f"{delta:+.2f}s" if delta is not None else "")
    totals = doc["totals"]
    delta = totals["delta_seconds"]
    table.add_row("[bold]run[/bold]", secs(totals["a_seconds"]), secs(totals["b_seconds"]),
                  f"{delta:+.2f}s" if delta is not None else "")  # fmt: skip
    print_list(table, con)
    for line in doc["differences"]:
        con.print(f"  differs: {escape(line)}")
    if not doc["differences"]:
        con.print("  same steps, outcomes and attempts")


@app.command("resume")
@guarded
def resume(
    run_id: str = typer.Argument(..., metavar="RUN", help="The failed or interrupted run (or fleet-...) to continue."),
    force: bool = typer.Option(False, "--force", help="Resume even though the runbook file changed."),
    runbook: str = typer.Option(None, "--runbook", metavar="FILE", help="The runbook file, if it moved (same sha256)."),
    param: list[str] = ParamOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    wait: str = WaitOpt,
    config: str = ConfigOpt,
) -> None:
    """Continue a failed or interrupted run from its first step that did not succeed.

    Steps that succeeded are not run again (their outputs are reused); parameters come from the
    journal. Secrets given literally must be given again with --param; refused (exit 2) when the
    runbook changed since the run started, unless --force. A fleet id resumes the fleet's failed
    and interrupted members only.
    """
    from erpops.engine.resume import prepare_resume

    if run_id.startswith("fleet-"):
        from erpops.cli.fleet import resume_fleet
        from erpops.environments import load_config

        cfg = load_config(config)
        common = Common(yes=yes, json=json, config=config, wait=wait)
        resume_fleet(run_id, cfg, common, force=force, again=parse_params(param), lock_wait=parse_wait(wait))
    cfg, store = _open(config)
    try:
        plan = prepare_resume(store, cfg, run_id, force=force, again=parse_params(param), runbook_path=runbook)
    except BaseException:
        store.close()
        raise
    common = Common(env=plan.env.name, yes=yes, json=json, config=config, wait=wait)
    run_runbook(
        plan.runbook,
        plan.env,
        plan.given,
        common,
        cfg,
        lock_wait=parse_wait(wait),
        state=store,
        resume_run_id=plan.run.id,
        completed=plan.completed,
    )


@app.command("unlock")
@guarded
def unlock(
    env: str = typer.Option(..., "--env", "-e", metavar="ENV", help="Environment whose stale lock to clear."),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Clear a stale environment lock left by a run whose process is gone (checked first)."""
    _cfg, store = _open(config)
    try:
        if not hasattr(store, "unlock_environment"):
            abort("this state store keeps no locks between processes")
        holder = store.unlock_environment(env)
        if json:
            typer.echo(_json.dumps({"environment": env, "cleared": holder is not None, "holder": holder}, default=str))
            return
        if holder is None:
            typer.echo(f"environment {env!r} is not locked")
            return
        typer.echo(
            f"cleared the stale lock of {env!r}: run {holder['run_id']} ({holder['user']}@{holder['host']}, "
            f"runbook {holder['runbook']}) is gone; its run is marked interrupted — `erpops runs resume "
            f"{holder['run_id']}` continues it"
        )
    finally:
        store.close()
