"""Object-storage actions: put, get, list, verify, delete and prune backups.

Every action works on the environment's storage (``storage:`` in erpops.yaml) unless ``url``
(and ``endpoint``) name another; the other storage settings (region, profile, keys, Object Lock)
still come from the environment. Backups live under ``<env>/<backup-id>/`` (see
``erpops.manifest``).
"""

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.errors import ErpopsError, InvalidInput, PermanentError
from erpops.runbook.durations import Duration


class _Where(ActionParams):
    url: str | None = Field(
        None, description="storage URL (s3://bucket/prefix, file:///path); default: the environment's"
    )
    endpoint: str | None = Field(None, description="S3 endpoint URL for a non-AWS server")


def _storage(ctx: ActionContext, params: _Where) -> Any:
    from erpops.environments import Storage

    base = getattr(ctx.env, "storage", None)
    if params.url:
        update: dict[str, Any] = {"url": params.url}
        if params.endpoint is not None:
            update["endpoint"] = params.endpoint
        return base.model_copy(update=update) if base is not None else Storage(**update)
    if base is None:
        name = getattr(ctx.env, "name", "?")
        raise InvalidInput(f"environment {name!r} has no storage configured; give url: or add storage: to erpops.yaml")
    if params.endpoint is not None:
        return base.model_copy(update={"endpoint": params.endpoint})
    return base


def _open(ctx: ActionContext, params: _Where) -> Any:
    from erpops.backends.storage import open_store

    return open_store(_storage(ctx, params), ctx.resolve_secret)


def _where(ctx: ActionContext, params: _Where) -> str:
    try:
        return _storage(ctx, params).url
    except ErpopsError:
        return "(no storage)"


def _env_name(ctx: ActionContext, environment: str | None) -> str:
    name = environment or getattr(ctx.env, "name", None) or ctx.run.environment
    if not name:
        raise InvalidInput("no environment name to find backups under; give environment:")
    return str(name)


def _progress(ctx: ActionContext, description: str, total: int | None) -> Callable[[int], None]:
    """A byte-count callback that reports progress (at most 4 times a second) and honours cancel."""
    last = [0.0]

    def report(done: int) -> None:
        ctx.check_cancelled()
        now = time.monotonic()
        if now - last[0] >= 0.25 or (total is not None and done >= total):
            last[0] = now
            ctx.progress(description, done=done, total=total)

    return report


