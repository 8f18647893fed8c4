"""``erpops schedule restore-test`` on a host (issue 13, item 3): the cron expression becomes a
crontab line and a systemd timer whose OnCalendar the real ``systemd-analyze`` accepts and whose
units it verifies; what cron and systemd would read differently is refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from erpops.errors import InvalidInput
from erpops.schedule import on_calendar

CASES = {
    "0 3 * * *": "*-*-* 03:00:00",
    "*/15 8-18 * * 1-5": "Mon,Tue,Wed,Thu,Fri *-*-* 8..18:0/15:00",
    "30 2 1,15 * *": "*-*-1,15 02:30:00",
    "5 4 * 6 0": "Sun *-06-* 04:05:00",
    "0 1 * * 6-7": "Sat,Sun *-*-* 01:00:00",
}


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing (Debian's systemd package)", pytrace=False)
    return found


@pytest.mark.parametrize("cron", sorted(CASES))
def test_cron_becomes_a_calendar_systemd_accepts(cron: str) -> None:
    calendar = on_calendar(cron)
    assert calendar == CASES[cron]
    done = subprocess.run([_systemd_analyze(), "calendar", calendar], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Next elapse:" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("cron", "said"),
    [
        ("0 3 1 * 1", "cron runs on either, a systemd timer only on both"),
        ("0 3 * *", "expected five fields"),
        ("61 3 * * *", "out of 0-59"),
        ("0 3 * * MON", "expected *, N, N-M"),
    ],
)
def test_what_would_read_differently_or_is_not_cron_is_refused(cron: str, said: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(said)):
        on_calendar(cron)


def test_the_command_prints_crontab_and_writes_units_systemd_verifies(tmp_path: Path) -> None:
    (tmp_path / "erpops.yaml").write_text("environments:\n  prod% 1:\n    tier: production\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env["ERPOPS_CONFIG"] = str(tmp_path / "erpops.yaml")
    argv = [sys.executable, "-m", "erpops", "schedule", "restore-test", "--env", "prod% 1", "--cron", "0 3 * * *",
            "--reports", str(tmp_path / "drills"), "--out", str(tmp_path / "units"), "--store-reports"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("0 3 * * * "))
    assert (
        "restore-test --env 'prod\\% 1' --yes --junit" in line and f"ERPOPS_CONFIG={tmp_path / 'erpops.yaml'}" in line
    )
    assert line.split(" >> ")[0].endswith(" --store-reports")  # the drill's evidence also goes to the store
    units = sorted(str(p) for p in (tmp_path / "units").iterdir())
    assert [Path(u).name for u in units] == ["erpops-restore-test-prod--1.service", "erpops-restore-test-prod--1.timer"]
    assert "OnCalendar=*-*-* 03:00:00" in Path(units[1]).read_text()
    verified = subprocess.run([_systemd_analyze(), "verify", *units], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_on_kubernetes_the_drill_is_the_cronjob_provision_applies(tmp_path: Path) -> None:
    base = (
        "environments:\n  k:\n    runtime: {kind: kubernetes, namespace: odoo}\n"
        "    database: {dsn: 'postgresql://erpops@pg:5432/postgres', name: erp}\n    odoo: {image: 'odoo:18'}\n"
    )
    (tmp_path / "erpops.yaml").write_text(base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env["ERPOPS_CONFIG"] = str(tmp_path / "erpops.yaml")
    argv = [sys.executable, "-m", "erpops", "schedule", "restore-test", "--env", "k", "--cron", "15 2 * * *", "--json"]
    missing = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "add drills:" in missing.stderr, missing.stderr
    (tmp_path / "erpops.yaml").write_text(
        base + "    drills: {schedule: '0 3 * * *', image: 'erpops:1', config_secret: c}\n"
    )
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["kind"], job["spec"]["schedule"], job["spec"]["concurrencyPolicy"]) == (
        "CronJob",
        "15 2 * * *",
        "Forbid",
    )
    assert "--store-reports" not in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    stored = subprocess.run([*argv, "--store-reports"], env=env, capture_output=True, text=True, timeout=60)
    args = json.loads(stored.stdout)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == "--store-reports", args
    told = subprocess.run([*argv[:-1], "--store-reports"], env=env, capture_output=True, text=True, timeout=60)
    assert "# set drills.schedule: '15 2 * * *', drills.store_reports: true in erpops.yaml" in told.stdout
