"""PostgreSQL actions: ping, query, dump, restore, create/drop databases, terminate connections.

Every action connects with the environment's ``database.dsn`` (a secret reference such as
``env:ODOO_PROD_DSN`` is resolved when the step runs) unless ``dsn`` is given, or with
``standby.dsn`` when ``target: standby``. ``database`` defaults to the environment's
``database.name``. Client tools (``pg_dump``, ``pg_restore``, ``psql``) must be at least as new
as the server; an older one is refused before it runs. Passwords reach them through
``PGPASSWORD``, never their command line.

erpops drops only databases it created: ``postgres.create_database`` marks a database with
``COMMENT ON DATABASE x IS 'erpops:created run=<run id> at=<time>'`` and ``postgres.drop_database``
refuses any database without that mark, and always refuses the environment's own database.
"""

import datetime as dt
import decimal
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.errors import InvalidInput, PermanentError
from erpops.runbook.durations import Duration

#: Prefix of the comment that marks a database as created (and droppable) by erpops.
MARK = "erpops:created"  # = erpops.backends.postgres.client.CREATED_MARK (not imported: no SDK at start-up)


class _Target(ActionParams):
    dsn: str | None = Field(None, description="DSN or secret reference; default: the environment's")
    target: Literal["database", "standby"] = Field("database", description="which server of the environment")
    database: str | None = Field(None, description="database name; default: the environment's database.name")
    connect_timeout: Duration = Field(5.0, description="give up connecting after this long (exit 3)")


def _env_db(ctx: ActionContext, target: str) -> Any:
    return getattr(ctx.env, target, None) if ctx.env is not None else None


def _dsn(params: _Target, ctx: ActionContext) -> str:
    """The resolved DSN (secret references resolved, password registered for redaction)."""
    from erpops.backends.postgres import client as pg

    raw = params.dsn
    if raw is None:
        db = _env_db(ctx, params.target)
        if db is None:
            name = getattr(ctx.env, "name", "?")
            raise InvalidInput(f"environment {name!r} has no {params.target}.dsn; give dsn: or add it to erpops.yaml")
        raw = db.dsn
    dsn = ctx.resolve_secret(raw)
    password = pg.parse_dsn(dsn).get("password")
    if password:
        ctx.register_secret(password)
    return dsn


def _dbname(params: _Target, ctx: ActionContext) -> str:
    if params.database:
        return params.database
    db = _env_db(ctx, params.target) or _env_db(ctx, "database")
    if db is None:
        raise InvalidInput("no database: given and the environment has no database.name")
    return str(db.name)


def _live_name(ctx: ActionContext) -> str | None:
    db = _env_db(ctx, "database")
    return str(db.name) if db is not None else None


def _where(params: _Target, ctx: ActionContext) -> str:
    """Where a step points, for plans: never resolves a secret."""
    try:
        name = _dbname(params, ctx)
    except InvalidInput:
        name = "(no database)"
    return f"database {name!r} ({params.target})"


