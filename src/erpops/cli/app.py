"""The Typer application: playbook commands, ``runbook``, ``run`` and the sub-command groups.

Nothing heavy is imported here: each command imports what it needs when it runs.
"""

import importlib.util
from typing import Any

import typer
from typer.core import TyperGroup

from erpops import __version__
from erpops.cli.boundary import abort, guarded
from erpops.cli.common import (
    Common,
    ConfigOpt,
    DryRunOpt,
    EnvOpt,
    FailFastOpt,
    JsonOpt,
    MaxErrorsOpt,
    ParallelOpt,
    ParamOpt,
    RunbookOpt,
    WaitOpt,
    YesOpt,
    execute,
)


class _Root(TyperGroup):
    """The command group that sees every argument before the commands parse theirs."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a click Context (typer vendors click)
        # Click keeps only the last value of a repeated option: a repeated --env is one selection
        # of several environments instead (a fleet run; one-environment commands refuse it)
        return super().parse_args(ctx, joined_envs(args))

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Commands listed in their sections (Playbooks, Runbooks, More), each with its first sentence
        whole: plain text, so `--help` imports no rich (Typer's rich help cost ~50 ms of imports, and
        its markdown and traceback modules are never used here)."""
        sections: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            panel = getattr(cmd, "rich_help_panel", None) or "Commands"
            sections.setdefault(panel, []).append((name, cmd.get_short_help_str(limit=120)))
        for panel, rows in sections.items():
            with formatter.section(panel):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Root,
    name="erpops",
    help="Operate Odoo-based distribution ERP platforms with planned, journaled, resumable runbooks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode=None,  # plain help: see _Root.format_commands
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"erpops {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """erpops: deploy, back up, drill restores, fail over — with a plan first and a journal always."""


def _common(
    env: str | None,
    dry_run: bool,
    yes: bool,
    json: bool,
    runbook: str | None,
    param: list[str] | None,
    config: str | None,
    wait: str | None,
    fleet: tuple[int, str | None, bool] = (1, None, False),
) -> Common:
    return Common(
        env=env, dry_run=dry_run, yes=yes, json=json, runbook=runbook, params=param or [], config=config, wait=wait,
        parallel=fleet[0], max_errors=fleet[1], fail_fast=fleet[2],
    )  # fmt: skip


# --- the seven playbooks ------------------------------------------------------------------------


@app.command(rich_help_panel="Playbooks")
@guarded
def provision(
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Create or converge an environment from templates."""
    execute(
        "provision", _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast))
    )


@app.command(rich_help_panel="Playbooks")
@guarded
def deploy(
    image: str = typer.Option(None, "--image", metavar="IMAGE", help="Image (tag) to roll out."),
    skip_backup: bool = typer.Option(False, "--skip-backup", help="No pre-deploy backup (non-production)."),
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Rolling deploy with a health gate and automatic rollback."""
    execute(
        "deploy",
        _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)),
        {"image": image, "skip_backup": skip_backup},
    )


@app.command(rich_help_panel="Playbooks")
@guarded
def rollback(
    to: str = typer.Option(None, "--to", metavar="RELEASE", help="Release to return to (default: last known good)."),
    restore_backup: bool = typer.Option(
        False,
        "--restore-backup",
        help="Also put the database and filestore back as the target release left them (its successor's "
        "pre-deploy backup, restored into a new database that then replaces the live one).",
    ),
    backup: str = typer.Option(
        None, "--backup", metavar="ID", help="With --restore-backup: restore this backup instead."
    ),
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Back to the last known good release."""
    execute(
        "rollback",
        _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)),
        {"to": to, "restore_backup": restore_backup, "backup": backup},
    )


@app.command(rich_help_panel="Playbooks")
@guarded
def backup(
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Database + filestore to object storage, verified before it counts."""
    execute("backup", _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)))


@app.command("restore-test", rich_help_panel="Playbooks")
@guarded
def restore_test(
    backup: str = typer.Option(None, "--backup", metavar="ID", help="Backup id (default: newest complete)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the scratch database and files."),
    to_time: str = typer.Option(
        None,
        "--to-time",
        metavar="TIME",
        help="Physical: recover to this moment (ISO 8601) or 'latest' (all archived WAL).",
    ),
    to_lsn: str = typer.Option(
        None, "--to-lsn", metavar="LSN", help="Physical: recover to this WAL position (e.g. 0/3000060)."
    ),
    junit: str = typer.Option(None, "--junit", metavar="FILE", help="Write a JUnit XML report here."),
    metrics_file: str = typer.Option(None, "--metrics-file", metavar="FILE", help="Write Prometheus metrics here."),
    store_reports: bool = typer.Option(
        False, "--store-reports", help="Also put the report, JUnit and metrics in the object store."
    ),
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Restore drill with evidence: RTO, RPO and checks. With backup.method physical (or --to-time /
    --to-lsn): the server recovered to a moment from a base backup and the WAL archive."""
    options = {"backup": backup, "keep": keep, "junit": junit, "metrics_file": metrics_file,
               "store_reports": store_reports}  # fmt: skip
    if to_time or to_lsn or _physical(config, env):
        options |= {"to_time": to_time, "to_lsn": to_lsn}
        execute(
            "restore-test-pitr",
            _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)),
            options,
        )
        return
    execute(
        "restore-test",
        _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)),
        options,
    )


def _physical(config: str | None, env: str | None) -> bool:
    """Whether the environment backs up physically (a configuration error is left to the run to say)."""
    from erpops.environments import load_config
    from erpops.errors import ErpopsError

    try:
        cfg = load_config(config)
        return all(cfg.environment(name).backup.method == "physical" for name in cfg.select(env))
    except ErpopsError:
        return False


