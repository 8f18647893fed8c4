"""Engine semantics: when, outputs, retry and backoff, timeouts that kill, undo order, finally,
on_failure: continue, runbook.call, dry-run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from erpops.errors import ExitCode
from tests.unit.conftest import HEADER


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def append(path: Path, text: str) -> str:
    return f'{{argv: [sh, -c, "echo {text} >> {path}"]}}'


def test_outputs_flow_to_later_steps_and_when_skips(runner, write_runbook, tmp_path):
    rb = write_runbook(
        HEADER
        + """
params:
  flag: {type: boolean, default: false}
steps:
  - id: first
    action: exec
    with: {argv: [sh, -c, "echo hello"]}
  - id: skipped
    when: "{{ params.flag }}"
    action: assert
    with: {that: false}
  - id: second
    action: assert
    with: {that: "{{ steps.first.outputs.stdout_tail == 'hello' }}", message: "output not passed"}
"""
    )
    result = runner.run(rb)
    assert result.state == "succeeded", result.error
    assert [s.status for s in result.steps] == ["succeeded", "skipped", "succeeded"]
    assert result.steps[0].outputs["stdout_tail"] == "hello"


def test_retry_only_temporary_errors_with_capped_backoff(runner, write_runbook, tmp_path):
    counter = tmp_path / "count"
    # exit 75 is declared temporary: retried; the attempts file shows 3 attempts
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: flaky
    action: exec
    with: {{argv: [sh, -c, "echo x >> {counter}; exit 75"], temporary_exit_codes: [75]}}
    retry: {{attempts: 3, backoff: 100ms, max_backoff: 150ms, exponential: true}}
"""
    )
    start = time.monotonic()
    result = runner.run(rb)
    elapsed = time.monotonic() - start
    assert result.state == "failed"
    assert len(lines(counter)) == 3
    delays = [e["delay"] for e in runner.events("step.retry")]
    assert delays == [0.1, 0.15]  # 100ms, then 200ms capped at 150ms
    assert elapsed >= 0.25


def test_permanent_errors_are_not_retried(runner, write_runbook, tmp_path):
    counter = tmp_path / "count"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: broken
    action: exec
    with: {{argv: [sh, -c, "echo x >> {counter}; exit 3"]}}
    retry: {{attempts: 5, backoff: 10ms}}
"""
    )
    result = runner.run(rb)
    assert result.state == "failed" and result.exit_code == ExitCode.STEP_FAILED
    assert len(lines(counter)) == 1
    assert "exited with code 3" in (result.error or "")


def test_retry_then_success(runner, write_runbook, tmp_path):
    counter = tmp_path / "count"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: eventually
    action: exec
    with:
      argv: [sh, -c, "echo x >> {counter}; test $(wc -l < {counter}) -ge 2 || exit 75"]
      temporary_exit_codes: [75]
    retry: {{attempts: 4, backoff: 10ms}}
"""
    )
    result = runner.run(rb)
    assert result.state == "succeeded"
    assert result.steps[0].attempts == 2


def test_retry_delays_follow_backoff_formula():
    from erpops.runbook.schema import RetrySpec

    r = RetrySpec(attempts=6, backoff="1s", max_backoff="5s", exponential=True)
    assert [r.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    flat = RetrySpec(attempts=3, backoff="2s", exponential=False)
    assert [flat.delay(n) for n in range(1, 3)] == [2, 2]


def test_timeout_kills_hung_exec_and_its_children(runner, write_runbook, tmp_path):
    pidfile = tmp_path / "child.pid"
    # The shell starts a background sleeper (a grandchild) and waits: both must die.
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: hung
    action: exec
    with: {{argv: [sh, -c, "sleep 60 & echo $! > {pidfile}; wait"]}}
    timeout: 500ms
"""
    )
    start = time.monotonic()
    result = runner.run(rb)
    assert time.monotonic() - start < 5
    assert result.state == "failed"
    assert result.steps[0].status == "timeout"
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {pid} survived the step timeout")


def test_exec_timeout_parameter_kills_too(runner, write_runbook):
    rb = write_runbook(
        HEADER
        + """
steps:
  - id: hung
    action: exec
    with: {argv: [sleep, "30"], timeout: 300ms}
"""
    )
    start = time.monotonic()
    result = runner.run(rb)
    assert time.monotonic() - start < 5
    assert result.steps[0].status == "timeout"


def test_a_step_timeout_may_be_a_template(runner, write_runbook):
    """Regression (issue 16 item 12): a step's timeout could not come from a parameter (the README's
    own example did not validate)."""
    rb = write_runbook(
        HEADER
        + """