def _jsonable(value: Any) -> Any:
    """A query value as JSON: numbers stay numbers, times become ISO strings, bytes hex."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return "\\x" + raw[:512].hex() + ("..." if len(raw) > 512 else "")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _fail(tool: str, result: Any, what: str) -> PermanentError:
    tail = (result.stderr_tail or result.stdout_tail or "").strip().splitlines()[-3:]
    return PermanentError(f"{tool} failed {what} (exit {result.returncode}): {' / '.join(tail) or 'no output'}")


def _quote_conninfo(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Ping(Action):
    """Check that the database server answers; report its version and whether it is a standby.

    ```yaml
    - id: preflight
      action: postgres.ping
    - id: standby-up
      action: postgres.ping
      with: {target: standby, connect_timeout: 3s}
    ```
    """

    name = "postgres.ping"
    read_only = True

    class Params(_Target):
        pass

    outputs = {
        "server_version": "PostgreSQL version, e.g. 18.6",
        "server_version_num": "e.g. 180006",
        "in_recovery": "true on a standby",
        "database": "the database connected to",
        "latency_ms": "time to connect and answer",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"ping {_where(params, ctx)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        dsn, dbname = _dsn(params, ctx), _dbname(params, ctx)
        started = time.monotonic()
        with pg.connect(dsn, dbname, params.connect_timeout) as conn:
            version = pg.server_version(conn)
            out = {
                "server_version": version,
                "server_version_num": pg.server_version_num(conn),
                "in_recovery": pg.in_recovery(conn),
                "database": dbname,
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            }
        ctx.log(f"{pg.describe(dsn, dbname)}: PostgreSQL {version}" + (" (standby)" if out["in_recovery"] else ""))
        return out


class Query(Action):
    """Run one read-only SQL statement and return its rows (at most ``max_rows``) as outputs.

    The statement runs in a READ ONLY transaction: the server refuses any write.

    ```yaml
    - id: count
      action: postgres.query
      with:
        sql: "SELECT count(*) AS n FROM sale_order WHERE state = %(state)s"
        args: {state: sale}
    - id: check
      action: assert
      with: {that: "{{ steps.count.outputs.value > 0 }}"}
    ```
    """

    name = "postgres.query"
    read_only = True

    class Params(_Target):
        sql: str = Field(description="one SQL statement; %(name)s / %s placeholders take args")
        args: dict[str, Any] | list[Any] | None = Field(None, description="values for the placeholders")
        max_rows: int = Field(1000, ge=1, le=100_000, description="rows kept in the outputs")
        statement_timeout: Duration = Field(60.0, description="cancel the statement after this long")

    outputs = {
        "rows": "list of rows, each a mapping column -> value",
        "columns": "column names",
        "row_count": "rows returned (before the max_rows cap)",
        "truncated": "true when more than max_rows rows were returned",
        "value": "first column of the first row (null when no rows)",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        first = " ".join(params.sql.split())[:60]
        return PlanResult(Change.NONE, f"query {_where(params, ctx)}: {first}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        dsn, dbname = _dsn(params, ctx), _dbname(params, ctx)
        with pg.connect(dsn, dbname, params.connect_timeout) as conn:
            result = pg.read_only_query(
                conn, params.sql, params.args, max_rows=params.max_rows, statement_timeout=params.statement_timeout
            )
        columns = result.columns
        rows = [dict(zip(columns, (_jsonable(v) for v in row), strict=True)) for row in result.rows]
        return {
            "rows": rows,
            "columns": columns,
            "row_count": result.total,
            "truncated": result.truncated,
            "value": rows[0][columns[0]] if rows and columns else None,
        }


class Dump(Action):
    """Dump a database with ``pg_dump`` to a file (custom format by default) or a directory.

    The dump is written beside its destination and renamed into place when ``pg_dump`` succeeded,
    so a failed or killed dump never leaves a file that looks complete.

    ```yaml
    - id: dump
      action: postgres.dump
      with: {path: "/var/backups/odoo-{{ run.id }}.dump", compress: 0}
    - id: dump-parallel
      action: postgres.dump
      with: {path: /var/backups/odoo.dir, format: directory, jobs: 4}
    ```
    """

    name = "postgres.dump"

    class Params(_Target):
        path: str = Field(description="file (or directory, for format: directory) to write")
        format: Literal["custom", "directory", "plain", "tar"] = "custom"
        compress: int | None = Field(None, ge=0, le=9, description="gzip level; default: pg_dump's")
        jobs: int = Field(1, ge=1, le=64, description="parallel jobs (directory format only)")
        no_owner: bool = Field(False, description="leave out ownership (--no-owner)")
        exclude_table_data: list[str] = Field(default_factory=list, description="tables dumped without rows")
        overwrite: bool = Field(False, description="replace an existing file at path")

    outputs = {
        "path": "what was written",
        "bytes": "its size",
        "format": "pg_dump format",
        "seconds": "time pg_dump took",
        "server_version": "PostgreSQL server version",
        "pg_dump_version": "version of the pg_dump that ran",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"pg_dump {_where(params, ctx)} to {params.path} ({params.format} format)")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        if params.jobs > 1 and params.format != "directory":
            raise InvalidInput("postgres.dump: jobs > 1 needs format: directory")
        dsn, dbname = _dsn(params, ctx), _dbname(params, ctx)
        dest = Path(params.path).expanduser()
        if dest.exists() and not params.overwrite:
            raise InvalidInput(f"postgres.dump: {dest} exists; set overwrite: true to replace it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with pg.connect(dsn, dbname, params.connect_timeout) as conn:
            server = pg.server_version(conn)
            pg_dump = pg.client_for(conn, "pg_dump")
        partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
        argv = [str(pg_dump.path), f"--format={params.format}", f"--file={partial}", "--no-password"]
        if params.compress is not None:
            argv.append(f"--compress={params.compress}")
        if params.jobs > 1:
            argv.append(f"--jobs={params.jobs}")
        if params.no_owner:
            argv.append("--no-owner")
        argv += [f"--exclude-table-data={t}" for t in params.exclude_table_data]
        ctx.log(f"dumping {pg.describe(dsn, dbname)} with {pg_dump}")
        try:
            result = ctx.run_process(argv, env=pg.libpq_env(dsn, dbname))
            if result.returncode != 0:
                raise _fail("pg_dump", result, f"dumping {dbname}")
            size = _size(partial)
            if size == 0 or (params.format == "custom" and _head(partial, 5) != b"PGDMP"):
                raise PermanentError(f"pg_dump exited 0 but wrote no valid archive for {dbname}; nothing kept")
            _remove(dest)
            partial.rename(dest)
        finally:
            _remove(partial)
        ctx.log(f"wrote {dest} ({size} bytes in {result.duration:.1f}s)")
        return {
            "path": str(dest),
            "bytes": size,
            "format": params.format,
            "seconds": round(result.duration, 3),
            "server_version": server,
            "pg_dump_version": pg_dump.version_text,
        }


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _dump_format(path: Path) -> str:
    """custom | directory | tar | plain, from what the file holds."""
    if path.is_dir():
        if not (path / "toc.dat").exists():
            raise InvalidInput(f"{path} is a directory without toc.dat: not a pg_dump directory archive")
        return "directory"
    with path.open("rb") as fh:
        head = fh.read(512)
    if head[:5] == b"PGDMP":
        return "custom"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "plain"


class Restore(Action):
    """Restore a dump into an existing database: ``pg_restore`` (parallel ``-j`` for custom and
    directory archives) or ``psql`` for a plain SQL dump. Stops at the first error.

    Restoring into the environment's own database (``database.name``) needs ``allow_live: true``.

    ```yaml
    - id: scratch
      action: postgres.create_database
      with: {database: "odoo_drill_{{ run.id }}"}
    - id: restore
      action: postgres.restore
      with: {database: "odoo_drill_{{ run.id }}", path: /scratch/odoo.dump, jobs: 2}
    ```
    """

    name = "postgres.restore"

    class Params(_Target):
        path: str = Field(description="dump file or directory archive")
        jobs: int = Field(2, ge=1, le=64, description="parallel jobs (custom/directory archives)")
        no_owner: bool = Field(True, description="do not restore ownership (--no-owner)")
        no_privileges: bool = Field(True, description="do not restore grants (--no-acl)")
        allow_live: bool = Field(False, description="allow restoring into the environment's own database")

    outputs = {
        "database": "the database restored into",
        "format": "archive format detected",
        "jobs": "parallel jobs used",
        "seconds": "restore time",
        "tool_version": "version of pg_restore/psql that ran",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"restore {params.path} into {_where(params, ctx)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        dsn, dbname = _dsn(params, ctx), _dbname(params, ctx)
        if dbname == _live_name(ctx) and params.target == "database" and not params.allow_live:
            raise InvalidInput(
                f"refusing to restore into {dbname!r}, the environment's own database",
                hint="restore into a new database, or set allow_live: true for a real recovery",
            )
        src = Path(params.path).expanduser()
        if not src.exists():
            raise InvalidInput(f"postgres.restore: {src} does not exist")
        fmt = _dump_format(src)
        with pg.connect(dsn, dbname, params.connect_timeout) as conn:
            tool = pg.client_for(conn, "psql" if fmt == "plain" else "pg_restore")
        jobs = params.jobs if fmt in ("custom", "directory") else 1
        if fmt == "plain":
            argv = [str(tool.path), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "--no-password", f"--file={src}"]  # fmt: skip
        else:
            argv = [str(tool.path), "--exit-on-error", "--no-password", f"--jobs={jobs}",
                    f"--dbname=dbname={_quote_conninfo(dbname)}"]  # fmt: skip
            argv += ["--no-owner"] if params.no_owner else []
            argv += ["--no-acl"] if params.no_privileges else []
            argv.append(str(src))
        ctx.log(f"restoring {src} ({fmt}) into {pg.describe(dsn, dbname)} with {tool}, {jobs} job(s)")
        result = ctx.run_process(argv, env=pg.libpq_env(dsn, dbname))
        if result.returncode != 0:
            raise _fail(tool.name, result, f"restoring into {dbname}")
        return {
            "database": dbname,
            "format": fmt,
            "jobs": jobs,
            "seconds": round(result.duration, 3),
            "tool_version": tool.version_text,
        }


def _maintenance_db(dsn: str, target: str) -> str | None:
    """Connect to the DSN's own database, unless that is the one being created/dropped."""
    from erpops.backends.postgres import client as pg

    own = pg.parse_dsn(dsn).get("dbname")
    return "postgres" if own == target or own is None else None


