"""``erpops backups list``: an environment's backups in object storage, with their state."""

import json as _json

import typer

from erpops.cli.boundary import guarded
from erpops.cli.common import ConfigOpt, EnvOpt, JsonOpt

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)

_STATE_STYLE = {
    "incomplete": "yellow",
    "complete": "",
    "verified": "green",
    "restore-tested": "bold green",
    "corrupt": "bold red",
}


@app.command("list")
@guarded
def list_(env: str = EnvOpt, json: bool = JsonOpt, config: str = ConfigOpt) -> None:
    """Backups newest first: id, time, size, state (incomplete / complete / verified /
    restore-tested / corrupt) and Object Lock. Incomplete backups (no manifest) are never
    restored; pruning removes them after the grace period."""
    from erpops.backends.storage.catalog import Catalog
    from erpops.cli.common import environment_store

    environment, store = environment_store(config, env)
    entries = Catalog(store, environment.name).list()
    if json:
        for entry in entries:
            typer.echo(_json.dumps(entry.as_dict()))
        return
    from rich.markup import escape

    from erpops.cli.console import human_bytes
    from erpops.cli.tables import age, list_console, listing, print_list

    console = list_console()
    if not entries:
        console.print(f"no backups of {environment.name} in {store.url}")
        return
    console.print(f"[bold]backups of {environment.name}[/bold] in {escape(store.url)}")
    # The id carries the backup's time (UTC); the age beside it is the recovery point exposure.
    table = listing("id", "age", "size", "state", "lock", "notes", wrap=("lock", "notes"), right=("age", "size"))
    for e in entries:
        until = e.retain_until
        if e.legal_hold:
            lock = "legal hold"
        elif until is not None and e.locked():
            lock = f"{e.lock_mode or 'locked'} until {until:%Y-%m-%d}"
        else:
            lock = "-"
        style = _STATE_STYLE.get(e.state, "")
        state = f"[{style}]{e.state}[/]" if style else e.state
        table.add_row(e.backup_id, age(e.time), human_bytes(e.size), state, lock, "; ".join(e.problems))
    print_list(table, console)