params:
  limit: {type: duration, default: 5m}
steps:
  - id: hung
    action: exec
    with: {argv: [sleep, "30"]}
    timeout: "{{ params.limit }}"
"""
    )
    start = time.monotonic()
    result = runner.run(rb, {"limit": "300ms"})
    assert time.monotonic() - start < 5
    assert result.steps[0].status == "timeout", result.steps[0]
    free = write_runbook(
        HEADER
        + """
params:
  limit: {type: string}
steps:
  - {id: s, action: log, with: {message: x}, timeout: "{{ params.limit }}"}
"""
    )
    res = runner.run(free, {"limit": "later"})  # not a duration: the step fails, naming it
    assert res.state == "failed" and (res.steps[0].error or "").startswith("timeout: bad duration 'later'"), res
    assert runner.run(free).state == "succeeded"  # unset: no timeout


def test_undo_runs_in_reverse_order_then_finally(runner, write_runbook, tmp_path):
    log = tmp_path / "log"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: one
    action: exec
    with: {append(log, "do-one")}
    undo: {{action: exec, with: {append(log, "undo-one")}}}
  - id: two
    action: exec
    with: {append(log, "do-two")}
    undo: {{action: exec, with: {append(log, "undo-two")}}}
  - id: three
    action: exec
    with: {{argv: [sh, -c, "exit 1"]}}
    undo: {{action: exec, with: {append(log, "undo-three-must-not-run")}}}
  - id: four
    action: exec
    with: {append(log, "do-four-must-not-run")}
finally:
  - id: cleanup
    action: exec
    with: {append(log, "finally")}
"""
    )
    result = runner.run(rb)
    assert lines(log) == ["do-one", "do-two", "undo-two", "undo-one", "finally"]
    assert result.state == "rolled-back"
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert result.failed_step == "three"


def test_failure_without_undo_is_failed_and_finally_runs(runner, write_runbook, tmp_path):
    log = tmp_path / "log"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: boom
    action: assert
    with: {{that: false, message: "the invariant broke"}}
finally:
  - id: cleanup
    action: exec
    with: {append(log, "finally")}
"""
    )
    result = runner.run(rb)
    assert result.state == "failed" and result.exit_code == ExitCode.STEP_FAILED
    assert "the invariant broke" in result.error
    assert lines(log) == ["finally"]


def test_finally_runs_on_success(runner, write_runbook, tmp_path):
    log = tmp_path / "log"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: ok
    action: exec
    with: {append(log, "main")}
finally:
  - id: cleanup
    action: exec
    with: {append(log, "finally")}
"""
    )
    assert runner.run(rb).state == "succeeded"
    assert lines(log) == ["main", "finally"]


def test_failing_undo_leaves_run_failed(runner, write_runbook):
    rb = write_runbook(
        HEADER
        + """
steps:
  - id: one
    action: log
    with: {message: one}
    undo: {action: assert, with: {that: false, message: "undo broke"}}
  - id: two
    action: assert
    with: {that: false}
"""
    )
    result = runner.run(rb)
    assert result.state == "failed"
    assert [(s.id, s.phase, s.status) for s in result.steps][-1] == ("one", "undo", "failed")


