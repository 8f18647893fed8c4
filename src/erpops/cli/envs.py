"""``erpops env list|check``: the environments of erpops.yaml, and whether their targets answer."""

import json as _json
from typing import Any

import typer

from erpops.cli.boundary import guarded
from erpops.cli.common import ConfigOpt, JsonOpt
from erpops.errors import ExitCode

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


def _where(value: str | None) -> str:
    """A DSN or URL as it may be shown: references as written, passwords masked."""
    if not value:
        return "-"
    from erpops import secrets

    if secrets.is_reference(value):
        return value
    import re

    return secrets.redact(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value))


def _env_row(env: Any) -> dict[str, Any]:
    return {
        "name": env.name,
        "tier": env.tier,
        "runtime": env.runtime.kind,
        "database": _where(env.database.dsn) if env.database else None,
        "database_name": env.database.name if env.database else None,
        "standby": _where(env.standby.dsn) if env.standby else None,
        "storage": env.storage.url if env.storage else None,
        "object_lock": env.storage.object_lock if env.storage else None,
    }


@app.command("list")
@guarded
def list_(json: bool = JsonOpt, config: str = ConfigOpt) -> None:
    """Environments, their tier and where their parts are (secrets stay references)."""
    from erpops.engine.store import state_url
    from erpops.environments import load_config

    cfg = load_config(config)
    envs = dict(cfg.environments)
    if "sandbox" not in envs:
        from erpops.environments import sandbox_environment

        envs["sandbox"] = sandbox_environment()
    rows = [_env_row(e) for _, e in sorted(envs.items())]
    if json:
        for row in rows:
            typer.echo(_json.dumps(row))
        return
    from rich.markup import escape

    from erpops.cli.tables import fits, list_console, listing, print_list

    con = list_console()
    con.print(f"configuration: {escape(str(cfg.source))}", soft_wrap=True)
    con.print(
        f"state store:   {_where(state_url(cfg)) if state_url(cfg) else 'SQLite (default location)'}", soft_wrap=True
    )
    table = listing("environment", "tier", "runtime", "database", "storage")
    for r in rows:
        tier = f"[bold red]{r['tier']}[/]" if r["tier"] == "production" else r["tier"]
        table.add_row(r["name"], tier, r["runtime"], escape(r["database"] or "-"), escape(r["storage"] or "-"))
    if fits(table, con):
        print_list(table, con)
        return
    # Too narrow for whole DSNs in a table: one block per environment, each URL whole on its line.
    for r in rows:
        tier = f"[bold red]{r['tier']}[/]" if r["tier"] == "production" else r["tier"]
        con.print(f"\n[bold]{r['name']}[/bold]  {tier}  runtime {r['runtime']}")
        con.print(f"  database  {escape(r['database'] or '-')}", soft_wrap=True)
        con.print(f"  storage   {escape(r['storage'] or '-')}", soft_wrap=True)


def _with_topology(cfg: Any, environment: Any) -> Any:
    """The environment with the database endpoints its last failover recorded (as every run sees
    it); as configured when the state store cannot be read (its own check says why)."""
    from erpops.engine.store import open_state_store
    from erpops.errors import ErpopsError
    from erpops.records import apply_topology

    try:
        state = open_state_store(cfg)
    except ErpopsError:
        return environment
    try:
        return apply_topology(environment, state)
    finally:
        state.close()


@app.command("check")
@guarded
def check(
    env: str = typer.Option(None, "--env", "-e", metavar="ENV", help="Environment to check (default: sandbox)."),
    json: bool = JsonOpt,
    config: str = ConfigOpt,
) -> None:
    """Preflight: can every target (database, standby, storage, runtime, Odoo, state store) be
    reached? Exit 3 when one cannot."""
    from erpops.engine.preflight import preflight
    from erpops.environments import load_config

    cfg = load_config(config)
    environment = _with_topology(cfg, cfg.environment(env))
    from erpops.backends.runtime import install_secret_resolvers

    install_secret_resolvers(environment)  # DSNs and keys may be k8s-secret: references
    checks = preflight(cfg, environment)
    failed = [c for c in checks if c.ok is False]
    if json:
        for c in checks:
            typer.echo(_json.dumps({"environment": environment.name, **c.as_dict()}))
    else:
        from rich.markup import escape

        from erpops.cli.tables import list_console, listing, print_list

        con = list_console()
        table = listing("target", "status", "time", "detail", wrap=("detail",), right=("time",),
                        title=f"preflight: {environment.name}")  # fmt: skip
        for c in checks:
            status = {"ok": "[green]ok[/]", "warning": "[yellow]warning[/]", "failed": "[red]FAILED[/]",
                      "skipped": "[dim]skipped[/]"}[c.status]  # fmt: skip
            table.add_row(c.target, status, f"{c.seconds:.2f}s", escape(c.detail))
        print_list(table, con)
        if failed:
            con.print(f"[red]{len(failed)} target(s) unreachable: {', '.join(c.target for c in failed)}[/red]")
    if failed:
        raise typer.Exit(int(ExitCode.UNREACHABLE))
