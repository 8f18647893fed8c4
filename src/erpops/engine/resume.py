"""Resume a failed or interrupted run from the journal (``erpops runs resume RUN``).

What a resumed run gets:

- the **same runbook file**, refused (exit 2) when its sha256 differs from the one recorded at the
  start of the run, unless ``force``;
- the **same parameters**, read back from the journal. A secret given by reference
  (``env:VAR``, ``file:PATH``) is resolved again; a secret given literally was never written down
  and must be given again (``--param name=...``), otherwise the resume refuses (exit 2);
- the **outputs of the steps that succeeded** (and were not undone since): those steps are not run
  again; the run continues from the first main step that did not succeed, then runs ``finally``.

The run keeps its id; its journal shows every attempt, before and after the resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erpops import secrets
from erpops.actions.base import load_actions
from erpops.environments import Config, Environment
from erpops.errors import InvalidInput, Locked
from erpops.runbook.loader import Runbook, load_runbook
from erpops.state import RunRecord, StateStore, run_alive

RESUMABLE = ("failed", "interrupted", "rolled-back")


@dataclass
class ResumePlan:
    run: RunRecord
    runbook: Runbook
    env: Environment
    given: dict[str, Any]
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed_runbook: bool = False


def completed_steps(state: StateStore, run: RunRecord, runbook: Runbook) -> dict[str, dict[str, Any]]:
    """step id -> outputs of each main step whose last attempt succeeded and that was not undone
    afterwards, in journal order."""
    main_ids = {s.id for s in runbook.spec.steps}
    done: dict[str, dict[str, Any]] = {}
    for rec in state.list_steps(run.id):
        if rec.step_id not in main_ids:
            continue
        if rec.phase == "main":
            if rec.outcome == "succeeded":
                done[rec.step_id] = rec.outputs
            elif rec.outcome not in ("running", "skipped"):
                done.pop(rec.step_id, None)
        elif rec.phase == "undo" and rec.outcome == "succeeded":
            done.pop(rec.step_id, None)
    # keep runbook order (the engine does not care, people reading --json do)
    return {s.id: done[s.id] for s in runbook.spec.steps if s.id in done}


def resume_params(run: RunRecord, runbook: Runbook, again: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameters from the journal, secrets given literally replaced by ``again``."""
    given: dict[str, Any] = {}
    missing: list[str] = []
    for name, spec in runbook.spec.params.items():
        if name in again:
            if spec.type != "secret" and name in run.params and run.params[name] != again[name]:
                raise InvalidInput(
                    f"parameter {name!r}: a resumed run keeps the parameters it started with "
                    f"({name}={run.params[name]!r}); only secrets given literally are given again"
                )
            given[name] = again[name]
            continue
        if name not in run.params:
            continue  # a parameter added to a changed runbook (--force): its default applies
        value = run.params[name]
        if spec.type == "secret" and value is not None and value == spec.default:
            continue  # left to its default (a reference or a template): resolved again
        if spec.type == "secret" and value is not None and not (isinstance(value, str) and secrets.is_reference(value)):
            missing.append(name)
            continue
        given[name] = value
    unknown = sorted(set(again) - set(runbook.spec.params))
    if unknown:
        raise InvalidInput(f"runbook {runbook.name} has no parameter {unknown[0]!r}")
    if missing:
        names = ", ".join(missing)
        flags = " ".join(f"--param {n}=..." for n in missing)
        raise InvalidInput(
            f"run {run.id} was given the secret parameter(s) {names} literally, and secrets are never "
            f"journaled; give them again: erpops runs resume {run.id} {flags} "
            "(or pass secrets by reference, env:VAR or file:PATH, next time)"
        )
    return given


def prepare_resume(
    state: StateStore,
    config: Config,
    run_id: str,
    *,
    force: bool = False,
    again: Mapping[str, Any] | None = None,
    runbook_path: str | None = None,
) -> ResumePlan:
    """Check that ``run_id`` can be resumed and gather what the engine needs to resume it."""
    run = state.get_run(run_id)
    if run is None:
        raise InvalidInput(f"no run {run_id!r} in the state store; see `erpops runs list`")
    if run.parent_id:
        raise InvalidInput(f"run {run_id} was started by run {run.parent_id} (runbook.call); resume that run instead")
    if run.state == "succeeded":
        raise InvalidInput(f"run {run_id} succeeded; there is nothing to resume")
    if run.state == "running":
        pid = run.pid
        alive = run_alive(run)
        if alive or (alive is None and not force):
            where = f"process {pid} on {run.host}"
            raise Locked(
                f"run {run_id} is still running ({where})"
                if alive
                else f"run {run_id} is recorded as running on another machine ({where})",
                hint="wait for it to end, or stop it; if that process is gone, resume with --force"
                if alive is None
                else "wait for it to end, or stop it (Ctrl-C / SIGTERM) and resume then",
            )
    elif run.state not in RESUMABLE:
        raise InvalidInput(f"run {run_id} ended {run.state}; only {', '.join(RESUMABLE)} runs can be resumed")

    path = runbook_path or run.runbook_path
    if not path or not Path(path).exists():
        raise InvalidInput(
            f"the runbook file of run {run_id} ({path or 'unknown'}) no longer exists; "
            "give it with --runbook PATH (its sha256 must match unless --force)"
        )
    runbook = load_runbook(path, load_actions())
    if runbook.name != run.runbook:
        raise InvalidInput(f"{path} is runbook {runbook.name!r}, but run {run_id} ran {run.runbook!r}")
    changed = runbook.sha256 != run.sha256
    if changed and not force:
        raise InvalidInput(
            f"runbook {runbook.name} ({path}) changed since run {run_id} started "
            f"(sha256 {run.sha256[:12]} then, {runbook.sha256[:12]} now); resuming could skip or repeat "
            "the wrong steps",
            hint="start a new run, or resume anyway with --force",
        )
    env = config.environment(run.environment)
    given = resume_params(run, runbook, dict(again or {}))
    return ResumePlan(run, runbook, env, given, completed_steps(state, run, runbook), changed)
