"""Every validation error names file, line and path, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from erpops.actions.base import load_actions
from erpops.errors import ValidationFailed
from erpops.runbook.loader import load_runbook
from tests.unit.conftest import HEADER

CASES = {
    "yaml-syntax": (
        "apiVersion: erpops/v1\nkind: Runbook\nsteps: [\n  - id: a\n",
        None,
        "YAML syntax error",
    ),
    "api-version": (
        "apiVersion: erpops/v9\nkind: Runbook\nmetadata: {name: t, version: 1.0.0}\nsteps: []\n",
        (1, "apiVersion"),
        "unknown apiVersion 'erpops/v9'",
    ),
    "unknown-action": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: x}\n  - id: b\n    action: lgo\n",
        (9, "steps[1].action"),
        "unknown action 'lgo'",
    ),
    "unknown-with-field": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: x, colour: red}\n",
        (7, "steps[0].with.colour"),
        "unknown field for action log",
    ),
    "mistyped-with-field": (
        HEADER + "steps:\n  - id: a\n    action: exec\n    with:\n      argv: [ls]\n      check: maybe\n",
        (9, "steps[0].with.check"),
        "exec field 'check'",
    ),
    "missing-with-field": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {level: info}\n",
        (7, "steps[0].with"),
        "needs field 'message'",
    ),
    "shell-string": (
        HEADER + "steps:\n  - id: a\n    action: exec\n    with: {argv: 'rm -rf /tmp/x'}\n",
        (7, "steps[0].with.argv"),
        "not a shell string",
    ),
    "duplicate-step-id": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: x}\n"
        "finally:\n  - id: a\n    action: log\n    with: {message: y}\n",
        (9, "finally[0].id"),
        "duplicate step id 'a' (first at line 5)",
    ),
    "later-step-reference": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: '{{ steps.b.outputs.message }}'}\n"
        "  - id: b\n    action: log\n    with: {message: x}\n",
        (7, "steps[0].with.message"),
        "refers to step 'b', which has not run yet",
    ),
    "unknown-step-reference": (
        HEADER + "steps:\n  - id: a\n    action: log\n    when: '{{ steps.zz.outputs.x }}'\n    with: {message: x}\n",
        (7, "steps[0].when"),
        "unknown step 'zz'",
    ),
    "unknown-template-name": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: '{{ secrets.x }}'}\n",
        (7, "steps[0].with.message"),
        "unknown name 'secrets'",
    ),
    "unknown-param-reference": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: '{{ params.nope }}'}\n",
        (7, "steps[0].with.message"),
        "unknown parameter 'nope'",
    ),
    "template-syntax": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: '{{ params. }}'}\n",
        (7, "steps[0].with.message"),
        "template syntax error",
    ),
    "bad-duration": (
        HEADER + "steps:\n  - id: a\n    action: log\n    with: {message: x}\n    timeout: 10 parsecs\n",
        (8, "steps[0].timeout"),
        "bad duration",
    ),
    "bad-retry-duration": (
        HEADER
        + "steps:\n  - id: a\n    action: log\n    with: {message: x}\n    retry: {attempts: 2, backoff: soon}\n",
        (8, "steps[0].retry.backoff"),
        "bad duration",
    ),
    "bad-semver": (
        "apiVersion: erpops/v1\nkind: Runbook\nmetadata:\n  name: t\n  version: '1.2'\nsteps: []\n",
        (5, "metadata.version"),
        "not semantic versioning",
    ),
    "unknown-top-level-field": (
        HEADER + "stepz: []\nsteps: []\n",
        (4, "stepz"),
        "unknown field",
    ),
    "bad-param-default": (
        HEADER + "params:\n  jobs: {type: integer, default: many}\nsteps: []\n",
        (5, "params.jobs.default"),
        "expects an integer",
    ),
    "bad-step-id": (
        HEADER + "steps:\n  - id: Bad Id\n    action: log\n    with: {message: x}\n",
        (5, "steps[0].id"),
        "step id must be",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_error_names_file_line_and_path(case, write_runbook):
    text, where, message = CASES[case]
    path = write_runbook(text)
    with pytest.raises(ValidationFailed) as exc:
        load_runbook(path, load_actions())
    issues = exc.value.issues
    rendered = [str(i) for i in issues]
    assert any(message in r for r in rendered), rendered
    issue = next(i for i in issues if message in str(i))
    assert issue.file == str(path)
    if where is not None:
        line, doc_path = where
        assert (issue.line, issue.path) == (line, doc_path), rendered
    else:
        assert issue.line is not None


def test_all_errors_are_reported_not_just_the_first(write_runbook):
    path = write_runbook(
        HEADER
        + """
steps:
  - id: a
    action: nosuch
  - id: a
    action: log
    with: {message: "{{ steps.zz.outputs }}", extra: 1}
"""
    )
    with pytest.raises(ValidationFailed) as exc:
        load_runbook(path, load_actions())
    text = "\n".join(map(str, exc.value.issues))
    for fragment in ("unknown action 'nosuch'", "duplicate step id", "unknown step 'zz'", "unknown field"):
        assert fragment in text


def test_missing_required_param_names_its_definition(write_runbook, runner):
    path = write_runbook(
        HEADER
        + """
