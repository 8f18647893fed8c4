"""``erpops status [--env E|GROUP]``: the state of one or many environments on one screen."""

from __future__ import annotations

import json as _json
from typing import Any

import typer

from erpops.errors import ExitCode

#: Columns of the one-row-per-environment table (several environments).
COLUMNS = ("app", "database", "queries", "replication", "crons", "backups", "restore-tested", "wal", "drill", "tls",
           "release", "peak")  # fmt: skip
_STYLE = {"ok": "green", "warning": "yellow", "failing": "bold red", "skipped": "dim"}


def status(
    env: str | None, json: bool, metrics_file: str | None, config: str | None, long_query: float, max_lag: float = 30.0
) -> None:
    from erpops.engine.status import Limits, collect
    from erpops.engine.store import open_existing_state_store
    from erpops.environments import load_config

    cfg = load_config(config)
    names = cfg.select(env)
    from erpops.backends.runtime import install_secret_resolvers

    for name in names:
        install_secret_resolvers(cfg.environment(name))
    found = collect(
        cfg, names, lambda: open_existing_state_store(cfg), Limits(long_query=long_query, replication_lag=max_lag)
    )
    if metrics_file:
        _metrics(metrics_file, found)
    if json:
        for s in found:
            typer.echo(_json.dumps(s.as_dict(), default=str))
    elif len(found) == 1:
        _one(found[0])
    else:
        _table(found)
    if any(s.unreachable for s in found) and all(s.unreachable for s in found):
        raise typer.Exit(int(ExitCode.UNREACHABLE))
    if any(s.level != "ok" for s in found):
        raise typer.Exit(int(ExitCode.STEP_FAILED))


def _one(s: Any) -> None:
    from rich.console import Console
    from rich.markup import escape

    con = Console(highlight=False)
    con.print(f"[bold]{s.environment}[/bold]: [{_STYLE[s.level]}]{s.level}[/]  ({s.seconds:.2f}s)")
    for ln in s.lines:
        con.print(f"  {ln.check:<15} [{_STYLE[ln.level]}]{ln.level:<8}[/] {escape(ln.detail)}")


def _table(found: list[Any]) -> None:
    from rich.markup import escape

    from erpops.cli.tables import list_console, listing, print_list

    present = [c for c in COLUMNS if any(ln.check == c and ln.level != "skipped" for s in found for ln in s.lines)]
    table = listing("environment", "status", *present)
    for s in found:
        by = {ln.check: ln for ln in s.lines}
        cells = []
        for col in present:
            ln = by.get(col)
            cells.append(f"[{_STYLE[ln.level]}]{escape(_short(ln))}[/]" if ln else "")
        table.add_row(s.environment, f"[{_STYLE[s.level]}]{s.level}[/]", *cells)
    con = list_console()
    print_list(table, con)
    for s in found:
        for ln in s.lines:
            if ln.level in ("warning", "failing"):
                con.print(f"  {s.environment} {ln.check}: [{_STYLE[ln.level]}]{escape(ln.detail)}[/]")


def _short(ln: Any) -> str:
    if ln.level == "ok":
        for key in ("release",):
            if key in ln.values:
                return str(ln.values[key])
        return "ok"
    return ln.level


def _metrics(path: str, found: list[Any]) -> None:
    from erpops.files import write_atomic
    from erpops.reports import PrometheusText

    text = PrometheusText()
    code = {"ok": 0, "skipped": 0, "warning": 1, "failing": 2}
    text.metric(
        "erpops_status",
        "gauge",
        "Each check of erpops status: 0 ok, 1 warning, 2 failing.",
        [({"environment": s.environment, "check": ln.check}, code[ln.level]) for s in found for ln in s.lines],
    )
    for key, help_text in (("backups_age_seconds", "Age of the newest verified backup."),
                           ("restore_tested_age_seconds", "Age of the newest restore-tested backup."),
                           ("wal_age_seconds", "Age of the newest archived WAL segment."),
                           ("connections", "Client connections in use."),
                           ("overdue_crons", "Active Odoo scheduled jobs overdue by more than an hour."),
                           ("tls_days_left", "Days until the ingress certificate expires.")):  # fmt: skip
        samples = [
            ({"environment": s.environment}, ln.values[key]) for s in found for ln in s.lines if key in ln.values
        ]
        text.metric(f"erpops_status_{key}", "gauge", help_text, samples)
    write_atomic(path, text.text().encode())
