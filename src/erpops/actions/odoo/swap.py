"""``odoo.swap_database``: put a restored copy in the live database's place (and back, as undo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from erpops.actions.base import Action, ActionContext, Change, PlanResult
from erpops.actions.odoo._common import DbParams, database_of, drill_name, dsn_of, filestore_of


class SwapDatabase(Action):
    """Put a database erpops restored (``odoo.restore``) in the place of the environment's live
    database, and the restored filestore in the place of the live filestore. The live ones are
    kept under ``keep_as`` (default ``<db>_replaced_<run id>``; erpops never drops them). Run it
    with the application stopped: remaining sessions on both databases are ended (and listed),
    new ones refused, and both renames happen in one transaction. Refuses a copy without
    erpops's mark, a filestore on another file system, a live filestore that is a mount point.

    With ``back: true`` it is its own undo: the copy gets its name and mark back, the kept
    database and filestore their places.

    ```yaml
    - id: swap
      action: odoo.swap_database
      with:
        replacement: "{{ steps.restore.outputs.database }}"
        replacement_filestore: "{{ steps.restore.outputs.filestore }}"
        backup: "{{ steps.restore.outputs.backup_id }}"
      undo:
        action: odoo.swap_database
        with:
          back: true
          replacement: "{{ steps.restore.outputs.database }}"
          replacement_filestore: "{{ steps.restore.outputs.filestore }}"
          live_comment: "{{ steps.swap.outputs.live_comment }}"
          replacement_comment: "{{ steps.swap.outputs.replacement_comment }}"
    ```
    """

    name = "odoo.swap_database"

    class Params(DbParams):
        replacement: str = Field(description="the restored copy to put in place")
        database: str | None = Field(None, description="the live database; default: the environment's")
        keep_as: str | None = Field(None, description="name the live database is kept under")
        replacement_filestore: str | None = Field(None, description="the restored filestore directory")
        filestore: str | None = Field(None, description="the live filestore; default: the environment's")
        backup: str | None = Field(None, description="the backup the copy came from (written in the comments)")
        back: bool = Field(False, description="undo an earlier swap")
        live_comment: str | None = Field(None, description="with back: the live database's comment before")
        replacement_comment: str | None = Field(None, description="with back: the copy's comment (mark) before")

    outputs = {
        "database": "the live database name",
        "kept_as": "the name the replaced database is kept under",
        "kept_filestore": "where the replaced filestore is kept (null without a filestore)",
        "sessions_ended": "sessions ended to free the databases",
        "live_comment": "the live database's comment before (for the undo)",
        "replacement_comment": "the copy's comment before (for the undo)",
        "seconds": "time taken",
    }

    @staticmethod
    def _names(params: Params, ctx: ActionContext) -> tuple[str, str]:
        live = database_of(ctx, params.database)
        return live, params.keep_as or drill_name(live, ctx.run.id, "replaced")

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        live, keep_as = self._names(params, ctx)
        if params.back:
            return PlanResult(Change.WILL, f"swap back: {live} -> {params.replacement}, {keep_as} -> {live}")
        return PlanResult(
            Change.WILL,
            f"put restored {params.replacement} in the place of {live} (kept as {keep_as}), ending their sessions",
        )

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.odoo import swap as odoo_swap

        live, keep_as = self._names(params, ctx)
        filestore = filestore_of(ctx, params.filestore)
        restored = Path(params.replacement_filestore) if params.replacement_filestore else None
        if restored is None:
            filestore = None
        elif filestore is None:
            ctx.log(
                f"the environment has no odoo.filestore: the restored filestore stays in {restored}", level="warning"
            )
        dsn = dsn_of(ctx, params.dsn)
        if params.back:
            result = odoo_swap.swap_back(
                dsn,
                live,
                params.replacement,
                keep_as,
                live_comment=params.live_comment,
                replacement_comment=params.replacement_comment,
                filestore=filestore,
                replacement_filestore=restored,
            )
            ctx.log(f"swapped back: {live} is the database it was; the copy is {params.replacement} again")
        else:
            note = f"erpops run {ctx.run.id}" + (f" from backup {params.backup}" if params.backup else "")
            result = odoo_swap.swap(
                dsn,
                live,
                params.replacement,
                keep_as,
                note=note,
                run_id=ctx.run.id,
                filestore=filestore,
                replacement_filestore=restored,
            )
            ctx.log(
                f"{params.replacement} is now {live}; the replaced database is kept as {keep_as}"
                + (f", its filestore as {result.kept_filestore}" if result.kept_filestore else "")
                + " (drop them by hand once they are no longer needed)"
            )
        for session in result.sessions_ended:
            ctx.log(f"ended session {session}", level="warning")
        return {
            "database": live,
            "kept_as": keep_as,
            "kept_filestore": result.kept_filestore,
            "sessions_ended": result.sessions_ended,
            "live_comment": result.live_comment,
            "replacement_comment": result.replacement_comment,
            "seconds": result.seconds,
        }
