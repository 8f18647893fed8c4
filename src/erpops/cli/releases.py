"""``erpops releases list --env E``: the release history kept in the state store."""

import json as _json

import typer

from erpops.cli.boundary import guarded
from erpops.cli.common import ConfigOpt, EnvOpt, JsonOpt

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


@app.command("list")
@guarded
def list_(
    env: str = EnvOpt,
    json: bool = JsonOpt,
    config: str = ConfigOpt,
    limit: int = typer.Option(20, "--limit", metavar="N", help="Newest N releases."),
) -> None:
    """Releases of an environment, newest first: images, status, run, pre-deploy backup."""
    from erpops.engine.store import open_state_store
    from erpops.environments import load_config
    from erpops.records import list_releases

    cfg = load_config(config)
    environment = cfg.environment(env)
    state = open_state_store(cfg)
    try:
        releases = list_releases(state, environment.name)[:limit]
    finally:
        state.close()
    if json:
        for rel in releases:
            typer.echo(_json.dumps(rel, default=str))
        return
    from rich.markup import escape

    from erpops.cli.tables import age, listing, print_list

    if not releases:
        print_list(f"no releases recorded for {environment.name}")
        return

    # The release id is the deploying run's id (it carries the time, UTC); images wrap, ids do not.
    table = listing("release", "age", "status", "backup", "images", title=f"releases of {environment.name}",
                    wrap=("images",), right=("age",))  # fmt: skip
    style = {"good": "green", "failed": "red", "pending": "yellow"}
    for rel in releases:
        images = "\n".join(f"{svc}={img}" for svc, img in (rel.get("images") or {}).items())  # one per line
        status = rel.get("status", "")
        note = f" (rollback to {rel['rollback_to']})" if rel.get("rollback_to") else ""
        if rel.get("run_id") and rel["run_id"] != rel["id"]:
            note += f" (run {rel['run_id']})"
        backup = rel.get("backup_id") or (f"restored {rel['restored_backup']}" if rel.get("restored_backup") else "")
        table.add_row(
            rel["id"],
            age(rel.get("time") or rel.get("recorded_at")),
            f"[{style.get(status, '')}]{status}[/]{escape(note)}",
            backup or "-",
            escape(images),
        )
    print_list(table)
