"""What every runbook-running command shares: options, loading, output, running, exit code."""

from __future__ import annotations

import gc
import sys
from typing import Any

import typer

from erpops.cli.boundary import abort
from erpops.cli.options import Common

__all__ = ["Common"]  # re-exported: commands build it from their options

# Common options, declared once.
EnvOpt = typer.Option(None, "--env", "-e", metavar="ENV", help="Environment from erpops.yaml (default: sandbox).")
DryRunOpt = typer.Option(False, "--dry-run", help="Plan only: show what each step would change; change nothing.")
YesOpt = typer.Option(False, "--yes", "-y", help="Approve every approval gate non-interactively.")
JsonOpt = typer.Option(False, "--json", help="Only JSON-lines events on stdout.")
RunbookOpt = typer.Option(None, "--runbook", metavar="FILE", help="Use this runbook file instead of the shipped one.")
ParamOpt = typer.Option(None, "--param", "-p", metavar="KEY=VALUE", help="Runbook parameter key=value (repeatable).")
ConfigOpt = typer.Option(None, "--config", "-c", metavar="FILE", envvar="ERPOPS_CONFIG", help="Path of erpops.yaml.")
WaitOpt = typer.Option(
    None, "--wait", metavar="DURATION", help="Wait this long for the environment lock (e.g. 5m) instead of failing."
)
ParallelOpt = typer.Option(1, "--parallel", metavar="N", min=1, max=64, help="Fleet runs: environments at a time.")
MaxErrorsOpt = typer.Option(
    None,
    "--max-errors",
    metavar="N|P%",
    help="Fleet runs: start no more environments after this many failures (3, or 25%).",
)
FailFastOpt = typer.Option(False, "--fail-fast", help="Fleet runs: start no more environments after a failure.")


#: Set by :func:`erpops.cli.main` (the console script): freeze start-up objects out of the GC.
FREEZE_GC = False


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            abort(f"--param {pair!r}: expected key=value")
        out[key.strip()] = value
    return out


def execute(name: str, common: Common, options: dict[str, Any] | None = None) -> None:
    """Load the runbook ``name`` (or ``--runbook``), run it on the environment, exit with its code."""
    from erpops.actions.base import load_actions
    from erpops.environments import load_config
    from erpops.runbook.library import find
    from erpops.runbook.loader import load_runbook

    given = {k: v for k, v in (options or {}).items() if v is not None and v is not False}
    for key, value in parse_params(common.params).items():
        given[key] = value
    config = load_config(common.config)
    selected = config.select(common.env)
    runbook = load_runbook(find(common.runbook or name), load_actions())
    for key in options or {}:
        flag = f"--{key.replace('_', '-')}"
        if key in given and key not in runbook.spec.params:
            abort(f"runbook {runbook.name} ({runbook.path}) has no parameter {key!r} for {flag}")
        wanted = runbook.spec.params.get(key)
        if key not in given and wanted is not None and wanted.required and wanted.default is None:
            # the command's own option, not --param, is what the user would type
            abort(f"{name} needs {flag}" + (f": {wanted.description}" if wanted.description else ""))
    if len(selected) > 1:
        from erpops.cli.fleet import run_fleet

        run_fleet(runbook, selected, given, common, config, lock_wait=parse_wait(common.wait))
    run_runbook(runbook, config.environment(selected[0]), given, common, config, lock_wait=parse_wait(common.wait))


def parse_wait(wait: str | None) -> float | None:
    """``--wait DURATION`` in seconds (None when not given)."""
    from erpops.runbook.durations import parse_duration

    if not wait:
        return None
    try:
        return parse_duration(wait)
    except ValueError as exc:
        abort(f"--wait: {exc}")


def run_runbook(
    runbook: Any,
    env: Any,
    given: dict[str, Any],
    common: Common,
    config: Any,
    *,
    lock_wait: float | None = None,
    state: Any = None,
    resume_run_id: str | None = None,
    completed: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Run a loaded runbook with the output ``common`` asks for, then exit with the run's code.
    ``state`` (an open state store) is used and closed; otherwise the configured one is opened."""
    from erpops.engine.events import JsonLinesSink
    from erpops.engine.runner import Engine, RunOptions
    from erpops.engine.store import open_existing_state_store, open_state_store

    if common.json:
        sink: Any = JsonLinesSink(sys.stdout)
        interactive = False
    else:
        from erpops.cli.console import ConsoleSink

        sink = ConsoleSink()
        interactive = sys.stdin.isatty() and sink.console.is_terminal
    if state is None:  # a dry run reads an existing store (history, topology) and creates none
        state = open_existing_state_store(config) if common.dry_run else open_state_store(config)
    if state is not None:  # a failover recorded which server is the primary now
        from erpops.records import apply_topology

        env = apply_topology(env, state)
    engine = Engine(state=state, sink=sink)
    if not common.json:
        from erpops.cli.console import make_approver

        engine.approver = make_approver(sink, engine.interrupted)  # a Ctrl-C ends its prompt at once
    opts = RunOptions(
        dry_run=common.dry_run,
        assume_yes=common.yes,
        interactive=interactive,
        lock_wait=lock_wait,
        resume_run_id=resume_run_id,
        completed=dict(completed or {}),
    )
    # Everything loaded so far (code, config, runbook, action registry) lives until the process
    # exits: keep it out of the cyclic garbage collector's passes, which otherwise walk all of it
    # again at every full collection during the run and once more at exit. Only in the `erpops`
    # process itself (main() sets it), not when a test or a program calls the CLI in-process.
    if FREEZE_GC:
        gc.freeze()
    try:
        result = run_guarded(engine, lambda: engine.run(runbook, env, given, opts))
    finally:
        if state is not None:
            state.close()
    raise typer.Exit(int(result.exit_code))


def run_guarded(engine: Any, fn: Any) -> Any:
    """Run ``fn`` with SIGINT/SIGTERM turned into a clean interrupt of the engine's current step."""
    from erpops.engine.signals import interrupt_handlers

    with interrupt_handlers(engine):
        return fn()


def environment_store(config: str | None, env: str | None) -> tuple[Any, Any]:
    """(the environment, its object store) for commands that read the store directly; secret
    references of the store resolved (and registered for redaction)."""
    from erpops.backends.runtime import install_secret_resolvers
    from erpops.backends.storage import open_store
    from erpops.environments import load_config
    from erpops.errors import InvalidInput
    from erpops.secrets import REDACTOR, is_reference, resolve

    environment = load_config(config).environment(env)
    install_secret_resolvers(environment)  # storage keys may be k8s-secret: references
    if environment.storage is None:
        raise InvalidInput(f"environment {environment.name!r} has no storage configured (storage.url in erpops.yaml)")

    def secret(value: str) -> str:
        out = resolve(value) if is_reference(value) else value
        REDACTOR.register(out)
        return out

    return environment, open_store(environment.storage, secret)