class Put(Action):
    """Upload a local file to the object store (streamed, SHA-256 computed on the way).

    Object Lock retention defaults to the environment's ``storage.object_lock`` and
    ``storage.retention_days``.

    ```yaml
    - id: upload-report
      action: storage.put
      with: {key: "reports/{{ run.id }}.json", path: /tmp/report.json}
    ```
    """

    name = "storage.put"

    class Params(_Where):
        key: str = Field(description="object key, relative to the storage URL")
        path: str = Field(description="local file to upload")
        object_lock: Literal["compliance", "governance", "none"] | None = Field(
            None, description="Object Lock mode; default: the environment's; none: no retention"
        )
        retention_days: int | None = Field(None, ge=1, description="Object Lock retention in days")

    outputs = {
        "key": "the object key",
        "url": "where the object is",
        "size": "bytes stored",
        "sha256": "SHA-256 of the object",
        "version_id": "S3 version id (versioned buckets)",
        "retain_until": "Object Lock retain-until date, if any",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"upload {params.path} to {_where(ctx, params).rstrip('/')}/{params.key}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from pathlib import Path

        from erpops.backends.storage import upload_retention

        storage = _storage(ctx, params)
        retention = upload_retention(storage, params.object_lock, params.retention_days)
        path = Path(params.path).expanduser()
        if not path.is_file():
            raise InvalidInput(f"storage.put: {path} is not a file")
        store = _open(ctx, params)
        info = store.put_file(
            params.key, path, retention, progress=_progress(ctx, f"upload {path.name}", path.stat().st_size)
        )
        ctx.log(f"stored {store.location(info.key)} ({info.size} bytes, sha256 {info.sha256})")
        return {
            "key": info.key,
            "url": store.location(info.key),
            "size": info.size,
            "sha256": info.sha256,
            "version_id": info.version_id,
            "retain_until": info.retain_until.isoformat() if info.retain_until else None,
        }


class Get(Action):
    """Download an object to a local file (mode 0600), optionally checking its SHA-256.

    ```yaml
    - id: fetch-dump
      action: storage.get
      with: {key: "prod/20261123T020000Z-ab12/db.dump.zst", path: /scratch/db.dump.zst}
    ```
    """

    name = "storage.get"

    class Params(_Where):
        key: str
        path: str = Field(description="local file to write (replaced atomically)")
        sha256: str | None = Field(None, description="expected SHA-256; a mismatch fails the step")

    outputs = {"path": "the local file", "size": "bytes downloaded", "sha256": "SHA-256 of the download"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"download {_where(ctx, params).rstrip('/')}/{params.key} to {params.path}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from pathlib import Path

        store = _open(ctx, params)
        head = store.head(params.key)
        if head is None:
            raise PermanentError(f"no object {store.location(params.key)}")
        path = Path(params.path).expanduser()
        info = store.get_file(params.key, path, progress=_progress(ctx, f"download {path.name}", head.size))
        if params.sha256 and info.sha256 != params.sha256.lower():
            path.unlink(missing_ok=True)
            raise PermanentError(
                f"{store.location(params.key)}: SHA-256 is {info.sha256}, expected {params.sha256}; download removed"
            )
        return {"path": str(path), "size": info.size, "sha256": info.sha256}


class List(Action):
    """List the environment's backups with their state, or the objects under a prefix.

    ```yaml
    - id: backups
      action: storage.list
    - id: pick
      action: log
      with: {message: "newest complete: {{ steps.backups.outputs.newest_complete }}"}
    ```
    """

    name = "storage.list"
    read_only = True

    class Params(_Where):
        prefix: str | None = Field(None, description="list raw objects under this prefix instead of backups")
        environment: str | None = Field(None, description="whose backups; default: this run's environment")

    outputs = {
        "backups": "backups, newest first: backup_id, time, state, size, locked, retain_until...",
        "count": "number of backups (or objects)",
        "newest_complete": "id of the newest usable backup, or null",
        "newest_verified": "id of the newest verified (or restore-tested) backup, or null",
        "newest_restore_tested": "id of the newest restore-tested backup, or null",
        "objects": "with prefix: key, size, modified, retain_until of each object",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"list {'objects' if params.prefix else 'backups'} in {_where(ctx, params)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.storage.catalog import Catalog
        from erpops.retention import RESTORE_TESTED, USABLE, VERIFIED

        store = _open(ctx, params)
        if params.prefix is not None:
            objects = [
                {
                    "key": o.key,
                    "size": o.size,
                    "modified": o.modified.isoformat() if o.modified else None,
                    "retain_until": o.retain_until.isoformat() if o.retain_until else None,
                    "lock_mode": o.lock_mode,
                }
                for o in store.list(params.prefix, with_retention=True)
            ]
            return {
                "objects": objects,
                "count": len(objects),
                "backups": [],
                "newest_complete": None,
                "newest_verified": None,
                "newest_restore_tested": None,
            }
        entries = Catalog(store, _env_name(ctx, params.environment)).list()

        def newest(states: frozenset[str] | set[str]) -> str | None:
            return next((e.backup_id for e in entries if e.state in states), None)

        return {
            "backups": [e.as_dict() for e in entries],
            "count": len(entries),
            "newest_complete": newest(USABLE),
            "newest_verified": newest({VERIFIED, RESTORE_TESTED}),
            "newest_restore_tested": newest({RESTORE_TESTED}),
            "objects": [],
        }


class Verify(Action):
    """Re-read a backup's artifacts and compare size and SHA-256 with its manifest; write
    ``verify.json``. Fails (exit 1) naming the artifact that does not match.

    ```yaml
    - id: verify
      action: storage.verify
      with: {backup: "{{ steps.dump.outputs.backup_id }}"}
    ```
    """

    name = "storage.verify"

    class Params(_Where):
        backup: str | None = Field(None, description="backup id (default: the newest complete backup)")
        key: str | None = Field(None, description="any key or prefix inside the backup, instead of backup")
        environment: str | None = None
        write_marker: bool = Field(True, description="record the result as verify.json beside the manifest")

    outputs = {
        "backup_id": "the backup checked",
        "ok": "true when every artifact matched",
        "artifacts": "per artifact: name, key, size, sha256, ok",
        "bytes": "bytes re-read",
        "seconds": "time taken",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        which = params.backup or params.key or "the newest complete backup"
        return PlanResult(
            Change.WILL, f"re-read the artifacts of {which}, compare with its manifest, write verify.json"
        )

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from datetime import UTC, datetime

        import erpops
        from erpops.backends.storage import ObjectNotFound
        from erpops.backends.storage.catalog import Catalog
        from erpops.manifest import ArtifactCheck, VerifyMarker, find_backup_id

        store = _open(ctx, params)
        catalog = Catalog(store, _env_name(ctx, params.environment))
        ref = params.backup or params.key
        if ref:
            backup_id = find_backup_id(ref)
            if backup_id is None:
                raise InvalidInput(
                    f"storage.verify: {ref!r} does not name a backup (expected an id like 20261123T020000Z-ab12)"
                )
        else:
            backup_id = catalog.choose().backup_id
        manifest, manifest_sha = catalog.read_manifest(backup_id)
        if not manifest.artifacts:
            raise PermanentError(f"backup {backup_id}: the manifest lists no artifacts")
        started = time.monotonic()
        checks: list[ArtifactCheck] = []
        total = 0
        for name, art in manifest.artifacts.items():
            check = ArtifactCheck(name=name, key=art.key, expected_size=art.size, expected_sha256=art.sha256, ok=False)
            try:
                sha, size = store.digest(art.key, progress=_progress(ctx, f"verify {name}", art.size))
            except ObjectNotFound:
                check.error = "missing"
            else:
                total += size
                check.size, check.sha256 = size, sha
                check.ok = size == art.size and sha == art.sha256
                if size != art.size:
                    check.error = f"size {size} bytes, manifest says {art.size}"
                elif sha != art.sha256:
                    check.error = f"sha256 {sha}, manifest says {art.sha256}"
            checks.append(check)
        seconds = round(time.monotonic() - started, 3)
        ok = all(c.ok for c in checks)
        marker = VerifyMarker(
            backup_id=backup_id,
            verified_at=datetime.now(UTC),
            ok=ok,
            artifacts=checks,
            manifest_sha256=manifest_sha,
            seconds=seconds,
            erpops_version=erpops.__version__,
            run_id=ctx.run.id,
        )
        if params.write_marker:
            catalog.write_verify_marker(marker)
        if not ok:
            bad = next(c for c in checks if not c.ok)
            raise PermanentError(
                f"backup {backup_id}: artifact {bad.name} ({store.location(bad.key)}) "
                f"does not match its manifest: {bad.error}",
                hint="the backup is marked corrupt; it will not be chosen for a restore",
            )
        ctx.log(f"backup {backup_id} verified: {len(checks)} artifacts, {total} bytes in {seconds}s")
        return {
            "backup_id": backup_id,
            "ok": ok,
            "artifacts": [
                {"name": c.name, "key": c.key, "size": c.size, "sha256": c.sha256, "ok": c.ok} for c in checks
            ],
            "bytes": total,
            "seconds": seconds,
        }


class Delete(Action):
    """Delete an object, or a whole backup (its id, or its ``<env>/<id>/`` prefix). Objects under
    Object Lock retention are refused; a backup is deleted manifest first.

    ```yaml
    undo:
      action: storage.delete
      with: {backup: "{{ steps.dump.outputs.backup_id }}"}
    ```
    """

    name = "storage.delete"

    class Params(_Where):
        key: str | None = Field(None, description="object key, or a backup prefix ending with /")
        backup: str | None = Field(None, description="backup id: delete every object of the backup")
        environment: str | None = None
        missing_ok: bool = Field(True, description="succeed when there is nothing to delete")
        bypass_governance: bool = Field(False, description="delete despite GOVERNANCE-mode retention")

    outputs = {"deleted": "keys deleted", "count": "number of objects deleted"}

    def _target(self, params: Params, ctx: ActionContext) -> tuple[str | None, str | None]:
        """(backup id, None) for a whole backup, (None, key) for one object."""
        from erpops.manifest import find_backup_id, is_backup_id

        if bool(params.key) == bool(params.backup):
            raise InvalidInput("storage.delete: give exactly one of key or backup")
        if params.backup:
            if not is_backup_id(params.backup):
                raise InvalidInput(f"storage.delete: {params.backup!r} is not a backup id")
            return params.backup, None
        key = params.key or ""
        parts = key.strip("/").split("/")
        if key.endswith("/") or (len(parts) == 2 and is_backup_id(parts[1])):
            backup_id = find_backup_id(key)
            if backup_id is None:
                raise InvalidInput(f"storage.delete: {key!r} is a prefix but not a backup's; refusing to delete it")
            return backup_id, None
        return None, key

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        backup_id, key = self._target(params, ctx)
        what = f"backup {backup_id} (all its objects)" if backup_id else key
        return PlanResult(Change.WILL, f"delete {what} from {_where(ctx, params)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.storage.catalog import BackupNotFound, Catalog

        backup_id, key = self._target(params, ctx)
        store = _open(ctx, params)
        if backup_id:
            # A backup prefix names its environment (``env/id/``); a bare id uses this run's.
            first = (params.key or "").strip("/").split("/")[0]
            env = first if first and first != backup_id else _env_name(ctx, params.environment)
            try:
                deleted = Catalog(store, env).delete(backup_id, bypass_governance=params.bypass_governance)
            except BackupNotFound:
                if not params.missing_ok:
                    raise
                deleted = []
        else:
            assert key is not None
            deleted = [key] if store.delete(key, bypass_governance=params.bypass_governance) else []
            if not deleted and not params.missing_ok:
                raise PermanentError(f"no object {store.location(key)}")
        ctx.log(f"deleted {len(deleted)} object(s) from {store.url}")
        return {"deleted": deleted, "count": len(deleted)}


class Prune(Action):
    """Delete backups outside a grandfather-father-son retention policy.

    Never deletes the newest usable, verified or restore-tested backup, nor anything under Object
    Lock retention; deletes incomplete backups older than ``grace`` (a younger one may be running)
    and backups that failed verification. Also removes leftovers of killed uploads older than
    ``grace``, and archived WAL older than the first segment the oldest kept physical base backup
    needs (never WAL a kept base backup needs; none at all without a kept base backup; history
    files always stay). Outputs say what was kept and deleted, and why.

    ```yaml
    - id: prune
      action: storage.prune
      with: {daily: 7, weekly: 4, monthly: 12, grace: 1d}
      on_failure: continue
    ```
    """

    name = "storage.prune"

    class Params(_Where):
        daily: int = Field(7, ge=0)
        weekly: int = Field(4, ge=0)
        monthly: int = Field(12, ge=0)
        yearly: int = Field(0, ge=0)
        grace: Duration = Field(86400.0, description="age before an incomplete backup is deleted (e.g. 1d, 6h)")
        environment: str | None = None
        release_backups: int = Field(
            5,
            ge=0,
            description="also keep the pre-deploy backups of the newest N releases (rollback --restore-backup)",
        )

    outputs = {
        "kept": "backups kept: backup_id, state, reasons",
        "deleted": "backups deleted: backup_id, state, reasons",
        "failed": "backups that could not be deleted, with the error",
        "cleaned": "leftovers of killed uploads removed",
        "policy": "the policy applied",
        "wal": "the WAL archive pruned back to the oldest kept base backup: kept_from, deleted, locked",
    }

    def _decide(self, params: Params, ctx: ActionContext) -> tuple[Any, Any, list[Any]]:
        from datetime import UTC, datetime, timedelta

        from erpops.backends.storage.catalog import Catalog
        from erpops.retention import Policy, decide

        policy = Policy(params.daily, params.weekly, params.monthly, params.yearly, timedelta(seconds=params.grace))
        catalog = Catalog(_open(ctx, params), _env_name(ctx, params.environment))
        entries = catalog.list()
        pins = self._release_pins(ctx, catalog.environment, params.release_backups)
        return policy, catalog, decide([e.candidate() for e in entries], policy, datetime.now(UTC), pinned=pins)

    @staticmethod
    def _release_pins(ctx: ActionContext, environment: str, newest: int) -> dict[str, str]:
        """Backup id -> reason for the pre-deploy backups of the ``newest`` releases."""
        if not newest or ctx.state is None:
            return {}
        from erpops.records import list_releases

        pins: dict[str, str] = {}
        for release in list_releases(ctx.state, environment)[:newest]:
            if release.get("backup_id"):
                pins.setdefault(release["backup_id"], f"pre-deploy backup of release {release['id']}")
        return pins

    @staticmethod
    def _prune_wal(ctx: ActionContext, catalog: Any, kept: list[str]) -> dict[str, Any] | None:
        """The WAL archive back to the oldest kept physical base backup, and no further."""
        from erpops.backends.postgres import wal

        starts = []
        for backup_id in kept:
            try:
                manifest, _ = catalog.read_manifest(backup_id)
            except ErpopsError:
                continue  # incomplete: it names no WAL
            if manifest.physical is not None:
                starts.append(manifest.physical.start_wal)
        if not starts:
            return None  # no base backup kept: the archive is left as it is
        oldest = min(starts, key=lambda name: wal.segment_number(name))
        pruned = wal.prune(catalog.store, catalog.environment, oldest)
        if pruned.deleted or pruned.locked:
            ctx.log(f"WAL archive: {len(pruned.deleted)} files older than {oldest} (the oldest kept base backup's "
                    f"first segment) deleted" + (f", {len(pruned.locked)} under Object Lock kept" if pruned.locked
                                                 else ""))  # fmt: skip
        return {"kept_from": oldest, "deleted": len(pruned.deleted), "locked": len(pruned.locked)}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        try:
            _, _, decisions = self._decide(params, ctx)
        except InvalidInput:
            raise
        except ErpopsError as exc:
            return PlanResult(Change.MAY, f"prune backups in {_where(ctx, params)} (cannot list them now: {exc})")
        doomed = [d.backup_id for d in decisions if not d.keep]
        if not doomed:
            # not "no change": a backup made earlier in the run (the backup runbook's dump) is
            # counted when the step runs, and can push an older one out of the policy
            return PlanResult(
                Change.MAY,
                f"keep all {len(decisions)} backups there now; the policy is applied again when the step "
                "runs, counting backups made before it",
            )
        return PlanResult(Change.WILL, f"delete {len(doomed)} of {len(decisions)} backups: {', '.join(doomed)}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from datetime import UTC, datetime, timedelta

        policy, catalog, decisions = self._decide(params, ctx)
        kept, deleted, failed = [], [], []
        for d in decisions:
            ctx.check_cancelled()
            if d.keep:
                kept.append(d.as_dict())
                continue
            try:
                catalog.delete(d.backup_id)
            except ErpopsError as exc:
                failed.append({**d.as_dict(), "error": str(exc)})
                ctx.log(f"could not delete backup {d.backup_id}: {exc}", level="warning")
                continue
            deleted.append(d.as_dict())
            ctx.log(f"deleted backup {d.backup_id} ({d.state}): {'; '.join(d.reasons)}")
        cutoff = datetime.now(UTC) - timedelta(seconds=params.grace)
        cleaned = catalog.store.cleanup_partial(f"{catalog.environment}/", cutoff)
        wal = self._prune_wal(ctx, catalog, [k["backup_id"] for k in kept]) if not failed else None
        outputs = {"kept": kept, "deleted": deleted, "failed": failed, "cleaned": cleaned, "policy": policy.describe(),
                   "wal": wal}  # fmt: skip
        if failed:
            ids = ", ".join(f["backup_id"] for f in failed)
            raise PermanentError(
                f"prune could not delete {len(failed)} backup(s): {ids}; first error: {failed[0]['error']}"
            )
        return outputs
