"""What a resume takes from the journal: completed steps (not undone since), parameters."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from erpops.actions.base import load_actions
from erpops.engine.resume import completed_steps, prepare_resume, resume_params
from erpops.environments import Config, Environment
from erpops.errors import InvalidInput
from erpops.runbook.loader import load_runbook
from erpops.runbook.params import journal_params
from erpops.state import MemoryStateStore, RunRecord, StepRecord, utcnow

RUNBOOK = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: r, version: 1.0.0}
params:
  n: {type: integer, default: 2}
  lit: {type: secret}
  ref: {type: secret, default: "env:SOME_VAR"}
  tpl: {type: secret, default: "{{ env.vars.token }}"}
steps:
  - {id: a, action: log, with: {message: a}}
  - {id: b, action: log, with: {message: b}}
  - {id: c, action: log, with: {message: c}}
finally:
  - {id: f, action: log, with: {message: f}}
"""


@pytest.fixture
def runbook(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RUNBOOK))
    return load_runbook(path, load_actions())


def _run(runbook, state="failed", params=None) -> RunRecord:
    return RunRecord(
        "r1",
        "r",
        "1.0.0",
        runbook.sha256,
        "test",
        params or {"n": 2},
        "u",
        "h",
        utcnow(),
        state=state,
        runbook_path=str(runbook.path),
    )


def _step(store: MemoryStateStore, sid: str, phase: str, outcome: str, outputs=None) -> None:
    rec = StepRecord("r1", sid, 1, phase, utcnow(), utcnow(), outcome, outputs or {})
    store.start_step(rec)
    store.finish_step(rec)


def test_completed_steps_skip_undone_failed_and_in_flight(runbook) -> None:
    store = MemoryStateStore()
    run = _run(runbook)
    store.start_run(run)
    _step(store, "a", "main", "succeeded", {"x": 1})
    _step(store, "b", "main", "succeeded", {"y": 2})
    _step(store, "c", "main", "failed")
    _step(store, "b", "undo", "succeeded")
    _step(store, "f", "finally", "succeeded")
    assert completed_steps(store, run, runbook) == {"a": {"x": 1}}
    _step(store, "b", "main", "succeeded", {"y": 3})  # re-done by an earlier resume
    _step(store, "c", "main", "running")  # in flight when killed
    assert completed_steps(store, run, runbook) == {"a": {"x": 1}, "b": {"y": 3}}


def test_journal_params_keep_references_and_templates_mask_literals(runbook) -> None:
    given = {"lit": "hunter2-literal"}
    bound = {"n": 2, "lit": "hunter2-literal", "ref": "resolved-value", "tpl": "resolved-too"}
    assert journal_params(runbook, given, bound) == {
        "n": 2,
        "lit": "***",
        "ref": "env:SOME_VAR",
        "tpl": "{{ env.vars.token }}",
    }


def test_resume_params(runbook) -> None:
    journal = {"n": 5, "lit": "***", "ref": "env:SOME_VAR", "tpl": "{{ env.vars.token }}"}
    run = _run(runbook, params=journal)
    with pytest.raises(InvalidInput, match="--param lit="):
        resume_params(run, runbook, {})
    given = resume_params(run, runbook, {"lit": "again"})
    assert given == {"n": 5, "lit": "again"}  # defaults (reference, template) apply again
    with pytest.raises(InvalidInput, match="keeps the parameters it started with"):
        resume_params(run, runbook, {"lit": "again", "n": 6})
    with pytest.raises(InvalidInput, match="no parameter 'zzz'"):
        resume_params(run, runbook, {"lit": "again", "zzz": 1})
    given_ref = resume_params(_run(runbook, params={**journal, "lit": "env:LIT"}), runbook, {})
    assert given_ref["lit"] == "env:LIT"


def test_prepare_resume_refusals(runbook, tmp_path: Path) -> None:
    store = MemoryStateStore()
    cfg = Config(environments={"test": Environment()})
    with pytest.raises(InvalidInput, match="no run"):
        prepare_resume(store, cfg, "nope")
    store.start_run(_run(runbook, state="succeeded", params={"n": 2, "lit": "env:X"}))
    with pytest.raises(InvalidInput, match="nothing to resume"):
        prepare_resume(store, cfg, "r1")
    store.runs["r1"].state = "failed"
    plan = prepare_resume(store, cfg, "r1")
    assert plan.env.name == "test" and plan.given == {"n": 2, "lit": "env:X"} and not plan.changed_runbook
    runbook.path.write_text(runbook.path.read_text() + "\n# edited\n")
    with pytest.raises(InvalidInput, match="changed since run r1"):
        prepare_resume(store, cfg, "r1")
    assert prepare_resume(store, cfg, "r1", force=True).changed_runbook
    store.runs["r1"].parent_id = "p0"
    with pytest.raises(InvalidInput, match="resume that run instead"):
        prepare_resume(store, cfg, "r1")