class CreateDatabase(Action):
    """Create a database and mark it as erpops's own (so ``postgres.drop_database`` may drop it).

    An existing database carrying this run's mark is kept (a resumed run); any other existing
    database fails the step.

    ```yaml
    - id: scratch
      action: postgres.create_database
      with: {database: "{{ env.database.name }}_drill_{{ run.id }}"}
      undo:
        action: postgres.drop_database
        with: {database: "{{ env.database.name }}_drill_{{ run.id }}"}
    ```
    """

    name = "postgres.create_database"

    class Params(_Target):
        database: str = Field(description="name of the new database")
        template: str = "template0"
        encoding: str = "UTF8"
        lc_collate: str | None = Field(None, description="collation; default: the server's")
        owner: str | None = None

    outputs = {"database": "its name", "created": "false when this run had created it already", "mark": "the comment"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"create database {params.database!r} (marked as created by erpops)")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        dsn = _dsn(params, ctx)
        pg.quote_ident(params.database)  # validates the name
        with pg.connect(dsn, _maintenance_db(dsn, params.database), params.connect_timeout) as conn:
            exists, comment = pg.database_comment(conn, params.database)
            if exists:
                if pg.marked_run(comment) == ctx.run.id:
                    ctx.log(f"database {params.database!r} was already created by this run")
                    return {"database": params.database, "created": False, "mark": comment}
                raise PermanentError(f"database {params.database!r} already exists; choose another name")
            mark = pg.created_mark(ctx.run.id)
            pg.create_database(
                conn,
                params.database,
                comment=mark,
                template=params.template,
                encoding=params.encoding,
                lc_collate=params.lc_collate,
                owner=params.owner,
            )
        ctx.log(f"created database {params.database!r}")
        return {"database": params.database, "created": True, "mark": mark}


