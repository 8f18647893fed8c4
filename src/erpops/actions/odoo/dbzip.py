"""``odoo.export_zip`` and ``odoo.import_zip``: Odoo's database-manager backup format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, Change, PlanResult
from erpops.actions.odoo._common import (
    DbParams,
    cancelled,
    database_of,
    dsn_of,
    filestore_of,
    live_database,
    refuse_live,
)


class ExportZip(Action):
    """Export a database and its filestore as the zip Odoo's database manager makes
    (``dump.sql`` from ``pg_dump --no-owner``, ``filestore/``, ``manifest.json`` with
    ``odoo_dump``, ``db_name``, ``version``, ``version_info``, ``major_version``, ``pg_version``,
    ``modules``), restorable from Odoo's ``/web/database/manager``. PostgreSQL 18's ``\\restrict``
    lines are removed so older ``psql`` can load the dump (``keep_restrict: true`` keeps them).

    ```yaml
    - id: export
      action: odoo.export_zip
      with: {database: odoo, path: "/var/backups/odoo-{{ run.id }}.zip"}
    ```
    """

    name = "odoo.export_zip"

    class Params(DbParams):
        path: str = Field(description="zip file to write (replaced atomically)")
        database: str | None = Field(None, description="database; default: the environment's database.name")
        filestore: str | None = Field(
            None, description="filestore directory; default: odoo.filestore for the environment's database"
        )
        level: int = Field(6, ge=0, le=9, description="deflate level (Odoo uses 6)")
        keep_restrict: bool = Field(False, description="keep pg_dump's \\restrict lines in dump.sql")

    outputs = {
        "path": "the zip written",
        "size": "bytes",
        "sha256": "SHA-256 of the zip",
        "manifest": "the zip's manifest.json",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"export {params.database or 'the database'} to {params.path}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        import hashlib

        from erpops.backends.odoo.dbzip import export_zip

        database = database_of(ctx, params.database)
        if params.filestore is not None:
            filestore = filestore_of(ctx, params.filestore)
        else:
            filestore = filestore_of(ctx, None) if database == live_database(ctx) else None
        dest = Path(params.path).expanduser()
        server = None
        if ctx.env.odoo.url:  # Odoo writes its full version (18.0+e): ask the running server for it
            from erpops.backends.odoo.web import version_info
            from erpops.errors import ErpopsError

            try:
                server = version_info(ctx.env.odoo.url)
            except ErpopsError as exc:
                ctx.log(f"the manifest's version is the series only: the Odoo server did not say its own ({exc})",
                        level="warning")  # fmt: skip
        manifest = export_zip(
            dsn_of(ctx, params.dsn),
            database,
            filestore,
            dest,
            level=params.level,
            keep_restrict=params.keep_restrict,
            version=getattr(ctx.env.odoo, "version", None),
            server=server,
            cancelled=cancelled(ctx),
        )
        digest = hashlib.sha256()
        with open(dest, "rb") as f:
            for chunk in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(chunk)
        size = dest.stat().st_size
        ctx.log(f"exported {database} to {dest} ({size} bytes, {len(manifest['modules'])} modules)")
        return {"path": str(dest), "size": size, "sha256": digest.hexdigest(), "manifest": manifest}


class ImportZip(Action):
    """Import an Odoo database-manager zip into a new database (created and marked as erpops's
    own) and its ``filestore/`` into a directory. Never the environment's live database.

    ``mode: copy`` (the default) is Odoo's "This database is a copy": a new ``database.uuid`` and
    ``database.secret``, and the copy neutralized (scheduled jobs but the autovacuum off, mail
    servers off, payment and shipping providers in test...) so it never acts as the original
    towards customers or Odoo's services. ``mode: move`` keeps the original's identity and jobs
    as they are: for a database that replaces its original (stop that one).

    ```yaml
    - id: import
      action: odoo.import_zip
      with: {path: /tmp/odoo.zip, database: odoo_copy, filestore: /var/lib/odoo/filestore/odoo_copy, mode: copy}
    ```
    """

    name = "odoo.import_zip"

    class Params(DbParams):
        path: str = Field(description="the zip to import")
        database: str = Field(description="the new database")
        filestore: str | None = Field(
            None, description="where to unpack filestore/ (default: <scratch>/filestore/<database>)"
        )
        scratch_dir: str | None = Field(None, description="parent of the scratch directory for the default filestore")
        mode: Literal["copy", "move"] = Field(
            "copy", description="copy: new uuid and secret, neutralized (Odoo's copy); move: the original's identity"
        )

    outputs = {
        "neutralized": "what the copy's neutralization changed (mode copy), else null",
        "database": "the new database",
        "filestore": "where the filestore was unpacked",
        "files": "files unpacked",
        "manifest": "the zip's manifest.json",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        how = "as a neutralized copy" if params.mode == "copy" else "keeping the original's identity (move)"
        return PlanResult(Change.WILL, f"import {params.path} into new database {params.database} {how}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import restore as R
        from erpops.backends.odoo.dbzip import import_zip
        from erpops.errors import InvalidInput

        refuse_live(ctx, params.database, "odoo.import_zip")
        src = Path(params.path).expanduser()
        if not src.is_file():
            raise InvalidInput(f"odoo.import_zip: {src} is not a file")
        dsn = dsn_of(ctx, params.dsn)
        R.check_new_database(dsn, params.database)
        scratch = None
        if params.filestore:
            filestore = Path(params.filestore).expanduser()
        else:
            where = R.scratch_dir(params.scratch_dir, params.database)
            fresh = not where.exists()
            scratch = R.make_scratch(where, ctx.run.id)
            filestore = scratch / "filestore" / params.database
        created: list[str] = []

        def create(name: str) -> None:
            R.create_database(dsn, name, run_id=ctx.run.id, note=f"import of {src.name}")
            created.append(name)

        neutralized: dict[str, Any] | None = None
        try:
            manifest = import_zip(src, dsn, params.database, filestore, create=create, cancelled=cancelled(ctx))
            if params.mode == "copy":
                from erpops.backends.odoo.neutralize import neutralize
                from erpops.backends.postgres import client as pg

                with pg.connect(dsn, params.database) as conn:
                    neutralized = neutralize(conn)
        except BaseException:
            if created:
                R.drop_database(dsn, params.database, run_id=ctx.run.id)
            if scratch is not None and fresh:  # nothing left behind: the scratch made for this import
                R.remove_scratch(scratch)
            raise
        ctx.log(f"imported {src} into {params.database} ({manifest.get('files', 0)} filestore files)")
        if neutralized is not None:
            off = neutralized.get("crons_disabled", 0)
            ctx.log(f"a copy: new database.uuid and database.secret, neutralized ({off} scheduled jobs off)")
        else:
            original = manifest.get("db_name") or "the original"
            ctx.log(f"a move: {params.database} keeps {original}'s uuid, secret and scheduled jobs; stop {original}",
                    level="warning")  # fmt: skip
        return {
            "neutralized": neutralized,
            "database": params.database,
            "filestore": str(filestore),
            "files": manifest.get("files", 0),
            "manifest": manifest,
        }
