"""The release history: ``runtime.record_release``, ``runtime.releases``, ``runtime.resolve_release``.

The history is kept in the state store (kind ``release``, keyed by release id); its shape and its
readers are described in :mod:`erpops.records`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.actions.runtime._common import runtime_of
from erpops.errors import ErpopsError, InvalidInput, PermanentError
from erpops.records import RELEASE, list_releases, release_time
from erpops.state import utcnow


class RecordRelease(Action):
    """Write (or update) a release in the environment's history in the state store.

    ```yaml
    - id: record
      action: runtime.record_release
      with:
        images: "{{ steps.roll.outputs.images }}"
        status: good
        backup_id: "{{ steps.backup.outputs.backup_id }}"
      undo: {action: runtime.record_release, with: {status: failed}}
    ```
    """

    name = "runtime.record_release"

    class Params(ActionParams):
        release: str | None = Field(None, description="release id; default: the run id")
        status: Literal["pending", "good", "failed"]
        image: str | None = Field(None, description="one image for every declared service")
        images: dict[str, str | None] | None = Field(None, description="or an image per service")
        previous: dict[str, str | None] | None = Field(None, description="image per service before")
        backup_id: str | None = Field(None, description="the pre-deploy backup")
        rollback_to: str | None = Field(None, description="the release this one returned to")
        rolled_back_from: str | None = Field(None, description="the release this one replaced by a rollback")
        restored_backup: str | None = Field(None, description="the backup a rollback restored the database from")
        error: str | None = None

    outputs = {"release": "the release id", "status": "its status"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, f"record release {params.release or ctx.run.id} as {params.status}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        if ctx.state is None:
            raise PermanentError("no state store: the release history cannot be written")
        key = params.release or ctx.run.id
        old = ctx.state.get_record(RELEASE, ctx.env.name, key)
        data = dict(old.data) if old else {"time": utcnow().isoformat(), "run_id": ctx.run.id, "backup_id": None}
        for name in ("images", "previous", "backup_id", "rollback_to", "rolled_back_from", "restored_backup", "error"):
            value = getattr(params, name)
            if value is not None:
                data[name] = value
        if params.image is not None:
            data["images"] = {s: params.image for s in ctx.env.runtime.services}
        data["status"] = params.status
        data.setdefault("runbook", ctx.run.runbook)
        data[f"{params.status}_at"] = utcnow().isoformat()
        ctx.state.put_record(RELEASE, ctx.env.name, key, data)
        return {"release": key, "status": params.status}


class Releases(Action):
    """The release history, newest first, and the last known good release.

    ```yaml
    - id: history
      action: runtime.releases
      with: {limit: 10}
    ```
    """

    name = "runtime.releases"
    read_only = True

    class Params(ActionParams):
        limit: int = Field(20, ge=1)
        status: Literal["pending", "good", "failed"] | None = None

    outputs = {"releases": "the releases, newest first", "last_good": "id of the newest good release"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, "read the release history")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        if ctx.state is None:
            return {"releases": [], "last_good": None}
        rels = list_releases(ctx.state, ctx.env.name)
        good = [r for r in rels if r.get("status") == "good"]
        if params.status:
            rels = [r for r in rels if r.get("status") == params.status]
        return {"releases": rels[: params.limit], "last_good": good[0]["id"] if good else None}


class ResolveRelease(Action):
    """Pick the release to roll back to: ``to`` (a release id), or the newest good release that is
    not the one running now and was not itself rolled back from.

    ```yaml
    - id: target
      action: runtime.resolve_release
      with: {to: "{{ params.to }}"}
    ```
    """

    name = "runtime.resolve_release"
    read_only = True

    class Params(ActionParams):
        to: str | None = None

    outputs = {
        "release": "the release id",
        "images": "its image per service",
        "backup_id": "its pre-deploy backup (null when none)",
        "current": "the release running now",
        "current_backup_id": "pre-deploy backup of the release running now (restoring it undoes its migration)",
        "restore_backup_id": (
            "the backup that holds the database as the target release left it: the pre-deploy backup of the "
            "first release after it that took one (null when none did)"
        ),
        "restore_backup_release": "the release that took restore_backup_id",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        wanted = params.to or "(last known good)"
        try:
            found = self._resolve(params, ctx)  # reads the history and what runs; changes nothing
        except ErpopsError as exc:
            return PlanResult(Change.NONE, f"find release {wanted} (cannot resolve it now: {exc})")
        images = ", ".join(f"{s}={i}" for s, i in sorted(found["images"].items()) if i) or "no images recorded"
        return PlanResult(
            Change.NONE, f"roll back to release {found['release']} ({images}); running now: {found['current']}"
        )

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        return self._resolve(params, ctx)

    def _resolve(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        rels = list_releases(ctx.state, ctx.env.name) if ctx.state is not None else []
        with runtime_of(ctx) as rt:
            now = rt.current()
        running = {s: i for s, i in now.images.items() if i}
        current = now.release
        if params.to:
            found = [r for r in rels if r["id"] == params.to]
            if not found:
                known = ", ".join(r["id"] for r in rels[:10]) or "none recorded"
                raise InvalidInput(f"release {params.to!r} is not in the history of {ctx.env.name!r} (newest: {known})")
            target = found[0]
        else:

            def is_current(r: dict[str, Any]) -> bool:
                images = {s: i for s, i in (r.get("images") or {}).items() if i}
                return r["id"] == current or images == running

            abandoned = {r.get("rolled_back_from") for r in rels if r.get("status") == "good"}
            good = [r for r in rels if r.get("status") == "good" and not is_current(r) and r["id"] not in abandoned]
            if not good:
                raise PermanentError(
                    f"no known good release of {ctx.env.name!r} to roll back to "
                    f"(history: {len(rels)} release(s)); give one with --to"
                )
            target = good[0]
        cur = next((r for r in rels if r["id"] == current), None)
        after = [r for r in reversed(rels) if release_time(r) > release_time(target) and r.get("backup_id")]
        return {
            "restore_backup_id": after[0]["backup_id"] if after else None,
            "restore_backup_release": after[0]["id"] if after else None,
            "release": target["id"],
            "images": target.get("images") or {},
            "backup_id": target.get("backup_id"),
            "current": current,
            "current_backup_id": (cur or {}).get("backup_id"),
        }