params:
  image: {type: string, required: true}
steps:
  - id: a
    action: log
    with: {message: "{{ params.image }}"}
"""
    )
    with pytest.raises(ValidationFailed) as exc:
        runner.run(path)
    issue = exc.value.issues[0]
    assert (issue.line, issue.path) == (6, "params.image")
    assert "missing required parameter 'image'" in issue.message
    assert runner.state.runs == {}


def test_shipped_runbooks_validate():
    from erpops.runbook.library import available, packaged_dir

    books = available()
    assert {"provision", "failover"} <= set(books)
    for name, path in books.items():
        if path.parent == packaged_dir():
            rb = load_runbook(path, load_actions())
            assert rb.name == name
            assert rb.spec.metadata.description, f"{name} must describe its steps"


def test_yaml_alias_bombs_and_self_references_are_refused_quickly(tmp_path):
    """Regression: a "billion laughs" document ran ~50 s into MemoryError and a self-referencing
    alias into RecursionError — both internal errors. Now: exit-2 issues with a line, at once."""
    import time

    from erpops.errors import ValidationFailed
    from erpops.yamlfile import load

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ValidationFailed) as caught:
        load(bomb)
    assert time.monotonic() - started < 5
    (issue,) = caught.value.issues
    assert "expands to more than 100,000 values" in issue.message and issue.line is not None
    assert caught.value.exit_code == 2

    selfref = tmp_path / "self.yaml"
    selfref.write_text("steps: &s\n  - id: x\n    with: *s\n")
    with pytest.raises(ValidationFailed) as caught:
        load(selfref)
    assert "refers to a value that contains it" in caught.value.issues[0].message

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("apiVersion: erpops/v1\nmetadata: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ValidationFailed) as caught:
        load(latin1)
    (issue,) = caught.value.issues
    assert issue.line == 2 and "not UTF-8" in issue.message and "0xe9" in issue.message


def test_template_limits_and_sandbox_escapes_are_user_errors(write_runbook, runner):
    """Regression: ``range(100000000000)|list`` was an internal error, ``999999999 ** 999999999``
    hung the plan at 100% CPU, and sandbox escapes passed ``runbook validate`` and failed only at
    run time, after earlier steps ran."""
    import time

    from erpops.runbook.templating import RenderError, render_string

    for text in ("{{ range(100000000000)|list }}", "{{ 999999999 ** 999999999 }}", "{{ 'x' * 1000000000 }}"):
        started = time.monotonic()
        with pytest.raises(RenderError):
            render_string(text, {})
        assert time.monotonic() - started < 1, text
    assert render_string("{{ 2 ** 10 }}", {}) == 1024 and render_string("{{ 'ab' * 2 }}", {}) == "abab"

    for escape in ("{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}", "{{ params['__class__'] }}"):
        path = write_runbook(
            HEADER
            + "steps:\n  - {id: first, action: log, with: {message: hello}}\n"
            + f'  - {{id: second, action: log, with: {{message: "{escape}"}}}}\n'
        )
        with pytest.raises(ValidationFailed) as caught:
            load_runbook(path, load_actions())
        (issue,) = caught.value.issues
        assert (issue.line, issue.path) == (6, "steps[1].with.message"), issue
        assert "names starting with _ are not available" in issue.message


def test_the_readme_runbook_example_validates(tmp_path):
    """Regression: the README's own runbook example did not validate (a templated step timeout)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Runbook format", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    runbook = load_runbook(path, load_actions())
    assert runbook.name == "nightly-vacuum" and [s.id for s in runbook.spec.steps] == ["analyze", "health"]


def test_a_templated_timeout_is_checked_like_any_template(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(HEADER + 'steps:\n  - {id: a, action: log, with: {message: x}, timeout: "{{ params.nope }}"}\n')
    with pytest.raises(ValidationFailed) as exc:
        load_runbook(path, load_actions())
    assert any("steps[0].timeout" in str(i) and "unknown parameter 'nope'" in str(i) for i in exc.value.issues)


def _steps(n: int) -> str:
    lines = [f'  - {{id: s{i}, action: log, with: {{message: "{{{{ params.x }}}} {i}"}}}}' for i in range(n)]
    return HEADER + "params: {x: {type: string, default: a}}\nsteps:\n" + "\n".join(lines) + "\n"


def test_validation_time_grows_linearly_with_the_steps(tmp_path: Path) -> None:
    """Regression (issue 16 item 12): validation was quadratic in the step count (16,000 steps took
    11.9 s): each step rebuilt the set of the steps before it, and the garbage collector walked the
    parsed document again and again. Four times the steps must take about four times as long (a
    quadratic cost measured 6.9x here); the best of two runs each, against noise."""
    import time

    actions = load_actions()
    seconds = {}
    for n in (4000, 16000):
        path = tmp_path / f"r{n}.yaml"
        path.write_text(_steps(n))
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            load_runbook(path, actions)
            best = min(best, time.perf_counter() - start)
        seconds[n] = best
    ratio = seconds[16000] / seconds[4000]
    assert ratio < 5.5, f"4x the steps took {ratio:.1f}x as long ({seconds})"
