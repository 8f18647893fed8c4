"""``odoo.preflight`` and ``odoo.backup``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, Change, PlanResult
from erpops.actions.odoo._common import (
    DbParams,
    cancelled,
    database_of,
    dsn_of,
    env_name,
    filestore_of,
    open_store,
    progress,
    storage_of,
)
from erpops.errors import ErpopsError, InvalidInput, Unreachable


class Preflight(Action):
    """Check, in seconds, that a backup can run: the server answers, the Odoo database exists
    (with ``ir_module_module``), a ``pg_dump`` at least as new as the server is installed, the
    filestore directory exists and the object store answers. Exit 3 naming the target otherwise.

    ```yaml
    - id: preflight
      action: odoo.preflight
      with: {database: "{{ params.database }}"}
    ```
    """

    name = "odoo.preflight"
    read_only = True

    class Params(DbParams):
        database: str | None = Field(None, description="Odoo database; default: the environment's database.name")
        filestore: str | None = Field(
            None, description="filestore directory; default: the environment's odoo.filestore"
        )
        storage: bool = Field(True, description="also check that the object store answers")
        require_odoo: bool = Field(True, description="fail when the database has no ir_module_module table")
        method: Literal["logical", "physical"] | None = Field(
            None, description="the backup method to check for; default: the environment's backup.method"
        )

    outputs = {
        "server_version": "PostgreSQL server version",
        "pg_dump": "the pg_dump (physical: pg_basebackup) that will run (version and path)",
        "odoo_version": "base module version, e.g. 18.0.1.3",
        "database_size": "bytes",
        "storage": "object store URL",
        "filestore": "filestore directory, or null",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"check database {params.database or 'of the environment'}, pg_dump, storage")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import db as odoo_db
        from erpops.backends.postgres import client as pg

        dsn = dsn_of(ctx, params.dsn)
        database = database_of(ctx, params.database)
        with pg.connect(dsn) as conn:
            pg.refuse_unless_primary(conn, dsn, f"a backup of {database}")
            if not odoo_db.database_exists(conn, database):
                raise Unreachable(
                    f"database {database!r} does not exist on {pg.describe(dsn)}",
                    hint="check database.name of the environment",
                )
            physical = (params.method or ctx.env.backup.method) == "physical"
            pg_dump = pg.client_for(conn, "pg_basebackup" if physical else "pg_dump")
            if physical:
                may = conn.execute(
                    "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
                if not may or not may[0]:
                    raise Unreachable(
                        f"{pg.describe(dsn)}: the role cannot take a base backup (backup.method physical)",
                        hint="ALTER ROLE ... REPLICATION, or backup.method: logical",
                    )
            server = pg.server_version(conn)
        with pg.connect(dsn, database) as conn:
            modules = odoo_db.installed_modules(conn)
            if params.require_odoo and not odoo_db.has_table(conn, "ir_module_module"):
                raise InvalidInput(f"database {database!r} has no ir_module_module table: it is not an Odoo database")
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            size = int(row[0]) if row else 0
        filestore = filestore_of(ctx, params.filestore)
        if filestore is not None and not filestore.is_dir():
            raise Unreachable(f"filestore {filestore} does not exist or is not a directory (odoo.filestore)")
        url = None
        if params.storage:
            store = open_store(ctx)
            store.check()
            url = store.url
        ctx.log(f"{pg.describe(dsn, database)}: PostgreSQL {server}, {size} bytes; {pg_dump}")
        return {
            "server_version": server,
            "pg_dump": str(pg_dump),
            "odoo_version": odoo_db.odoo_version(modules),
            "database_size": size,
            "storage": url,
            "filestore": str(filestore) if filestore else None,
        }


class Backup(Action):
    """Back up the Odoo database (one consistent ``pg_dump`` snapshot) and its filestore into
    the object store under ``<env>/<backup-id>/``: ``db.dump.zst`` (custom format, zstd),
    ``filestore.tar.zst`` and, written last, ``manifest.json`` (snapshot time, versions,
    installed modules, row counts of key tables, size and SHA-256 of each artifact). Streamed:
    nothing is staged on local disk. A backup that stops early has no manifest (``incomplete``).

    ```yaml
    - id: dump
      action: odoo.backup
      with: {database: "{{ params.database }}", level: 3, threads: 2}
      timeout: 2h
    ```
    """

    name = "odoo.backup"

    class Params(DbParams):
        database: str | None = Field(None, description="Odoo database; default: the environment's database.name")
        filestore: str | None = Field(
            None, description="filestore directory; default: the environment's odoo.filestore ('' for none)"
        )
        level: int = Field(3, ge=1, le=19, description="zstd compression level")
        threads: int = Field(2, ge=0, le=64, description="zstd worker threads (0: compress in the caller)")
        object_lock: Literal["compliance", "governance", "none"] | None = Field(
            None, description="Object Lock mode of the stored objects; default: the environment's"
        )
        retention_days: int | None = Field(None, ge=1, description="Object Lock retention in days")
        parallel: bool = Field(True, description="archive the filestore while the database is dumped")
        method: Literal["logical", "physical"] | None = Field(
            None, description="logical (pg_dump) or physical (pg_basebackup); default: the environment's backup.method"
        )

    outputs = {
        "backup_id": "the new backup's id",
        "prefix": "its folder in the object store (<env>/<id>/)",
        "url": "where the folder is",
        "manifest_key": "key of manifest.json",
        "size": "bytes stored (all artifacts)",
        "artifacts": "name -> key, size, sha256",
        "snapshot_time": "when the database snapshot was taken (UTC)",
        "odoo_version": "base module version",
        "durations": "seconds: database, filestore, total",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        try:
            url = storage_of(ctx).url
        except ErpopsError:
            url = "(no storage)"
        fs = filestore_of(ctx, params.filestore)
        physical = (params.method or ctx.env.backup.method) == "physical"
        what = f"database {params.database or database_of(ctx, None)}"
        what = f"a base backup of the server of {what}" if physical else what
        what += f" and filestore {fs}" if fs else ""
        return PlanResult(Change.WILL, f"back up {what} to {url.rstrip('/')}/{env_name(ctx)}/<new backup id>/")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo.backup import BackupOptions, run_backup
        from erpops.backends.storage import upload_retention
        from erpops.manifest import RunbookRef

        storage = storage_of(ctx)
        retention = upload_retention(storage, params.object_lock, params.retention_days)
        record = ctx.state.get_run(ctx.run.id) if ctx.state is not None else None
        runbook = RunbookRef(
            name=ctx.run.runbook, version=ctx.run.runbook_version, sha256=getattr(record, "sha256", "") or ""
        )
        opts = BackupOptions(
            environment=env_name(ctx),
            dsn=dsn_of(ctx, params.dsn),
            database=database_of(ctx, params.database),
            filestore=filestore_of(ctx, params.filestore),
            level=params.level,
            threads=params.threads,
            retention=retention,
            run_id=ctx.run.id,
            runbook=runbook,
            parallel=params.parallel,
            method=params.method or ctx.env.backup.method,
        )
        store = open_store(ctx)
        result = run_backup(
            store, opts, cancelled=cancelled(ctx), progress=progress(ctx, "backup"), log=lambda m: ctx.log(m)
        )
        m = result.manifest
        prefix = f"{m.environment}/{m.backup_id}/"
        ctx.log(
            f"backup {m.backup_id}: {m.total_size} bytes in {result.durations.get('total', 0):g}s "
            f"(snapshot {m.snapshot_time.isoformat()}), manifest written last"
        )
        return {
            "backup_id": m.backup_id,
            "prefix": prefix,
            "url": store.location(prefix),
            "manifest_key": result.manifest_key,
            "size": m.total_size,
            "artifacts": {
                n: {"key": a.key, "size": a.size, "sha256": a.sha256, "uncompressed_size": a.uncompressed_size}
                for n, a in m.artifacts.items()
            },
            "snapshot_time": m.snapshot_time.isoformat(),
            "odoo_version": m.odoo_version,
            "durations": result.durations,
        }
