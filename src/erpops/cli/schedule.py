"""``erpops schedule restore-test --env E --cron EXPR``: run the restore drill on a schedule.

On a Docker host (or with no runtime) it prints a crontab line and a systemd service + timer
(``--out DIR`` writes the two units there); on Kubernetes the drill is the CronJob that
``erpops provision`` applies from ``drills:`` in erpops.yaml, shown here as it would be applied."""

from __future__ import annotations

import json as _json
from pathlib import Path

import typer

from erpops.cli.boundary import guarded
from erpops.cli.common import ConfigOpt, EnvOpt, JsonOpt

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


@app.command("restore-test")
@guarded
def restore_test(
    cron: str = typer.Option(..., "--cron", metavar="SCHEDULE", help='Five-field cron expression, e.g. "0 3 * * *".'),
    env: str = EnvOpt,
    reports: str = typer.Option(
        None,
        "--reports",
        metavar="FOLDER",
        help="Where the drill's JUnit and metrics go (default: the state folder's drills/ENV).",
    ),
    store_reports: bool = typer.Option(
        False, "--store-reports", help="The drill also puts its reports in the object store (host schedules)."
    ),
    out: str = typer.Option(
        None, "--out", metavar="FOLDER", help="Write the systemd units into this folder (e.g. /etc/systemd/system)."
    ),
    time_zone: str = typer.Option(
        None, "--time-zone", metavar="TZ", help="The timer's time zone (default: the host's)."
    ),
    json: bool = JsonOpt,
    config: str = ConfigOpt,
) -> None:
    """Schedule the restore drill of an environment: crontab / systemd timer, or the CronJob."""
    import shutil
    import sys

    from erpops.environments import find_config, load_config
    from erpops.files import state_dir
    from erpops.schedule import host_schedule

    cfg = load_config(config)
    environment = cfg.environment(env)
    if environment.runtime.kind == "kubernetes":
        _kubernetes(environment, cron, json, store_reports)
        return
    source = find_config(config)
    exe = shutil.which("erpops") or str(Path(sys.executable).parent / "erpops")
    folder = Path(reports).expanduser().absolute() if reports else state_dir() / "drills" / environment.name
    conf = str(source.absolute()) if source else None
    plan = host_schedule(
        environment.name, cron, erpops=str(Path(exe).absolute()), config=conf, reports=folder, time_zone=time_zone,
        store_reports=store_reports,
    )  # fmt: skip
    if out:
        target = Path(out).expanduser()
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{plan.unit}.service").write_text(plan.service)
        (target / f"{plan.unit}.timer").write_text(plan.timer)
    if json:
        typer.echo(
            _json.dumps({"crontab": plan.crontab, "service": plan.service, "timer": plan.timer, "unit": plan.unit})
        )
        return
    typer.echo("# crontab (crontab -e):")
    typer.echo(plan.crontab)
    typer.echo("")
    typer.echo(f"# or a systemd timer: {plan.unit}.service")
    typer.echo(plan.service)
    typer.echo(f"# {plan.unit}.timer")
    typer.echo(plan.timer)
    where = out or "/etc/systemd/system"
    typer.echo(f"# then: systemctl daemon-reload && systemctl enable --now {plan.unit}.timer   (units in {where})")


def _kubernetes(environment: object, cron: str, json: bool, store_reports: bool) -> None:
    from erpops.backends.runtime.kubernetes import manifests
    from erpops.environments import Drills, Environment
    from erpops.errors import InvalidInput

    assert isinstance(environment, Environment)
    if environment.drills is None:
        raise InvalidInput(
            f"environment {environment.name!r} runs on Kubernetes: its drill is a CronJob that provision applies; "
            "add drills: (schedule, image, config_secret) to erpops.yaml, then run erpops provision"
        )
    stored = store_reports or environment.drills.store_reports
    drills = Drills.model_validate({**environment.drills.model_dump(), "schedule": cron, "store_reports": stored})
    scheduled = environment.model_copy(update={"drills": drills})
    (job,) = [m.obj for m in manifests.render(scheduled) if m.obj["kind"] == "CronJob"]
    if json:
        typer.echo(_json.dumps(job))
        return
    import yaml

    typer.echo(yaml.safe_dump(job, sort_keys=False).rstrip())
    changed = [f"drills.schedule: {cron!r}"] if environment.drills.schedule != cron else []
    changed += ["drills.store_reports: true"] if stored != environment.drills.store_reports else []
    if changed:
        typer.echo(f"# set {', '.join(changed)} in erpops.yaml, then: erpops provision --env {environment.name}")
    else:
        typer.echo(f"# applied by: erpops provision --env {environment.name}")
