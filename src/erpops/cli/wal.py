"""``erpops wal``: the continuous WAL archive of an environment (``backup.method: physical``).

    archive_command = 'erpops wal push --config /etc/erpops/erpops.yaml --env prod %p'
    restore_command = 'erpops wal fetch --config /etc/erpops/erpops.yaml --env prod %f %p'

``push`` and ``fetch`` are what PostgreSQL runs (no journal, no lock: they must be quick and may run
many times at once); ``status`` is the recovery point exposure right now.
"""

from __future__ import annotations

import json as _json
import sys
from pathlib import Path
from typing import Any

import typer

from erpops.cli.boundary import guarded
from erpops.cli.common import ConfigOpt, EnvOpt, JsonOpt

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")  # PostgreSQL copies it into its log


@app.command("push")
@guarded
def push(
    path: str = typer.Argument(..., metavar="PATH", help="The WAL file (%p in archive_command)."),
    env: str = EnvOpt,
    level: int = typer.Option(1, "--level", metavar="LEVEL", min=1, max=19, help="zstd level."),
    config: str = ConfigOpt,
) -> None:
    """Archive one WAL file (archive_command). Exit 0 only once it is stored whole; stored already
    with the same content is success, with different content a failure PostgreSQL will retry."""
    from erpops.backends.postgres import wal
    from erpops.cli.common import environment_store

    environment, store = environment_store(config, env)
    done = wal.push(store, environment.name, Path(path), level=level)
    if done.already:
        _say(f"erpops: {done.name} was archived already ({done.key})")
    else:
        _say(f"erpops: archived {done.name}: {done.size} bytes, {done.stored} stored ({done.key})")


@app.command("fetch")
@guarded
def fetch(
    name: str = typer.Argument(..., metavar="NAME", help="The WAL file name PostgreSQL asks for (%f)."),
    dest: str = typer.Argument(..., metavar="DEST", help="Where to put it (%p)."),
    env: str = EnvOpt,
    config: str = ConfigOpt,
) -> None:
    """Restore one archived WAL file (restore_command), its SHA-256 checked. Exit 1 when it is not
    archived (the end of the archive, as PostgreSQL expects); exit 126 when it is corrupt, which
    makes PostgreSQL stop the recovery instead of ending it early at the wrong point."""
    from erpops.backends.postgres import wal
    from erpops.cli.common import environment_store
    from erpops.errors import ExitCode

    environment, store = environment_store(config, env)
    found = wal.find(store, environment.name, name)
    if found is None:
        raise typer.Exit(int(ExitCode.STEP_FAILED))
    try:
        wal.fetch(store, found, Path(dest))
    except wal.WalMismatch as exc:
        _say(f"erpops: {exc}")
        raise typer.Exit(int(ExitCode.ARCHIVE_CORRUPT)) from None


@app.command("status")
@guarded
def status(
    env: str = EnvOpt,
    json: bool = JsonOpt,
    metrics_file: str = typer.Option(None, "--metrics-file", metavar="FILE", help="Write Prometheus metrics here."),
    config: str = ConfigOpt,
) -> None:
    """The newest archived WAL segment and its age — the recovery point exposure right now —, and
    the server's archiver (pg_stat_archiver) when the database answers. Exit 1 when the archive is
    older than backup.wal_max_age or the archiver is failing."""
    from erpops.backends.postgres import wal
    from erpops.cli.common import environment_store
    from erpops.errors import ExitCode
    from erpops.runbook.durations import parse_duration

    environment, store = environment_store(config, env)
    found = wal.status(store, environment.name)
    limit = parse_duration(environment.backup.wal_max_age)
    archiver = _archiver(environment)
    problems = []
    if found.newest is None:
        problems.append("nothing is archived")
    elif found.age_seconds is not None and found.age_seconds > limit:
        problems.append(f"the newest archived segment is {found.age_seconds:.0f}s old (more than {limit:.0f}s)")
    if archiver.get("failing"):
        problems.append(f"the archiver is failing: {archiver['last_failed_wal']} at {archiver['last_failed_time']}")
    report: dict[str, Any] = {
        "environment": environment.name,
        "store": store.location(wal.folder(environment.name)),
        "newest": found.newest.name if found.newest else None,
        "newest_archived_at": found.newest.modified.isoformat() if found.newest and found.newest.modified else None,
        "age_seconds": found.age_seconds,
        "segments": found.segments,
        "timelines": found.timelines,
        "size": found.size,
        "max_age_seconds": limit,
        "archiver": archiver,
        "ok": not problems,
        "problems": problems,
    }
    if metrics_file:
        _metrics(metrics_file, report)
    if json:
        typer.echo(_json.dumps(report, default=str))
    else:
        age = f"{found.age_seconds:.0f}s ago" if found.age_seconds is not None else "never"
        typer.echo(f"{environment.name}: newest archived WAL {report['newest'] or '-'} ({age}); "
                   f"{found.segments} segments on timelines {found.timelines or '-'} in {report['store']}")  # fmt: skip
        if archiver.get("error"):
            typer.echo(f"  server: {archiver['error']}")
        elif archiver:
            last, failures = archiver.get("last_archived_wal") or "-", archiver.get("failed_count", 0)
            typer.echo(f"  server: last archived {last}, {failures} failures, current {archiver.get('current_wal')}")
        for p in problems:
            typer.echo(f"  warning: {p}")
    if problems:
        raise typer.Exit(int(ExitCode.STEP_FAILED))


def _archiver(environment: Any) -> dict[str, Any]:
    """pg_stat_archiver of the environment's primary ({} without a database; the error when it
    does not answer)."""
    if environment.database is None:
        return {}
    from erpops.backends.postgres import client as pg
    from erpops.errors import ErpopsError
    from erpops.secrets import resolve

    try:
        with pg.connect(resolve(environment.database.dsn), connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
                "last_failed_time, current_setting('archive_mode'), pg_walfile_name(pg_current_wal_lsn()) "
                "FROM pg_stat_archiver"
            ).fetchone()
    except ErpopsError as exc:
        return {"error": str(exc)}
    assert row is not None
    keys = ("archived_count", "last_archived_wal", "last_archived_time", "failed_count", "last_failed_wal",
            "last_failed_time", "archive_mode", "current_wal")  # fmt: skip
    out = dict(zip(keys, row, strict=True))
    failed, archived = out["last_failed_time"], out["last_archived_time"]
    out["failing"] = bool(failed and (not archived or failed > archived))
    return out


def _metrics(path: str, report: dict[str, Any]) -> None:
    from erpops.files import write_atomic
    from erpops.reports import PrometheusText

    text = PrometheusText(environment=report["environment"])
    text.metric(
        "erpops_wal_newest_archived_age_seconds",
        "gauge",
        "Age of the newest archived WAL segment (the recovery point exposure)",
        [({}, report["age_seconds"])],
    )
    text.metric("erpops_wal_archived_segments", "gauge", "WAL segments in the archive", [({}, report["segments"])])
    text.metric("erpops_wal_archive_ok", "gauge", "1 when the archive is fresh and the archiver not failing",
                [({}, report["ok"])])  # fmt: skip
    write_atomic(path, text.text().encode())