@app.command(rich_help_panel="Playbooks")
@guarded
def failover(
    force: bool = typer.Option(False, "--force", help="Proceed past lag and fencing refusals."),
    rehearse: bool = typer.Option(False, "--rehearse", help="Rehearsal on sandbox/staging."),
    max_lag: str = typer.Option(None, "--max-lag", metavar="DURATION", help="Largest acceptable replay lag (e.g. 5s)."),
    metrics_file: str = typer.Option(None, "--metrics-file", metavar="FILE", help="Write Prometheus metrics here."),
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Promote the standby, fence the old primary, repoint the application."""
    execute(
        "failover",
        _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)),
        {"force": force, "rehearse": rehearse, "max_lag": max_lag, "metrics_file": metrics_file},
    )


@app.command("scale-for-peak", rich_help_panel="Playbooks")
@guarded
def scale_for_peak(
    replicas: int = typer.Option(None, "--replicas", metavar="N", help="Web replicas for the peak."),
    until: str = typer.Option(
        None,
        "--until",
        metavar="TIME",
        help="When the revert is due: an ISO time (2026-12-24T18:00) or a duration from now (4h).",
    ),
    revert: bool = typer.Option(False, "--revert", help="Restore replicas and deferred crons."),
    revert_due: bool = typer.Option(False, "--revert-due", help="Revert if --until has passed."),
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    runbook: str = RunbookOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Scale for a peak after a database headroom check; defer non-essential crons."""
    if not (revert or revert_due):  # what the peak needs, refused before anything runs
        if replicas is None:
            abort("scale-for-peak needs --replicas N for the peak (or --revert / --revert-due to end one)")
        if until:
            from erpops.actions.peak import parse_until
            from erpops.state import utcnow

            if parse_until(until) <= utcnow():
                abort(f"--until {until!r} is in the past; give a later time or a duration (4h)")
    execute(
        "scale-for-peak",
        _common(env, dry_run, yes, json, runbook, param, config, wait, (parallel, max_errors, fail_fast)),
        {"replicas": replicas, "until": until, "revert": revert, "revert_due": revert_due},
    )


@app.command("run", rich_help_panel="Runbooks")
@guarded
def run_file(
    path: str = typer.Argument(..., metavar="FILE", help="Runbook file."),
    env: str = EnvOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    json: bool = JsonOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
    wait: str = WaitOpt,
    parallel: int = ParallelOpt,
    max_errors: str = MaxErrorsOpt,
    fail_fast: bool = FailFastOpt,
) -> None:
    """Run any runbook file."""
    execute(path, _common(env, dry_run, yes, json, path, param, config, wait, (parallel, max_errors, fail_fast)))


@app.command("status", rich_help_panel="More")
@guarded
def status(
    env: str = EnvOpt,
    json: bool = JsonOpt,
    metrics_file: str = typer.Option(None, "--metrics-file", metavar="FILE", help="Write Prometheus metrics here."),
    long_query: float = typer.Option(
        300, "--long-query", metavar="SECONDS", help="Seconds after which a running query is reported."
    ),
    max_lag: float = typer.Option(
        30, "--max-lag", metavar="SECONDS", help="Seconds of standby replay lag before a warning."
    ),
    config: str = ConfigOpt,
) -> None:
    """On-call view of each environment: application, database, backups, drills, crons, TLS.

    Also the release serving and an active peak; each line ok, warning or failing with the reason,
    one row per environment over a group. Exit 0 all ok, 1 a warning or failure, 3 unreachable."""
    from erpops.cli.status import status as show

    show(env, json, metrics_file, config, long_query, max_lag)


def _mount(module: str, name: str, help_text: str) -> None:
    """Add a sub-command group (its module is imported now but must import nothing heavy)."""
    if importlib.util.find_spec(module) is None:
        return
    sub: Any = importlib.import_module(module).app
    app.add_typer(sub, name=name, help=help_text, rich_help_panel="More")


_mount("erpops.cli.runbooks", "runbook", "List, show, validate and plan runbooks.")
_mount("erpops.cli.runs", "runs", "The journal: list, show, resume runs; clear stale locks.")
_mount("erpops.cli.backups", "backups", "Backups in object storage and their state.")
_mount("erpops.cli.releases", "releases", "Release history of an environment.")
_mount("erpops.cli.envs", "env", "Environments from erpops.yaml, and preflight checks.")
_mount("erpops.cli.sandbox", "sandbox", "The embedded default environment (PostgreSQL primary + standby).")
_mount("erpops.cli.wal", "wal", "The WAL archive: archive_command, restore_command, its freshness.")
_mount("erpops.cli.schedule", "schedule", "Run a drill on a schedule: crontab, systemd timer, or Kubernetes CronJob.")


def joined_envs(argv: list[str]) -> list[str]:
    """``--env a --env b`` (or ``-e``, ``--env=a``) as one ``--env a,b``: a repeated --env is a
    selection of several, never one silently dropping the other."""
    values: list[str] = []
    out: list[str] = []
    first: int | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        value = None
        if arg in ("--env", "-e") and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--env="):
            value, i = arg.split("=", 1)[1], i + 1
        elif arg.startswith("-e") and len(arg) > 2 and not arg.startswith("--"):
            value, i = arg[2:], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        if first is None:
            first = len(out)
            out += ["--env", ""]
        values.append(value)
    if first is not None:
        out[first + 1] = ",".join(values)
    return out


def run() -> None:
    # a reader that goes away (`| head -1`) is taken care of by sys.stdout itself (ReaderGone)
    app()