class DropDatabase(Action):
    """Drop a database erpops created (it carries the ``erpops:created`` mark), after ending its
    connections. Any other database is refused, and so is the environment's own database.

    ```yaml
    - id: cleanup
      action: postgres.drop_database
      with: {database: "odoo_drill_{{ run.id }}"}
    ```
    """

    name = "postgres.drop_database"

    class Params(_Target):
        database: str = Field(description="the database to drop")
        missing_ok: bool = Field(True, description="succeed (no change) when it does not exist")
        created_by: str | None = Field(
            None, description="the run that created it, when it is not this run (a database another run kept)"
        )

    outputs = {"database": "its name", "dropped": "false when it did not exist", "terminated": "connections ended"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"drop database {params.database!r} if erpops created it")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        if params.database == _live_name(ctx):
            raise PermanentError(f"refusing to drop {params.database!r}: it is the environment's own database")
        dsn = _dsn(params, ctx)
        with pg.connect(dsn, _maintenance_db(dsn, params.database), params.connect_timeout) as conn:
            exists, comment = pg.database_comment(conn, params.database)
            if not exists:
                if not params.missing_ok:
                    raise PermanentError(f"database {params.database!r} does not exist")
                return {"database": params.database, "dropped": False, "terminated": 0}
            creator = pg.marked_run(comment)
            if creator is None:
                raise PermanentError(
                    f"refusing to drop database {params.database!r}: erpops did not create it (no '{MARK}' mark on it)",
                    hint="erpops only drops databases made by postgres.create_database",
                )
            if creator != (params.created_by or ctx.run.id):
                raise PermanentError(
                    f"refusing to drop database {params.database!r}: run {creator} created it, not this run",
                    hint=f"to drop a database run {creator} kept, name that run: created_by: {creator}",
                )
            terminated = pg.terminate_connections(conn, params.database)
            pg.drop_database(conn, params.database)
        ctx.log(f"dropped database {params.database!r} ({terminated} connection(s) ended)")
        return {"database": params.database, "dropped": True, "terminated": terminated}


class TerminateConnections(Action):
    """End every session connected to a database (except erpops's own).

    ```yaml
    - id: kick
      action: postgres.terminate_connections
      with: {database: odoo}
    ```
    """

    name = "postgres.terminate_connections"

    class Params(_Target):
        pass

    outputs = {"terminated": "number of sessions ended"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, f"end the sessions connected to {_where(params, ctx)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.postgres import client as pg

        dsn, dbname = _dsn(params, ctx), _dbname(params, ctx)
        with pg.connect(dsn, _maintenance_db(dsn, dbname), params.connect_timeout) as conn:
            terminated = pg.terminate_connections(conn, dbname)
        ctx.log(f"ended {terminated} session(s) on {dbname!r}")
        return {"terminated": terminated}
