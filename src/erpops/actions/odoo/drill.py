"""Restore drill steps: ``odoo.select_backup``, ``odoo.restore``, ``odoo.neutralize``,
``odoo.verify`` and ``odoo.cleanup``."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.actions.odoo._common import (
    DbParams,
    cancelled,
    dsn_of,
    env_name,
    filestore_of,
    item_progress,
    live_database,
    open_store,
    progress,
    refuse_live,
)
from erpops.errors import ErpopsError, InvalidInput, PermanentError


class SelectBackup(Action):
    """Choose the backup to restore: the given id (refused unless it is complete), or the newest
    complete one. Incomplete (no manifest), corrupt and unrestorable backups are never chosen (an
    unrestorable one only when named, to drill it again).

    ```yaml
    - id: choose
      action: odoo.select_backup
      with: {backup: "{{ params.backup }}"}
    ```
    """

    name = "odoo.select_backup"
    read_only = True

    class Params(ActionParams):
        backup: str | None = Field(None, description="backup id; empty: the newest complete backup")
        environment: str | None = Field(None, description="whose backups; default: this run's environment")

    outputs = {
        "backup_id": "the chosen backup",
        "state": "complete, verified or restore-tested",
        "time": "when the backup started",
        "snapshot_time": "when its database snapshot was taken",
        "database": "the database it holds",
        "odoo_version": "base module version in the backup",
        "size": "bytes stored",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        from erpops.errors import ErpopsError

        try:  # reading the catalog changes nothing: say which backup it would be
            from erpops.backends.storage.catalog import Catalog

            entry = Catalog(open_store(ctx), env_name(ctx, params.environment)).choose(params.backup or None)
        except ErpopsError as exc:
            return PlanResult(Change.NONE, f"choose backup {params.backup or '(newest complete)'}: {exc}")
        return PlanResult(Change.NONE, f"choose backup {entry.backup_id} ({entry.state}, {entry.time:%Y-%m-%d %H:%M}Z)")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.storage.catalog import Catalog

        entry = Catalog(open_store(ctx), env_name(ctx, params.environment)).choose(params.backup or None)
        m = entry.manifest
        assert m is not None
        ctx.log(f"backup {entry.backup_id} ({entry.state}, snapshot {m.snapshot_time.isoformat()}, {entry.size} bytes)")
        return {
            "backup_id": entry.backup_id,
            "state": entry.state,
            "time": entry.time.isoformat(),
            "snapshot_time": m.snapshot_time.isoformat(),
            "database": m.database,
            "odoo_version": m.odoo_version,
            "size": entry.size,
        }


class _Target(DbParams):
    database: str = Field(description="the new database to restore into (never the live one)")
    scratch_dir: str | None = Field(
        None, description="parent of the scratch directory (default $ERPOPS_SCRATCH_DIR or /var/tmp)"
    )
    beside_filestore: bool = Field(
        False,
        description=(
            "put the scratch directory beside the environment's filestore (same file system, so "
            "odoo.swap_database can rename the restored filestore into place)"
        ),
    )


def _scratch(ctx: ActionContext, params: _Target) -> Path:
    from erpops.backends.odoo import restore as R

    live = filestore_of(ctx, None)
    if params.beside_filestore and live is not None:
        return R.scratch_dir(live.parent, params.database)
    return R.scratch_dir(params.scratch_dir, params.database)


class Restore(Action):
    """Restore a backup into a new database and a scratch filestore. Every artifact is fetched
    and its SHA-256 checked against the manifest first: a corrupt backup fails here, before any
    database is created. Then ``pg_restore -j`` into the new database (created and marked as
    erpops's own, so ``odoo.cleanup`` may drop it) while the filestore is unpacked into
    ``<scratch>/filestore/<database>``.

    ```yaml
    - id: restore
      action: odoo.restore
      with:
        backup: "{{ steps.choose.outputs.backup_id }}"
        database: "{{ params.drill_database }}"
        jobs: 2
    ```
    """

    name = "odoo.restore"

    class Params(_Target):
        backup: str = Field(description="backup id to restore")
        environment: str | None = Field(None, description="whose backup; default: this run's environment")
        filestore: str | None = Field(
            None, description="restore the filestore here (default: in the scratch directory)"
        )
        jobs: int = Field(2, ge=1, le=64, description="pg_restore parallel jobs")
        owner_like: str | None = Field(
            None,
            description=(
                "give the new database and every restored object the owner of this database (the live "
                "one, when the copy is to replace it); default: the connecting role"
            ),
        )

    outputs = {
        "backup_id": "the restored backup",
        "database": "the new database",
        "filestore": "the restored filestore directory",
        "scratch": "the scratch directory",
        "artifacts": "per artifact: name, key, ok, sha256 expected and found",
        "fetch_seconds": "fetch and checksum time (both artifacts, side by side)",
        "restore_seconds": "pg_restore and filestore unpack (side by side) time",
        "database_seconds": "pg_restore time",
        "filestore_seconds": "filestore unpack time",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"check and restore backup {params.backup} into new database {params.database}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import restore as R
        from erpops.backends.storage.catalog import Catalog

        refuse_live(ctx, params.database, "odoo.restore")
        dsn = dsn_of(ctx, params.dsn)
        redo = R.check_new_database(dsn, params.database, run_id=ctx.run.id)
        if redo:
            ctx.log(f"dropped {params.database}, half-restored by an earlier attempt of this run; restoring it again")
        store = open_store(ctx)
        catalog = Catalog(store, env_name(ctx, params.environment))
        manifest, manifest_sha256 = catalog.read_manifest(params.backup)
        owner = None
        if params.owner_like:
            owner = R.owner_of(dsn, params.owner_like)
            if owner is None:
                raise InvalidInput(f"odoo.restore: owner_like database {params.owner_like!r} does not exist")
        where = _scratch(ctx, params)
        again = R.scratch_run(where) == ctx.run.id  # this run's earlier attempt made it
        scratch = R.make_scratch(where, ctx.run.id)
        filestore = Path(params.filestore) if params.filestore else scratch / "filestore" / params.database
        if again and not params.filestore and filestore.exists():
            shutil.rmtree(filestore)  # half unpacked by the earlier attempt, in this run's own scratch
            ctx.log(f"removed {filestore}, half unpacked by an earlier attempt of this run")
        try:
            sizes = {name: art.size for name, art in manifest.artifacts.items()}
            fetched = R.fetch(
                store, manifest, scratch, cancelled=cancelled(ctx), progress=progress(ctx, "fetch", totals=sizes)
            )
        except R.ChecksumMismatch as exc:
            _record_corrupt(ctx, catalog, manifest, manifest_sha256, exc)
            raise
        for art in fetched.artifacts:
            ctx.log(f"{art.name}: {art.size} bytes, sha256 matches the manifest")
        try:
            R.create_database(dsn, params.database, run_id=ctx.run.id, note=f"restore of {params.backup}", owner=owner)
        except BaseException:
            fetched.close()  # restore() closes the checked archive; nothing else will now
            raise
        try:
            seconds = R.restore(
                fetched, dsn, params.database, filestore, jobs=params.jobs, cancelled=cancelled(ctx), role=owner,
                items=item_progress(ctx, "restore database"),
            )  # fmt: skip
        except R.RestoreFailed as exc:
            if exc.backup_at_fault:
                _record_unrestorable(ctx, catalog, params.backup, exc)
            raise
        fetched.dump.unlink(missing_ok=True)
        if fetched.filestore_archive is not None:
            fetched.filestore_archive.unlink(missing_ok=True)
        ctx.log(
            f"restored {params.backup} into {params.database} in {seconds['total']:g}s (fetch {fetched.seconds:g}s)"
        )
        return {
            "backup_id": params.backup,
            "database": params.database,
            "filestore": str(filestore) if "filestore" in manifest.artifacts else None,
            "scratch": str(scratch),
            "artifacts": [a.as_dict() for a in fetched.artifacts],
            "fetch_seconds": fetched.seconds,
            "restore_seconds": seconds["total"],
            "database_seconds": seconds.get("database"),
            "filestore_seconds": seconds.get("filestore"),
        }


def _record_corrupt(ctx: ActionContext, catalog: Any, manifest: Any, manifest_sha256: str, exc: Any) -> None:
    """A drill that read every artifact and found one that does not match the manifest records it
    (``verify.json``, not ok): the backup is listed ``corrupt`` and no later drill or restore picks it."""
    from erpops import __version__
    from erpops.manifest import ArtifactCheck, VerifyMarker
    from erpops.state import utcnow

    if {r.key for r in exc.results} != {a.key for a in manifest.artifacts.values()}:
        return  # not every artifact was read: nothing to record about the backup itself
    checks = [
        ArtifactCheck(
            name=r.name,
            key=r.key,
            expected_size=r.expected_size,
            expected_sha256=r.expected_sha256,
            size=r.size,
            sha256=r.sha256,
            ok=r.ok,
            error=None if r.ok else "does not match the manifest (found by a restore drill)",
        )
        for r in exc.results
    ]
    marker = VerifyMarker(
        backup_id=manifest.backup_id,
        verified_at=utcnow(),
        ok=False,
        artifacts=checks,
        manifest_sha256=manifest_sha256,
        erpops_version=__version__,
        run_id=ctx.run.id,
    )
    _record_finding(ctx, catalog.write_verify_marker, marker, "corrupt", "verify.json")


def _record_unrestorable(ctx: ActionContext, catalog: Any, backup_id: str, exc: Exception) -> None:
    """A drill whose artifacts matched the manifest but whose ``pg_restore`` failed (and not for
    the moment's reasons: the server answered, no disk or connection error) records it
    (``restore-test.json``, ``failed: restore``): the backup is listed ``unrestorable`` and no
    later drill or restore picks it unless it is named."""
    from erpops import __version__
    from erpops.manifest import RestoreTestMarker
    from erpops.secrets import redact
    from erpops.state import utcnow

    marker = RestoreTestMarker(
        backup_id=backup_id,
        tested_at=utcnow(),
        ok=False,
        run_id=ctx.run.id,
        checks={"restore": False},
        erpops_version=__version__,
        failed="restore",
        error=redact(str(exc))[:2000],
    )
    _record_finding(ctx, catalog.write_restore_test_marker, marker, "unrestorable", "restore-test.json")


def _record_finding(ctx: ActionContext, write: Any, marker: Any, state: str, name: str) -> None:
    """Write what a drill found about a backup (``marker`` with ``write``); a store that refuses it is
    a warning (the drill fails for the finding either way)."""
    try:
        write(marker)
    except ErpopsError as err:
        ctx.log(f"could not record backup {marker.backup_id} as {state}: {err}", level="warning")
        return
    ctx.log(f"backup {marker.backup_id} recorded as {state} ({name}): later drills will not pick it")


class Neutralize(Action):
    """Make a restored copy harmless, as ``odoo-bin neutralize`` does, on the tables that exist:
    scheduled jobs off (except ``base.autovacuum_job``), mail servers off plus a blackhole server
    (host ``invalid``, port 1025), ``database.is_neutralized = 'true'``, a new ``database.uuid``
    and ``database.secret`` (as Odoo's copy restore), and one rule per module's
    ``neutralize.sql``: mail templates, fetchmail, web push (VAPID keys, queue, devices), the SFU
    key, payment providers, carriers, the banner, webhooks, IAP tokens and the extract endpoint,
    Avalara, bank synchronization links, OCN, Mapbox and barcode-lookup keys, Google Calendar
    tokens (docs/neutralization.md). Refuses the environment's live database.

    ```yaml
    - id: neutralize
      action: odoo.neutralize
      with: {database: "{{ steps.restore.outputs.database }}"}
    ```
    """

    name = "odoo.neutralize"

    class Params(DbParams):
        database: str = Field(description="the restored copy to neutralize")

    outputs = {"changed": "what changed: rows per rule", "seconds": "time taken"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        from erpops.backends.odoo.neutralize import RULES

        return PlanResult(
            Change.WILL, f"neutralize {params.database}: crons and mail off, new identity, {len(RULES)} module rules"
        )

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        import time

        from erpops.backends.odoo.neutralize import neutralize
        from erpops.backends.postgres import client as pg

        refuse_live(ctx, params.database, "odoo.neutralize", params.dsn and dsn_of(ctx, params.dsn))
        t0 = time.monotonic()
        with pg.connect(dsn_of(ctx, params.dsn), params.database) as conn:
            changed = neutralize(conn)
        for key, value in changed.items():
            if value:  # the rules that found nothing live stay quiet (their zeros are in the outputs)
                ctx.log(f"{key.replace('_', ' ')}: {value}")
        return {"changed": changed, "seconds": round(time.monotonic() - t0, 3)}


class _CheckSpec(ActionParams):
    name: str
    sql: str
    expect: Any = None


class Verify(Action):
    """Check a restored copy against its backup's manifest: row counts of the key tables,
    every posted account move balanced, sampled attachment files present with the right SHA-1,
    installed modules; plus custom SQL checks (``checks`` here and the environment's
    ``checks``). With ``expect`` a check's first value must equal it; without, the query must
    return no rows. Every check reports name, passed, expected, actual and duration.

    ```yaml
    - id: checks
      action: odoo.verify
      with:
        database: "{{ steps.restore.outputs.database }}"
        filestore: "{{ steps.restore.outputs.filestore }}"
        backup: "{{ steps.choose.outputs.backup_id }}"
        checks:
          - {name: no negative stock in WH, sql: "SELECT id FROM stock_quant WHERE quantity < 0 AND location_id = 8"}
          - {name: customers, sql: "SELECT count(*) > 100 FROM res_partner", expect: true}
    ```
    """

    name = "odoo.verify"

    class Params(DbParams):
        database: str = Field(description="the restored database")
        backup: str = Field(description="the backup it was restored from (its manifest is the reference)")
        filestore: str | None = Field(None, description="the restored filestore directory")
        environment: str | None = None
        sample: int = Field(200, ge=0, description="attachments to check (random sample)")
        checks: list[_CheckSpec] = Field(default_factory=list, description="custom SQL checks")
        environment_checks: bool = Field(True, description="also run the environment's checks")
        fail: bool = Field(True, description="fail the step when a check fails (false: report only)")
        row_counts: Literal["compare", "report"] = Field(
            "compare", description="report: the copy is of another moment than the manifest (a drill to a moment)"
        )
        attachments_until: str | None = Field(
            None, description="only attachments created by then have a file in the backup (ISO time)"
        )

    outputs = {
        "passed": "true when every check passed",
        "checks": "name, passed, expected, actual, duration, message of each check",
        "failed": "names of the failed checks",
        "newest_write": "newest write_date in sale_order/stock_move/account_move (UTC)",
        "seconds": "time taken",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"check {params.database} against backup {params.backup}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        import time

        from erpops.backends.odoo import checks as C
        from erpops.backends.odoo import db as odoo_db
        from erpops.backends.postgres import client as pg
        from erpops.backends.storage.catalog import Catalog

        t0 = time.monotonic()
        manifest, _ = Catalog(open_store(ctx), env_name(ctx, params.environment)).read_manifest(params.backup)
        custom = [C.SqlCheck(c.name, c.sql, c.expect) for c in params.checks]
        if params.environment_checks:
            custom += [C.SqlCheck(c.name, c.sql, c.expect, source="environment") for c in ctx.env.checks]
        names = [c.name for c in custom]
        if len(set(names)) != len(names) or set(names) & {
            "row_counts",
            "accounting_balanced",
            "attachments",
            "modules",
        }:
            raise InvalidInput(f"odoo.verify: check names must be unique and not built-in names: {names}")
        filestore = Path(params.filestore) if params.filestore else None
        until = datetime.fromisoformat(params.attachments_until) if params.attachments_until else None
        compare = params.row_counts == "compare"
        why = "the copy is of a later moment than the base backup's counts"
        with pg.connect(dsn_of(ctx, params.dsn), params.database) as conn:
            results = [
                C.check_row_counts(conn, manifest.row_counts, compare=compare, why=why),
                C.check_balanced(conn),
                C.check_attachments(conn, filestore, params.sample, until),
                C.check_modules(conn, manifest.modules),
            ]
            results += [C.check_sql(conn, c) for c in custom]
            writes = odoo_db.newest_writes(conn)
        for r in results:
            mark = "-" if r.skipped else ("✓" if r.passed else "✗")
            ctx.log(f"{mark} {r.name}: {r.message}", level="info" if r.passed else "error")
        failed = [r.name for r in results if not r.passed]
        newest = max(writes.values()) if writes else None
        out = {
            "passed": not failed,
            "checks": [r.as_dict() for r in results],
            "failed": failed,
            "newest_write": newest.isoformat() if newest else None,
            "seconds": round(time.monotonic() - t0, 3),
        }
        if failed and params.fail:
            raise PermanentError(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}")
        return out


#: states of a run that ended (or died) before its cleanup could be trusted to have run
_UNFINISHED = ("running", "interrupted", "failed")


class Sweep(Action):
    """Drop what dead runs of this environment left behind: the scratch databases they created
    and marked, their scratch directories, and any process still running for them. A run counts
    as dead as its lock does: it is not running any more (failed, interrupted), or it is journaled
    running but its process is gone (``kill -9``, a crashed host is not assumed: a run of another
    machine is left alone). Never the live database, never a run that kept its copy
    (``keep: true``), never what another environment's runs made. A swept run still journaled
    running is marked interrupted.

    ```yaml
    - id: sweep
      action: odoo.sweep
      on_failure: continue
    ```
    """

    name = "odoo.sweep"

    class Params(DbParams):
        scratch_dir: str | None = Field(
            None, description="where scratch directories are looked for (default $ERPOPS_SCRATCH_DIR or /var/tmp)"
        )
        databases: bool = Field(
            True, description="also look for scratch databases on the live server (a physical drill makes none)"
        )

    outputs = {
        "swept": "per dead run: run, databases dropped, directories removed, processes killed",
        "left": "leftovers not swept, each with the reason",
    }

    def _leftovers(self, params: Params, ctx: ActionContext) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
        from erpops.backends.odoo import restore as R
        from erpops.state import run_alive

        dsn = dsn_of(ctx, params.dsn)
        live = live_database(ctx)
        found: dict[str, dict[str, list[str]]] = {}
        for name, run_id in R.marked_databases(dsn) if params.databases else []:
            if name != live:
                found.setdefault(run_id, {"databases": [], "directories": []})["databases"].append(name)
        roots: list[Path | str | None] = [params.scratch_dir]
        live_files = filestore_of(ctx, None)
        if live_files is not None:
            roots.append(live_files.parent)
        for root in roots:
            for path, maker in R.list_scratch(root):
                dirs = found.setdefault(maker, {"databases": [], "directories": []})["directories"] if maker else None
                if dirs is not None and str(path) not in dirs:  # the two roots may be one
                    dirs.append(str(path))
        sweep: dict[str, dict[str, list[str]]] = {}
        left: list[str] = []
        here = env_name(ctx, None)
        for run_id, things in sorted(found.items()):
            what = ", ".join(things["databases"] + things["directories"])
            rec = ctx.state.get_run(run_id) if ctx.state is not None and run_id != ctx.run.id else None
            if rec is None or rec.environment != here or (rec.host == ctx.run.host and rec.pid == os.getpid()):
                continue  # this run's own (or its parent's), or not a run of this environment
            if rec.params.get("keep") is True:
                left.append(f"{what}: run {run_id} kept them (keep: true)")
            elif rec.state not in _UNFINISHED:
                continue  # it finished: what it made is meant to stay
            elif rec.state == "running" and run_alive(rec) is not False:
                where = "on this machine" if rec.host == ctx.run.host else f"on {rec.host}"
                left.append(f"{what}: run {run_id} may still be running {where}")
            else:
                sweep[run_id] = things
        return sweep, left

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        import time

        try:
            sweep, left = self._leftovers(params, ctx)
            ctx.memo["leftovers"] = (time.monotonic(), sweep, left)
        except ErpopsError:
            return PlanResult(Change.MAY, "drop what dead runs of this environment left (scratch databases, files)")
        if not sweep:
            return PlanResult(Change.NONE, "no dead run of this environment left anything")
        what = "; ".join(f"run {r}: {', '.join(t['databases'] + t['directories'])}" for r, t in sweep.items())
        return PlanResult(Change.WILL, f"drop what dead runs left: {what}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        import time

        from erpops import process
        from erpops.backends.odoo import restore as R
        from erpops.state import utcnow

        # The plan's look, when it is fresh, is this step's: what a dead run left stays until swept
        # (a run found dead does not come back); anything left after the look is swept next time.
        planned = ctx.memo.pop("leftovers", None)
        if planned is not None and time.monotonic() - planned[0] < 60:
            sweep, left = planned[1], planned[2]
        else:
            sweep, left = self._leftovers(params, ctx)
        dsn = dsn_of(ctx, params.dsn)
        swept = []
        for run_id, things in sweep.items():
            killed = process.reap_run(run_id)
            dropped = [name for name in things["databases"] if R.drop_database(dsn, name, run_id=run_id)]
            removed = [d for d in things["directories"] if R.remove_scratch(Path(d))]
            rec = ctx.state.get_run(run_id)
            if rec is not None and rec.state == "running":
                ctx.state.finish_run(
                    run_id,
                    "interrupted",
                    utcnow(),
                    f"the erpops process ended without finishing this run; run {ctx.run.id} swept what it left",
                )
            ctx.log(f"run {run_id} (dead) left {', '.join(dropped + removed + killed) or 'nothing any more'}: swept")
            swept.append({"run": run_id, "databases": dropped, "directories": removed, "processes": killed})
        for line in left:
            ctx.log(f"not swept: {line}")
        return {"swept": swept, "left": left}


class Cleanup(Action):
    """Drop a scratch database and its scratch directory after a drill — only a database this run
    created and marked (``created_by``: the id of the earlier run whose kept database this is), and
    only a directory carrying erpops's marker; ``keep: true`` keeps both.

    ```yaml
    finally:
      - id: cleanup
        action: odoo.cleanup
        with: {database: "{{ params.drill_database }}", keep: "{{ params.keep }}"}
    ```
    """

    name = "odoo.cleanup"

    class Params(_Target):
        keep: bool = Field(False, description="keep the database and files (for inspection)")
        created_by: str | None = Field(
            None, description="the run that created it, when it is not this run (a database a drill kept)"
        )

    outputs = {"dropped": "true when the database was dropped", "removed": "true when files were removed"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if params.keep:
            return PlanResult(Change.NONE, f"keep {params.database} and its scratch files")
        return PlanResult(Change.WILL, f"drop scratch database {params.database} (if erpops made it) and its files")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import restore as R

        scratch = _scratch(ctx, params)
        if params.keep:
            ctx.log(f"kept database {params.database} and {scratch}")
            return {"dropped": False, "removed": False}
        refuse_live(ctx, params.database, "odoo.cleanup")
        dropped = R.drop_database(dsn_of(ctx, params.dsn), params.database, run_id=params.created_by or ctx.run.id)
        removed = R.remove_scratch(scratch)
        ctx.log(f"database {params.database}: {'dropped' if dropped else 'not there'}; {scratch}: "
                f"{'removed' if removed else 'not there'}")  # fmt: skip
        return {"dropped": dropped, "removed": removed}
