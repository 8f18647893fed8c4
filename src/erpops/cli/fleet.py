"""A playbook or ``erpops run`` over several environments (:mod:`erpops.engine.fleet`): the
approval asked once, each environment's run started as the limits allow, one report at the end —
a table (environment, outcome, duration, the key outputs), JSON events carrying the environment
and the fleet id, JUnit with one testsuite per environment and one Prometheus file with an
``environment`` label when the runbook writes them."""

from __future__ import annotations

import json as _json
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer

from erpops.cli.boundary import abort
from erpops.cli.options import Common
from erpops.errors import ExitCode

#: Runbook parameters naming a file each run writes: per environment in a fleet, then merged.
REPORT_FILES = ("junit", "metrics_file", "report_file")
#: Outputs worth a column in the fleet's table, when the runbook has them.
KEY_OUTPUTS = ("backup_id", "release", "passed", "rto_seconds", "size")


class _Tagged:
    """Events of one member, tagged with its environment and the fleet, written one at a time."""

    def __init__(self, sink: Any, environment: str, fleet_id: str, lock: threading.Lock) -> None:
        self.sink, self.environment, self.fleet_id, self.lock = sink, environment, fleet_id, lock

    def emit(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.sink.emit({**event, "environment": event.get("environment") or self.environment,
                            "fleet": self.fleet_id})  # fmt: skip


class _Quiet:
    def emit(self, event: dict[str, Any]) -> None:
        pass


def _needs_approval(runbook: Any) -> bool:
    steps = list(runbook.spec.steps) + list(getattr(runbook.spec, "finally_", []) or [])
    return any(getattr(s, "action", None) == "approve" for s in steps)


def _approve(runbook: Any, envs: list[Any], common: Common) -> bool:
    """Asked once for the fleet: True when the members may pass their approval gates."""
    production = [e.name for e in envs if e.production]
    if common.yes or common.dry_run or not production or not _needs_approval(runbook):
        return common.yes
    names = ", ".join(e.name for e in envs)
    if not (sys.stdin.isatty() and sys.stdout.isatty()) or common.json:
        abort(
            f"{runbook.name} on {len(envs)} environments ({names}) needs approval for production "
            f"{', '.join(production)}: no terminal to ask; give --yes",
            ExitCode.APPROVAL_REFUSED,
        )
    if not typer.confirm(f"Run {runbook.name} on {names} (production: {', '.join(production)})?", default=False):
        abort("not approved", ExitCode.APPROVAL_REFUSED)
    return True


def run_fleet(
    runbook: Any, selected: list[str], given: dict[str, Any], common: Common, config: Any, *, lock_wait: float | None
) -> NoReturn:
    from erpops.engine import fleet
    from erpops.engine.runner import RunOptions

    envs = [config.environment(name) for name in selected]
    budget = fleet.error_budget(common.max_errors, len(envs), common.fail_fast)
    approved = _approve(runbook, envs, common)
    scratch = Path(tempfile.mkdtemp(prefix="erpops-fleet-"))
    files = {k: given[k] for k in REPORT_FILES if given.get(k)}

    def start(name: str, engine: Any, state: Any) -> Any:
        from erpops.records import apply_topology

        env = config.environment(name)
        if state is not None:
            env = apply_topology(env, state)
        params = {**given, **{k: str(scratch / f"{name}.{k}") for k in files}}
        opts = RunOptions(dry_run=common.dry_run, assume_yes=approved, interactive=False, lock_wait=lock_wait)
        return engine.run(runbook, env, params, opts)

    members = _drive(runbook.name, runbook.version, selected, start, common, config, budget, fleet.new_fleet_id())
    _merge(files, scratch, members)
    raise typer.Exit(int(fleet.exit_code(members)))


def resume_fleet(
    fleet_id: str, config: Any, common: Common, *, force: bool, again: dict[str, str], lock_wait: float | None
) -> NoReturn:
    """Resume the members of a fleet run that failed or were interrupted (each from its first step
    that did not succeed); the others are left as they are."""
    from erpops.engine import fleet
    from erpops.engine.resume import prepare_resume
    from erpops.engine.runner import RunOptions
    from erpops.engine.store import open_state_store

    state = open_state_store(config)
    try:
        record = state.get_record(fleet.FLEET_RECORD, fleet.FLEET_SCOPE, fleet_id) if state is not None else None
    finally:
        if state is not None:
            state.close()
    if record is None:
        abort(f"no fleet {fleet_id!r} in the state store; see `erpops runs list`")
    members = {m["environment"]: m for m in record.data.get("members", [])}
    todo = [e for e, m in members.items() if m.get("outcome") in ("failed", "interrupted") and m.get("run_id")]
    if not todo:
        abort(f"fleet {fleet_id}: no failed or interrupted member to resume")

    def start(name: str, engine: Any, state: Any) -> Any:
        plan = prepare_resume(state, config, members[name]["run_id"], force=force, again=again)
        opts = RunOptions(assume_yes=common.yes, interactive=False, lock_wait=lock_wait,
                          resume_run_id=plan.run.id, completed=plan.completed)  # fmt: skip
        return engine.run(plan.runbook, plan.env, plan.given, opts)

    done = _drive(record.data.get("runbook", "?"), record.data.get("version", "?"), todo, start, common, config,
                  None, fleet_id, keep=[fleet.Member(**{k: m.get(k) for k in ("environment", "outcome", "run_id",
                  "exit_code", "seconds", "error")}, outputs=m.get("outputs") or {}) for e, m in members.items()
                  if e not in todo])  # fmt: skip
    raise typer.Exit(int(fleet.exit_code(done)))


def _drive(
    name: str,
    version: str,
    selected: list[str],
    start: Any,
    common: Common,
    config: Any,
    budget: int | None,
    fleet_id: str,
    *,
    keep: list[Any] | None = None,
) -> list[Any]:
    """Start the members as the limits allow (each with its own state store connection and
    engine), report them, record the fleet; the members, in the order given."""
    from erpops.engine import fleet
    from erpops.engine.events import JsonLinesSink
    from erpops.engine.runner import Engine
    from erpops.engine.signals import interrupt_handlers
    from erpops.engine.store import open_existing_state_store, open_state_store

    lock = threading.Lock()
    stop = threading.Event()
    out: Any = JsonLinesSink(sys.stdout) if common.json else None
    started = datetime.now(UTC)

    def say(line: str) -> None:
        if not common.json:
            with lock:
                typer.echo(line)

    def member(env_name: str) -> Any:
        state = open_existing_state_store(config) if common.dry_run else open_state_store(config)
        try:
            sink = _Tagged(out, env_name, fleet_id, lock) if out is not None else _Quiet()
            engine = Engine(state=state, sink=sink, approver=None)
            engine.interrupted = stop  # one Ctrl-C stops every member's step in flight
            say(f"> {env_name}: {name} started")
            return start(env_name, engine, state)
        finally:
            if state is not None:
                state.close()

    def done(m: Any) -> None:
        said = f"  {m.outcome}" + (f": {m.error}" if m.error and m.outcome != "succeeded" else "")
        say(f"< {m.environment}:{said} ({m.seconds:.1f}s)")

    if out is not None:
        out.emit({"event": "fleet.started", "fleet": fleet_id, "runbook": name, "environments": selected,
                  "parallel": common.parallel, "max_errors": budget})  # fmt: skip
    else:
        limit = f", at most {budget} failure(s)" if budget is not None else ""
        say(f"fleet {fleet_id}: {name} on {len(selected)} environments, {common.parallel} at a time{limit}")

    class _Handle:
        interrupted = stop

    with interrupt_handlers(_Handle()):
        members = fleet.run(selected, member, parallel=common.parallel, max_errors=budget, stop=stop, on_done=done)
    members = list(keep or []) + members
    _record(config, common, fleet_id, name, version, members, started)
    if out is not None:
        out.emit({"event": "fleet.finished", "fleet": fleet_id, "runbook": name,
                  "exit_code": int(fleet.exit_code(members)), "members": [m.as_dict() for m in members]})  # fmt: skip
    else:
        _table(fleet_id, members)
    return members


def _record(
    config: Any, common: Common, fleet_id: str, name: str, version: str, members: list[Any], started: datetime
) -> None:
    if common.dry_run:
        return
    from erpops.engine import fleet
    from erpops.engine.store import open_state_store

    state = open_state_store(config)
    if state is None:
        return
    try:
        state.put_record(fleet.FLEET_RECORD, fleet.FLEET_SCOPE, fleet_id, {
            "runbook": name, "version": version, "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(), "members": [m.as_dict() for m in members]})  # fmt: skip
    finally:
        state.close()


def _table(fleet_id: str, members: list[Any]) -> None:
    from rich.markup import escape

    from erpops.cli.tables import listing, print_list

    keys = [k for k in KEY_OUTPUTS if any(k in m.outputs for m in members)]
    table = listing("environment", "outcome", "took", "run", *keys, "error", title=f"fleet {fleet_id}",
                    wrap=("error",), right=("took",))  # fmt: skip
    style = {"succeeded": "green", "failed": "red", "locked": "yellow", "not started": "dim"}
    for m in members:
        table.add_row(
            m.environment,
            f"[{style.get(m.outcome, '')}]{m.outcome}[/]" if style.get(m.outcome) else m.outcome,
            f"{m.seconds:.1f}s" if m.seconds is not None else "-",
            m.run_id or "-",
            *[escape(str(m.outputs.get(k, ""))) for k in keys],
            escape(m.error or ""),
        )
    print_list(table)
    counts: dict[str, int] = {}
    for m in members:
        counts[m.outcome] = counts.get(m.outcome, 0) + 1
    typer.echo(", ".join(f"{n} {outcome}" for outcome, n in counts.items()))


def _merge(files: dict[str, str], scratch: Path, members: list[Any]) -> None:
    """The members' report files as one: JUnit testsuites side by side, Prometheus samples under
    one HELP/TYPE per metric (each carries its environment label), JSON reports in a list."""
    from erpops.files import write_atomic

    for key, target in files.items():
        parts = [(m.environment, scratch / f"{m.environment}.{key}") for m in members]
        parts = [(env, p) for env, p in parts if p.is_file()]
        if key == "junit":
            write_atomic(target, _merge_junit([p for _, p in parts]))
        elif key == "metrics_file":
            write_atomic(target, _merge_prometheus([p.read_text() for _, p in parts]).encode())
        else:
            doc = [{"environment": env, **_json.loads(p.read_text())} for env, p in parts]
            write_atomic(target, _json.dumps(doc, indent=2, default=str).encode())


def _merge_junit(paths: list[Path]) -> bytes:
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuites")
    for path in paths:
        doc = ET.parse(path).getroot()
        suites = [doc] if doc.tag == "testsuite" else list(doc.iter("testsuite"))
        root.extend(suites)
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr) or 0) for s in root)))
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


def _merge_prometheus(texts: list[str]) -> str:
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith("# "):
                name = line.split()[2]
                heads.setdefault(name, [])
                if line not in heads[name]:
                    heads[name].append(line)
            elif line.strip():
                name = line.split("{", 1)[0].split(" ", 1)[0]
                samples.setdefault(name, []).append(line)
    out = []
    for name in dict.fromkeys([*heads, *samples]):
        out += heads.get(name, []) + samples.get(name, [])
    return "\n".join(out) + "\n"
