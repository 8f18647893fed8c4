"""``erpops runbook list|show|validate|plan|reference``."""

import json as _json
from pathlib import Path
from typing import Any

import typer

from erpops.cli.boundary import guarded
from erpops.cli.common import Common, ConfigOpt, EnvOpt, JsonOpt, ParamOpt, execute

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


@app.command("list")
@guarded
def list_(json: bool = JsonOpt) -> None:
    """Name, version and sha256 of every runbook erpops can find (user directories first)."""
    from erpops.actions.base import load_actions
    from erpops.cli.tables import listing, print_list
    from erpops.errors import ValidationFailed
    from erpops.runbook.library import available
    from erpops.runbook.loader import load_runbook

    rows: list[dict[str, Any]] = []
    for name, path in sorted(available().items()):
        try:
            rb = load_runbook(path, load_actions())
            rows.append({"name": name, "version": rb.version, "sha256": rb.sha256, "path": str(path), "valid": True})
        except ValidationFailed as exc:
            rows.append(
                {"name": name, "version": None, "sha256": None, "path": str(path), "valid": False, "error": str(exc)}
            )
    if json:
        for row in rows:
            typer.echo(_json.dumps(row))
        return
    # A short sha256 as git shows short commits (the whole one: `runbook show`, --json).
    table = listing("name", "version", "sha256", "path", wrap=("path",))
    for row in rows:
        table.add_row(
            row["name"], row["version"] or "[red]invalid[/red]", (row["sha256"] or "")[:12] or row.get("error", ""),
            row["path"],
        )  # fmt: skip
    print_list(table)


@app.command()
@guarded
def show(
    name: str = typer.Argument(..., metavar="RUNBOOK", help="Runbook name or file."), json: bool = JsonOpt
) -> None:
    """A runbook's description, parameters and steps."""
    from rich.markup import escape

    from erpops.actions.base import load_actions
    from erpops.cli.tables import list_console, listing, print_list
    from erpops.runbook.library import find
    from erpops.runbook.loader import load_runbook

    rb = load_runbook(find(name), load_actions())
    if json:
        md = rb.spec.metadata
        doc = {
            "name": md.name, "version": md.version, "path": str(rb.path), "sha256": rb.sha256,
            "description": md.description, "destructive": md.destructive, "lock": rb.spec.lock,
            "params": {n: {"type": p.type, "required": p.required, "default": p.default, "description": p.description}
                       for n, p in rb.spec.params.items()},
            "steps": [{"id": s.id, "action": s.action, "when": s.when, "on_failure": s.on_failure,
                       "undo": s.undo.action if s.undo else None, "phase": phase}
                      for phase, steps in (("main", rb.spec.steps), ("finally", rb.spec.finally_)) for s in steps],
        }  # fmt: skip
        typer.echo(_json.dumps(doc, default=str))
        return
    console = list_console()
    md = rb.spec.metadata
    console.print(f"[bold]{escape(md.name)}[/bold] {md.version}  [dim]{escape(str(rb.path))}[/dim]", soft_wrap=True)
    console.print(f"[dim]sha256 {rb.sha256}[/dim]", soft_wrap=True)
    if md.destructive:
        console.print("[yellow]destructive: needs approval on production tiers[/yellow]")
    if rb.spec.lock:
        console.print(f"lock: {rb.spec.lock}")
    if md.description:
        console.print(escape(md.description.rstrip()), soft_wrap=True)
    if rb.spec.params:
        t = listing("name", "type", "default", "description", wrap=("default", "description"), title="parameters")
        for pname, p in rb.spec.params.items():
            default = "(required)" if p.required else ("" if p.default is None else str(p.default))
            t.add_row(pname, p.type, default, p.description or "")
        print_list(t, console)
    t = listing("id", "action", "when", "on failure", "undo", wrap=("when", "undo"), title="steps")
    for phase, steps in (("", rb.spec.steps), (" (finally)", rb.spec.finally_)):
        for s in steps:
            t.add_row(s.id + phase, s.action, str(s.when or ""), s.on_failure, s.undo.action if s.undo else "")
    print_list(t, console)


@app.command()
@guarded
def validate(
    paths: list[Path] = typer.Argument(None, metavar="PATH", help="Files or directories (default: every runbook)."),
    json: bool = JsonOpt,
) -> None:
    """Validate runbooks without running them; report every error (exit 2 if any)."""
    from erpops.actions.base import load_actions
    from erpops.errors import ExitCode, ValidationFailed
    from erpops.runbook.library import available
    from erpops.runbook.loader import load_runbook

    files: list[Path] = []
    for p in paths or []:
        if p.is_dir():
            files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        else:
            files.append(p)
    if not paths:
        files = list(available().values())
    errors = 0
    for f in files:
        try:
            rb = load_runbook(f, load_actions())
            if json:
                typer.echo(_json.dumps({"file": str(f), "ok": True, "name": rb.name, "version": rb.version}))
            else:
                typer.echo(f"ok      {f} ({rb.name} {rb.version})")
        except ValidationFailed as exc:
            for issue in exc.issues:
                errors += 1
                if json:
                    typer.echo(_json.dumps({"file": str(f), "ok": False, "error": str(issue)}))
                else:
                    typer.echo(f"error   {issue}", err=True)
    if not json:
        typer.echo(f"{len(files)} file(s) checked, {errors} error(s)")
    raise typer.Exit(int(ExitCode.INVALID_INPUT) if errors else 0)


@app.command()
@guarded
def plan(
    name: str = typer.Argument(..., metavar="RUNBOOK", help="Runbook name or file."),
    env: str = EnvOpt,
    json: bool = JsonOpt,
    param: list[str] = ParamOpt,
    config: str = ConfigOpt,
) -> None:
    """What a run would change, step by step (same as --dry-run)."""
    execute(name, Common(env=env, dry_run=True, json=json, params=param or [], config=config))


@app.command()
@guarded
def reference() -> None:
    """Print the runbook format and action reference (Markdown, generated from the schemas)."""
    from erpops.cli.reference import markdown

    typer.echo(markdown())