def test_on_failure_continue(runner, write_runbook, tmp_path):
    log = tmp_path / "log"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: optional
    action: assert
    with: {{that: false}}
    on_failure: continue
  - id: after
    action: exec
    with: {append(log, "after")}
"""
    )
    result = runner.run(rb)
    assert result.state == "succeeded"
    assert [s.status for s in result.steps] == ["failed", "succeeded"]
    assert lines(log) == ["after"]


def test_runbook_call_passes_params_and_returns_outputs(runner, write_runbook, tmp_path):
    write_runbook(
        HEADER.replace("name: t", "name: child")
        + """
params:
  greeting: {type: string, required: true}
steps:
  - id: echo
    action: exec
    with: {argv: [sh, -c, "echo {{ params.greeting }}"]}
outputs:
  said: "{{ steps.echo.outputs.stdout_tail }}"
""",
        name="child.yaml",
    )
    parent = write_runbook(
        HEADER
        + """
steps:
  - id: call
    action: runbook.call
    with: {runbook: child.yaml, params: {greeting: bonjour}}
  - id: check
    action: assert
    with: {that: "{{ steps.call.outputs.said == 'bonjour' }}", message: "child outputs not returned"}
"""
    )
    result = runner.run(parent)
    assert result.state == "succeeded", result.error
    started = runner.events("run.started")
    assert [e["runbook"] for e in started] == ["t", "child"]
    assert started[1]["parent"] == started[0]["run_id"]


def test_runbook_call_failure_fails_the_step(runner, write_runbook):
    write_runbook(
        HEADER.replace("name: t", "name: child")
        + """
steps:
  - id: boom
    action: assert
    with: {that: false, message: "child broke"}
""",
        name="child.yaml",
    )
    parent = write_runbook(
        HEADER
        + """
steps:
  - id: call
    action: runbook.call
    with: {runbook: child.yaml}
"""
    )
    result = runner.run(parent)
    assert result.state == "failed"
    assert "child broke" in result.error


def test_dry_run_changes_nothing(runner, write_runbook, tmp_path):
    marker = tmp_path / "created-by-exec"
    rb = write_runbook(
        HEADER
        + f"""
steps:
  - id: create
    action: exec
    with: {{argv: [touch, "{marker}"]}}
"""
    )
    result = runner.run(rb, dry_run=True)
    assert result.state == "planned"
    assert not marker.exists()
    plan = runner.events("run.planned")[0]["plan"]
    assert plan[0]["change"] == "may change"
    assert runner.state.runs == {}  # nothing journaled as run


def test_template_error_at_run_time_names_step_and_line(runner, write_runbook):
    rb = write_runbook(
        HEADER
        + """
steps:
  - id: first
    action: log
    with: {message: hi}
  - id: second
    action: log
    with: {message: "{{ steps.first.outputs.nope }}"}
"""
    )
    result = runner.run(rb)
    assert result.state == "failed"
    assert result.error.startswith("step second: ") and "rb1.yaml:9 with:" in result.error and "nope" in result.error


def test_params_are_typed_and_checked(runner, write_runbook):
    from erpops.errors import ValidationFailed

    rb = write_runbook(
        HEADER
        + """
params:
  jobs: {type: integer, default: 2, minimum: 1, maximum: 8}
  mode: {type: enum, choices: [fast, safe], default: safe}
  wait: {type: duration, default: 1m}
  name: {type: string, pattern: "[a-z]+", default: abc}
steps:
  - id: show
    action: assert
    with: {that: "{{ params.jobs == 4 and params.wait == 60 and params.mode == 'fast' }}"}
"""
    )
    assert runner.run(rb, {"jobs": "4", "mode": "fast"}).state == "succeeded"
    for bad in ({"jobs": "0"}, {"jobs": "x"}, {"mode": "slow"}, {"name": "ABC"}, {"wait": "soon"}, {"nope": 1}):
        with pytest.raises(ValidationFailed) as exc:
            runner.run(rb, bad)
        assert str(rb) in str(exc.value)
