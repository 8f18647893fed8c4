"""Restore-drill evidence in the formats CI and monitoring read: JUnit XML and Prometheus text.

The report is a plain dict (see ``odoo.drill_report``)::

    {"environment": "prod", "backup_id": "...", "run_id": "...", "passed": true,
     "durations": {"fetch": 1.2, "restore": 20.5, "neutralize": 0.1, "checks": 0.8, "total": 22.6},
     "rpo_seconds": {"snapshot": 3600.0, "business_data": 3720.0}, "backup_age_seconds": 3550.0,
     "checks": [{"name": "row_counts", "passed": true, "expected": ..., "actual": ...,
                 "duration": 0.01, "message": "...", "skipped": false}, ...]}

Also the one Prometheus text writer (:class:`PrometheusText`), which the failover report uses too.
Write the files with :func:`erpops.files.write_atomic` (temporary file + rename), as the
node_exporter textfile collector requires.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET


def _junit_time(value: Any) -> str:
    """The JUnit schema's timestamp: ``YYYY-MM-DDTHH:MM:SS`` in UTC, no fraction, no offset."""
    if not value:
        return ""
    when = datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def junit_xml(report: dict[str, Any]) -> bytes:
    """One ``<testcase>`` per check; failed checks carry ``<failure>`` with expected and actual."""
    checks = report.get("checks") or []
    failures = sum(1 for c in checks if not c.get("passed"))
    skipped = sum(1 for c in checks if c.get("skipped"))
    total = sum(float(c.get("duration") or 0) for c in checks)
    env = report.get("environment") or "?"
    suites = ET.Element(
        "testsuites", name="erpops restore-test", tests=str(len(checks)), failures=str(failures), time=f"{total:.3f}"
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"restore-test {env}",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{total:.3f}",
        timestamp=_junit_time(report.get("finished_at")),
        hostname=socket.gethostname(),
    )
    props = ET.SubElement(suite, "properties")
    for key in ("environment", "backup_id", "run_id", "database", "passed"):
        if report.get(key) is not None:  # a drill that failed early has no database: no "null" value
            ET.SubElement(props, "property", name=key, value=_text(report.get(key)))
    for phase, secs in (report.get("durations") or {}).items():
        if secs is not None:
            ET.SubElement(props, "property", name=f"rto.{phase}_seconds", value=_text(secs))
    for basis, secs in (report.get("rpo_seconds") or {}).items():
        if secs is not None:  # not known (nothing restored to look at): left out, not "null"
            ET.SubElement(props, "property", name=f"rpo.{basis}_seconds", value=_text(secs))
    for c in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"erpops.restore_test.{env}",
            name=str(c.get("name")),
            time=f"{float(c.get('duration') or 0):.3f}",
        )
        if c.get("skipped"):
            ET.SubElement(case, "skipped", message=str(c.get("message") or ""))
        elif not c.get("passed"):
            fail = ET.SubElement(case, "failure", message=str(c.get("message") or "check failed"), type="CheckFailed")
            fail.text = f"expected: {_text(c.get('expected'))}\nactual: {_text(c.get('actual'))}"
        out = ET.SubElement(case, "system-out")
        out.text = str(c.get("message") or "")
    ET.indent(suites)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="utf-8") + b"\n"


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return repr(float(value)) if value != int(value) else str(int(value))


class PrometheusText:
    """Metrics in the Prometheus text exposition format (node_exporter's textfile collector):
    ``metric()`` adds a ``# HELP`` / ``# TYPE`` block with one sample per label set; samples
    whose value is None are left out, and a metric left with no sample is not written."""

    def __init__(self, **labels: Any) -> None:
        self._labels = labels
        self._lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, Any], float | int | bool | None]]
    ) -> None:
        present = [(labels, value) for labels, value in samples if value is not None]
        if not present:
            return
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in present:
            every = {**self._labels, **labels}
            text = "{" + ",".join(f'{k}="{_label(v)}"' for k, v in every.items()) + "}"
            self._lines.append(f"{name}{text} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def prometheus_text(report: dict[str, Any]) -> str:
    """Metrics of one drill in the Prometheus text exposition format (for the textfile collector)."""
    out = PrometheusText(environment=report.get("environment") or "?")
    metric = out.metric

    metric(
        "erpops_restore_drill_success",
        "gauge",
        "1 when the last restore drill restored the backup and passed every check, else 0.",
        [({}, 1.0 if report.get("passed") else 0.0)],
    )
    metric(
        "erpops_restore_drill_info",
        "gauge",
        "The backup and run of the last restore drill.",
        [({"backup_id": report.get("backup_id") or "", "run_id": report.get("run_id") or ""}, 1.0)],
    )
    if report.get("finished_at_unix") is not None:
        metric(
            "erpops_restore_drill_timestamp_seconds",
            "gauge",
            "When the last restore drill finished (Unix time).",
            [({}, float(report["finished_at_unix"]))],
        )
    durations = report.get("durations") or {}
    if durations:
        metric(
            "erpops_restore_drill_duration_seconds",
            "gauge",
            "Duration of each phase of the last restore drill (RTO: fetch, restore, neutralize, checks, total).",
            [({"phase": k}, float(v)) for k, v in durations.items() if v is not None],
        )
    rpo = {k: v for k, v in (report.get("rpo_seconds") or {}).items() if v is not None}
    if rpo:
        metric(
            "erpops_restore_drill_rpo_seconds",
            "gauge",
            "Data loss window if the restored backup were used now: since the snapshot, and since the newest "
            "business record (sale/stock/account write_date) in the restored data.",
            [({"basis": k}, float(v)) for k, v in rpo.items()],
        )
    if report.get("backup_age_seconds") is not None:
        metric(
            "erpops_backup_age_seconds",
            "gauge",
            "Age of the backup the last restore drill used.",
            [({}, float(report["backup_age_seconds"]))],
        )
    recovery = report.get("recovery") or {}
    if recovery.get("lag_seconds") is not None:
        metric(
            "erpops_restore_drill_recovery_lag_seconds",
            "gauge",
            "A drill to a moment: the target minus the time of the last transaction it replayed.",
            [({}, float(recovery["lag_seconds"]))],
        )
    checks = report.get("checks") or []
    if checks:
        metric(
            "erpops_restore_drill_check_passed",
            "gauge",
            "1 when the check passed in the last restore drill, else 0.",
            [({"check": c.get("name")}, 1.0 if c.get("passed") else 0.0) for c in checks],
        )
    return out.text()
