"""``odoo.restore_physical`` and ``odoo.cleanup_physical``: a restore drill to a moment, from a
physical base backup and the WAL archive, into a scratch server
(:mod:`erpops.backends.postgres.pitr`)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from erpops.actions.base import Action, ActionContext, Change, PlanResult
from erpops.actions.odoo._common import DbParams, cancelled, database_of, dsn_of, env_name, open_store, progress
from erpops.errors import InvalidInput, PermanentError


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestorePhysical(Action):
    """Restore the environment's server as it was at a moment, into a scratch server: the newest
    physical base backup consistent before the target (or ``backup``), its SHA-256 checked, unpacked,
    ``pg_verifybackup``-checked, then WAL from the archive replayed up to ``to_time`` / ``to_lsn``
    (``latest``: all of it; neither: the base backup's own consistency point) and the copy promoted.
    The filestore is restored beside it. Never the live server's port or data directory: a port and
    a directory of its own, archiving off. A missing WAL segment the target needs stops the drill
    naming it; a corrupt one stops the replay (checksum).

    ```yaml
    - id: restore
      action: odoo.restore_physical
      with: {to_time: "2026-12-07T02:15:00Z"}
      timeout: 12h
    ```
    """

    name = "odoo.restore_physical"

    class Params(DbParams):
        backup: str | None = Field(None, description="base backup id (default: the newest that fits the target)")
        to_time: str | None = Field(None, description="the moment to recover to (ISO 8601), or latest")
        to_lsn: str | None = Field(None, description="the WAL position to recover to (e.g. 0/3000060)")
        database: str | None = Field(None, description="the Odoo database in the copy; default: database.name")
        environment: str | None = Field(None, description="whose backups; default: this run's environment")
        scratch_dir: str | None = Field(
            None, description="parent of the scratch directory (default $ERPOPS_SCRATCH_DIR or /var/tmp)"
        )
        lookahead: int = Field(8, ge=1, le=256, description="WAL segments fetched ahead of the replay")
        timeout: float = Field(3600, gt=0, description="seconds the replay may take")

    outputs = {
        "backup_id": "the base backup restored",
        "dsn": "where the recovered copy answers (its own socket and port)",
        "database": "the Odoo database in the copy",
        "filestore": "the restored filestore directory",
        "scratch": "the scratch directory (data directory, WAL spool, filestore)",
        "target": "what was asked: immediate, latest, a time or an LSN",
        "recovery": "target, reached_time (the last transaction replayed), reached_lsn, segments, lag_seconds",
        "phases": "seconds: fetch, unpack (with pg_verifybackup), replay",
        "fetch_seconds": "as phases.fetch (for odoo.drill_report)",
        "restore_seconds": "unpack + replay (for odoo.drill_report)",
        "artifacts": "per artifact: name, key, ok (SHA-256 and size as the manifest says)",
        "major": "the PostgreSQL major version the copy runs",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        from erpops.backends.postgres import pitr

        target = pitr.parse_target(params.to_time, params.to_lsn)
        which = params.backup or "the newest physical base backup that fits"
        return PlanResult(Change.WILL, f"restore {which} into a scratch server and replay WAL to {target.describe()}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import restore as R
        from erpops.backends.postgres import pitr
        from erpops.backends.storage.catalog import Catalog

        target = pitr.parse_target(params.to_time, params.to_lsn)
        env = env_name(ctx, params.environment)
        store = open_store(ctx)
        catalog = Catalog(store, env)
        manifest = self._choose(catalog, params.backup, target)
        assert manifest.physical is not None
        major = int(manifest.postgres_version.split(".")[0])
        database = database_of(ctx, params.database)
        label = re.sub(r"[^a-z0-9_]", "_", f"{env}_pitr_{ctx.run.id}".lower())[:63]
        scratch = R.make_scratch(R.scratch_dir(params.scratch_dir, label), ctx.run.id)
        try:
            return self._restore(params, ctx, store, manifest, target, scratch, database, major)
        except BaseException:
            R.remove_scratch(scratch)  # stops the scratch server too; the error is the drill's report
            raise

    def _restore(
        self,
        params: Params,
        ctx: ActionContext,
        store: Any,
        manifest: Any,
        target: Any,
        scratch: Path,
        database: str,
        major: int,
    ) -> dict[str, Any]:
        from erpops.backends.odoo import restore as R
        from erpops.backends.postgres import pitr, wal

        env = env_name(ctx, params.environment)
        datadir, spool, files = scratch / "data", scratch / "wal", scratch / "filestore" / database
        stop = cancelled(ctx)
        phys = manifest.physical
        ctx.log(f"restoring base backup {manifest.backup_id} (WAL {phys.start_lsn} .. {phys.stop_lsn}, "
                f"timeline {phys.timeline}) to {target.describe()}")  # fmt: skip

        t0 = time.monotonic()
        fs = manifest.artifacts.get("filestore")
        box: dict[str, Any] = {}
        worker = None
        if fs is not None:  # the filestore is fetched and unpacked beside the data directory

            def unpack_filestore() -> None:
                try:
                    archive = R.fetch_checked(store, fs, scratch / "filestore.tar.zst", cancelled=stop)
                    try:
                        R.extract_filestore(archive, files, cancelled=stop, expect=fs)
                    finally:
                        archive.close()
                        (scratch / "filestore.tar.zst").unlink(missing_ok=True)
                except BaseException as exc:  # raised below
                    box["error"] = exc

            worker = threading.Thread(target=unpack_filestore, daemon=True, name="erpops-filestore")
            worker.start()
        base = manifest.artifacts["base"]
        report = progress(ctx, "fetch", totals={"base": base.size})  # one reporter: it paces its events
        checked = R.fetch_checked(store, base, scratch / "base.tar.zst", cancelled=stop,
                                  progress=lambda n: report("base", n))  # fmt: skip
        artifacts = [{"name": "base", "key": base.key, "ok": True}]
        fetched = time.monotonic()
        try:
            R.extract_filestore(checked, datadir, cancelled=stop, expect=base)
        finally:
            checked.close()
            (scratch / "base.tar.zst").unlink(missing_ok=True)
        said = pitr.verify_backup(datadir, major)
        ctx.log(f"pg_verifybackup: {said.splitlines()[-1] if said else 'ok'}")
        if worker is not None:
            worker.join()
            if "error" in box:
                raise box["error"]
            assert fs is not None
            artifacts.append({"name": "filestore", "key": fs.key, "ok": True})
        unpacked = time.monotonic()

        listing = {a.name: a for a in wal.listing(store, env)}
        plan = pitr.plan_wal(store, listing, manifest, target)
        if plan.missing:
            raise pitr.WalGap(
                f"WAL segment {plan.missing[0]} is not in the archive ({store.location(wal.folder(env))}) but "
                f"the restore to {target.describe()} needs it"
                + (f" ({len(plan.missing)} missing in all)" if len(plan.missing) > 1 else "")
            )
        feeder = pitr.WalFeeder(store, listing, plan, spool, lookahead=params.lookahead, cancelled=stop)
        user = pitr.user_of(dsn_of(ctx, params.dsn))
        recovered = pitr.recover(datadir, _free_port(), target, feeder, user=user, major=major, timeout=params.timeout)
        replayed = time.monotonic()
        reached = recovered.reached_time
        lag = round((target.time - reached).total_seconds(), 3) if target.time and reached else None
        recovery = {
            "target": target.describe(),
            "reached_time": reached.isoformat() if reached else None,
            "reached_lsn": recovered.reached_lsn,
            "next_commit_time": recovered.next_commit.isoformat() if recovered.next_commit else None,
            "lag_seconds": lag,
            "segments": len(recovered.segments),
            "wal_bytes": recovered.wal_bytes,
            "base_stop_time": manifest.physical.stop_time.isoformat(),
        }
        ctx.log(f"recovered to {recovery['reached_time'] or recovery['reached_lsn']} (target {target.describe()}; "
                f"{len(recovered.segments)} WAL segments replayed) on port {recovered.port}")  # fmt: skip
        phases = {
            "fetch": round(fetched - t0, 3),
            "unpack": round(unpacked - fetched, 3),
            "replay": round(replayed - unpacked, 3),
        }
        return {
            "backup_id": manifest.backup_id,
            "dsn": recovered.dsn(),
            "database": database,
            "filestore": str(files) if fs is not None else None,
            "scratch": str(scratch),
            "target": target.describe(),
            "recovery": recovery,
            "phases": phases,
            "fetch_seconds": phases["fetch"],
            "restore_seconds": round(phases["unpack"] + phases["replay"], 3),
            "artifacts": artifacts,
            "major": major,
        }

    @staticmethod
    def _choose(catalog: Any, backup: str | None, target: Any) -> Any:
        from erpops.backends.postgres import pitr
        from erpops.retention import USABLE

        if backup:
            manifest, _ = catalog.read_manifest(backup)
            if manifest.method != "physical":
                raise InvalidInput(f"backup {backup} is a logical backup: drill it with restore-test without --to-time")
            if not pitr.fits(manifest, target):
                raise InvalidInput(f"backup {backup} ends after {target.describe()}: choose an older base backup")
            return manifest
        candidates = [e for e in catalog.list() if e.state in USABLE]
        for entry in candidates:  # newest first
            manifest, _ = catalog.read_manifest(entry.backup_id)
            if pitr.fits(manifest, target):
                return manifest
        physical = (
            "no physical base backup" if not candidates else f"no physical base backup ends before {target.describe()}"
        )
        raise PermanentError(
            f"{physical} of {catalog.environment} is usable",
            hint="backup.method: physical, then erpops backup (a base backup), with WAL archiving on",
        )


class CleanupPhysical(Action):
    """Stop the scratch server of a physical drill and delete its directory, unless ``keep`` — then
    say how to reach the copy and how to stop it.

    ```yaml
    finally:
      - id: cleanup
        action: odoo.cleanup_physical
        with: {scratch: "{{ steps.restore.outputs.scratch if 'restore' in steps else '' }}"}
    ```
    """

    name = "odoo.cleanup_physical"

    class Params(DbParams):
        scratch: str | None = Field(None, description="the drill's scratch directory (empty: nothing was made)")
        keep: bool = Field(False, description="leave the scratch server running, for inspection")
        major: int | None = Field(None, description="the copy's PostgreSQL major version")

    outputs = {"removed": "true when the scratch server and files were removed", "connect": "with keep: how"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if params.keep:
            return PlanResult(Change.NONE, "keep the scratch server")
        return PlanResult(Change.MAY, "stop the scratch server and delete its files")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import restore as R
        from erpops.backends.postgres import local_server, pitr

        if not params.scratch:
            return {"removed": False, "connect": None}
        scratch = Path(params.scratch)
        datadir = scratch / "data"
        if params.keep:
            info = local_server.status(datadir)
            connect = f"psql 'host={info.socket_dir} port={info.port}'"
            ctx.log(f"kept: the copy answers at {connect}; stop it with: pg_ctl -D {datadir} stop -m fast, "
                    f"then delete {scratch}")  # fmt: skip
            return {"removed": False, "connect": connect}
        pitr.stop(datadir, major=params.major)
        removed = R.remove_scratch(scratch)
        ctx.log(f"scratch server stopped, {scratch} deleted")
        return {"removed": removed, "connect": None}
