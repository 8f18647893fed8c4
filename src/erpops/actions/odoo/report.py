"""``odoo.drill_report``: RTO, RPO and checks of a restore drill, as files and a storage marker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.actions.odoo._common import env_name, open_store
from erpops.errors import ErpopsError, PermanentError

#: Where stored drill reports go, beside the backups in ``<env>/`` (not a backup id: the catalog
#: never lists or prunes it).
DRILLS_FOLDER = "drills"


def _age(now: datetime, iso: str | None) -> float | None:
    if not iso:
        return None
    when = datetime.fromisoformat(iso)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return round((now - when).total_seconds(), 3)


class DrillReport(Action):
    """Put together the evidence of a restore drill: RTO (fetch, restore, neutralize and checks,
    each timed), RPO (now minus the backup's snapshot time, and now minus the newest
    ``write_date`` in the restored sale/stock/account data), backup age and every check. Writes
    ``junit`` (JUnit XML, one testcase per check), ``metrics_file`` (Prometheus text format) and
    ``report_file`` (JSON) when given, and with ``store_reports`` the three in the environment's
    object store (``<env>/drills/<run-id>/``, the newest ``keep_reports`` drills kept). Marks the
    backup restore-tested (``restore-test.json``) only when the restore succeeded and every check
    passed; otherwise the step fails (exit 1) after writing the files. Meant for ``finally``:
    inputs of steps that did not run may be empty.

    ```yaml
    finally:
      - id: report
        action: odoo.drill_report
        with:
          backup: "{{ steps['choose'].outputs.backup_id if 'choose' in steps else '' }}"
          restore: "{{ steps['restore'].outputs if 'restore' in steps else {} }}"
          neutralize: "{{ steps['neutralize'].outputs if 'neutralize' in steps else {} }}"
          checks: "{{ steps['checks'].outputs if 'checks' in steps else {} }}"
          junit: "{{ params.junit }}"
          metrics_file: "{{ params.metrics_file }}"
    ```
    """

    name = "odoo.drill_report"

    class Params(ActionParams):
        backup: str | None = Field(None, description="the backup drilled (empty when none was chosen)")
        restore: dict[str, Any] = Field(default_factory=dict, description="outputs of odoo.restore")
        neutralize: dict[str, Any] = Field(default_factory=dict, description="outputs of odoo.neutralize")
        checks: dict[str, Any] = Field(default_factory=dict, description="outputs of odoo.verify")
        environment: str | None = None
        junit: str | None = Field(None, description="write JUnit XML here")
        metrics_file: str | None = Field(None, description="write Prometheus metrics here")
        report_file: str | None = Field(None, description="write the report as JSON here")
        mark: bool = Field(True, description="record a passing drill as restore-test.json in storage")
        store_reports: bool = Field(
            False,
            description="also put report.json, junit.xml and erpops.prom in the object store under "
            "<env>/drills/<run-id>/ (for drills whose disk goes away: a CronJob's pod)",
        )
        keep_reports: int = Field(90, ge=1, description="with store_reports: the newest drills' reports kept there")

    outputs = {
        "passed": "true when the restore worked and every check passed",
        "report": "the whole report (durations, rpo_seconds, backup_age_seconds, checks)",
        "marked": "true when restore-test.json was written",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        files = [f for f in (params.junit, params.metrics_file, params.report_file) if f]
        if params.store_reports:
            files.append(f"the object store ({DRILLS_FOLDER}/)")
        return PlanResult(Change.MAY, "report the drill" + (f" to {', '.join(files)}" if files else ""))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        import json

        from erpops import reports
        from erpops.files import write_atomic

        now = datetime.now(UTC)
        env = env_name(ctx, params.environment)
        manifest, problem = self._manifest(ctx, env, params.backup)
        checks = list(params.checks.get("checks") or [])
        restored = bool(params.restore.get("database"))
        failure = self._failed_step(ctx)
        artifacts = params.restore.get("artifacts") or []
        checksum_ok = restored and all(a.get("ok") for a in artifacts)
        phases = params.restore.get("phases")
        recovery = params.restore.get("recovery")
        expected = (
            f"the base backup's SHA-256 and pg_verifybackup pass, WAL replayed to {recovery.get('target')}"
            if recovery
            else "artifacts match the manifest's SHA-256, pg_restore succeeds"
        )
        checks.insert(
            0,
            {
                "name": "restore",
                "passed": checksum_ok,
                "expected": expected,
                "actual": ("restored into " + params.restore["database"]) if checksum_ok else (failure or problem),
                "duration": float(params.restore.get("fetch_seconds") or 0)
                + float(params.restore.get("restore_seconds") or 0),
                "message": ("checksums verified, restored" if checksum_ok else f"restore failed: {failure or problem}"),
                "skipped": False,
            },
        )
        if restored and not params.checks:
            checks.append(
                {"name": "checks", "passed": False, "expected": "checks run", "actual": failure,
                 "duration": 0.0, "message": f"checks did not run: {failure}", "skipped": False}
            )  # fmt: skip
        durations = {
            **(
                phases
                or {"fetch": params.restore.get("fetch_seconds"), "restore": params.restore.get("restore_seconds")}
            ),
            "neutralize": params.neutralize.get("seconds"),
            "checks": params.checks.get("seconds"),
        }
        seconds = {k: float(v) for k, v in durations.items() if v is not None}
        if len(seconds) == len(durations):
            seconds["total"] = round(sum(seconds.values()), 3)  # the recovery time: every phase ran
        else:  # the drill stopped part-way: how long it ran until then, not the phases that never ran
            seconds["total"] = round((now - ctx.run.started_at).total_seconds(), 3)
        snapshot = manifest.snapshot_time.isoformat() if manifest else None
        passed = all(c.get("passed") for c in checks) and bool(params.checks) and failure is None
        report = {
            "environment": env,
            "backup_id": params.backup or None,
            "run_id": ctx.run.id,
            "database": params.restore.get("database"),
            "passed": passed,
            "started_at": ctx.run.started_at.isoformat(),
            "finished_at": now.isoformat(),
            "finished_at_unix": round(now.timestamp(), 3),
            "durations": seconds,
            "rpo_seconds": {
                "snapshot": _age(now, snapshot),
                "business_data": _age(now, params.checks.get("newest_write")),
                **({"recovered": _age(now, recovery.get("reached_time"))} if recovery else {}),
            },
            "snapshot_time": snapshot,
            "newest_write": params.checks.get("newest_write"),
            "backup_age_seconds": _age(now, manifest.ended_at.isoformat()) if manifest else None,
            "neutralized": params.neutralize.get("changed") or {},
            "recovery": recovery,
            "checks": checks,
            "error": failure or problem,
        }
        if params.junit:
            write_atomic(params.junit, reports.junit_xml(report))
        if params.metrics_file:
            write_atomic(params.metrics_file, reports.prometheus_text(report).encode())
        if params.report_file:
            write_atomic(params.report_file, json.dumps(report, indent=2, default=str).encode())
        if params.store_reports:
            self._store(ctx, env, report, params.keep_reports)
        marked = False
        if passed and params.mark and params.backup:
            marked = self._mark(ctx, env, report)
        self._log(ctx, report)
        if not passed:
            bad = ", ".join(c["name"] for c in checks if not c.get("passed"))
            why = bad or failure or "no checks ran"
            raise PermanentError(f"restore drill of {params.backup or '(no backup)'} failed: {why}")
        return {"passed": passed, "report": report, "marked": marked}

    @staticmethod
    def _manifest(ctx: ActionContext, env: str, backup: str | None) -> tuple[Any, str | None]:
        if not backup:
            return None, "no backup was chosen"
        from erpops.backends.storage.catalog import Catalog

        try:
            manifest, _ = Catalog(open_store(ctx), env).read_manifest(backup)
            return manifest, None
        except ErpopsError as exc:
            return None, str(exc)

    @staticmethod
    def _failed_step(ctx: ActionContext) -> str | None:
        """The error of the step that failed earlier in this run (from the journal), if any."""
        if ctx.state is None:
            return None
        try:
            steps = ctx.state.list_steps(ctx.run.id)
        except Exception:  # the journal is evidence, not a reason to lose the report
            return None
        latest: dict[str, Any] = {}
        for s in steps:  # the last attempt of each step decides (a retried step may have succeeded)
            if s.step_id != ctx.step_id and s.phase != "undo":
                latest[s.step_id] = s
        failed = [s for s in latest.values() if s.outcome not in ("succeeded", "skipped", "running")]
        if not failed:
            return None
        last = failed[-1]
        return f"step {last.step_id}: {last.error or last.outcome}"

    @staticmethod
    def _store(ctx: ActionContext, env: str, report: dict[str, Any], keep: int) -> None:
        """report.json, junit.xml and erpops.prom under ``<env>/drills/<run-id>/`` (the report last:
        a folder with its report.json is whole); then the oldest drills beyond ``keep`` removed."""
        import json

        from erpops import reports

        store = open_store(ctx)
        folder = f"{env}/{DRILLS_FOLDER}/"
        store.put_bytes(folder + f"{ctx.run.id}/junit.xml", reports.junit_xml(report))
        store.put_bytes(folder + f"{ctx.run.id}/erpops.prom", reports.prometheus_text(report).encode())
        store.put_bytes(folder + f"{ctx.run.id}/report.json", json.dumps(report, indent=2, default=str).encode())
        ctx.log(f"drill reports stored at {store.location(folder + ctx.run.id + '/')}")
        runs = sorted({key[len(folder) :].split("/", 1)[0] for key in store.iter_keys(folder)})
        from erpops.backends.storage.base import ObjectLocked

        for old in runs[: max(0, len(runs) - keep)]:  # run ids sort by their start time
            for key in list(store.iter_keys(f"{folder}{old}/")):
                try:
                    store.delete(key)
                except ObjectLocked:  # under the bucket's default retention: it goes when that ends
                    break

    @staticmethod
    def _mark(ctx: ActionContext, env: str, report: dict[str, Any]) -> bool:
        import erpops
        from erpops.backends.storage.catalog import Catalog
        from erpops.manifest import RestoreTestMarker

        marker = RestoreTestMarker(
            backup_id=report["backup_id"],
            tested_at=datetime.fromisoformat(report["finished_at"]),
            ok=True,
            run_id=ctx.run.id,
            checks={c["name"]: bool(c["passed"]) for c in report["checks"]},
            durations=report["durations"],
            rpo_seconds=report["rpo_seconds"]["snapshot"],
            erpops_version=erpops.__version__,
        )
        Catalog(open_store(ctx), env).write_restore_test_marker(marker)
        return True

    @staticmethod
    def _log(ctx: ActionContext, report: dict[str, Any]) -> None:
        for c in report["checks"]:
            mark = "-" if c.get("skipped") else ("✓" if c.get("passed") else "✗")
            ctx.log(f"{mark} {c['name']}: {c.get('message', '')}", level="info" if c.get("passed") else "error")
        d = report["durations"]
        rto = ", ".join(f"{k} {v:.2f}s" for k, v in d.items())
        rpo = report["rpo_seconds"]
        ctx.log(f"RTO: {rto}")
        if report.get("recovery"):
            r = report["recovery"]
            ctx.log(
                f"recovery point: target {r['target']}, reached {r['reached_time'] or r['reached_lsn']}"
                + (f" ({r['lag_seconds']:.3f}s before the target)" if r.get("lag_seconds") is not None else "")
            )
        ctx.log(
            "RPO: "
            + ", ".join(f"{k} {v:.0f}s" for k, v in rpo.items() if v is not None)
            + f" — drill {'PASSED' if report['passed'] else 'FAILED'}"
        )
