"""Scheduled restore drills on a host: a cron expression as a crontab line and as a systemd
timer (``erpops schedule restore-test``). On Kubernetes the drill is a CronJob that provision
applies (``drills:`` in erpops.yaml; :mod:`erpops.backends.runtime.kubernetes.manifests`)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from erpops.errors import InvalidInput

_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")
_RANGES = {"minute": (0, 59), "hour": (0, 23), "day of month": (1, 31), "month": (1, 12), "day of week": (0, 7)}


def _part(value: str, what: str) -> str:
    """One comma-separated item of a cron field in systemd's calendar syntax."""
    if not _FIELD.match(value):
        raise InvalidInput(f"cron {what} {value!r}: expected *, N, N-M, with an optional /STEP")
    low, high = _RANGES[what]
    base, _, step = value.partition("/")
    numbers = [int(n) for n in base.split("-")] if base != "*" else []
    if any(not low <= n <= high for n in numbers):
        raise InvalidInput(f"cron {what} {value!r}: out of {low}-{high}")
    if base == "*":
        text = f"{low}/{step}" if step else "*"
    elif "-" in base:
        text = f"{numbers[0]}..{numbers[1]}" + (f"/{step}" if step else "")
    else:
        text = f"{numbers[0]}/{step}" if step else str(numbers[0])
    return text


def on_calendar(cron: str) -> str:
    """``0 3 * * *`` -> ``*-*-* 03:00:00``; ``*/15 8-18 * * 1-5`` -> ``Mon..Fri *-*-* 8..18:0/15:00``."""
    fields = cron.split()
    if len(fields) != 5:
        raise InvalidInput(f"cron {cron!r}: expected five fields (minute hour day-of-month month day-of-week)")
    dow = fields[4]
    if dow != "*" and fields[2] != "*":
        raise InvalidInput(
            f"cron {cron!r}: with both a day of month and a day of week cron runs on either, a systemd timer "
            "only on both: give one of them"
        )
    names = ("minute", "hour", "day of month", "month")
    m, h, d, mo = (",".join(_part(p, what) for p in f.split(",")) for f, what in zip(fields[:4], names, strict=True))
    days = ""
    if dow != "*":
        picked: list[str] = []
        for item in dow.split(","):
            if "/" in item:
                raise InvalidInput(f"cron day of week {item!r}: steps are not supported here; list the days")
            _part(item, "day of week")
            ends = [int(n) for n in item.split("-")]
            span = range(ends[0], ends[-1] + 1)  # named one by one: systemd's week starts on Monday
            picked += [_DAYS[n % 7] for n in span if _DAYS[n % 7] not in picked]
        days = ",".join(picked) + " "

    def two(text: str) -> str:
        return text.zfill(2) if text.isdigit() else text

    return f"{days}*-{two(mo)}-{two(d)} {two(h)}:{two(m)}:00"


@dataclass(frozen=True)
class HostSchedule:
    crontab: str
    service: str
    timer: str
    unit: str  # the units' name without suffix


def host_schedule(
    env: str,
    cron: str,
    *,
    erpops: str,
    config: str | None,
    reports: Path,
    time_zone: str | None = None,
    store_reports: bool = False,
) -> HostSchedule:
    """The crontab line and the systemd service + timer that run the restore drill of ``env``
    (``store_reports``: the reports also go to the environment's object store)."""
    calendar = on_calendar(cron) + (f" {time_zone}" if time_zone else "")
    argv = [erpops, "restore-test", "--env", env, "--yes",
            "--junit", str(reports / "junit.xml"), "--metrics-file", str(reports / "erpops.prom")]  # fmt: skip
    if store_reports:
        argv.append("--store-reports")
    command = shlex.join(argv)
    prefix = f"ERPOPS_CONFIG={shlex.quote(config)} " if config else ""
    unit = f"erpops-restore-test-{re.sub(r'[^A-Za-z0-9_.-]', '-', env)}"
    log = reports / "restore-test.log"
    crontab = f"{cron} mkdir -p {shlex.quote(str(reports))} && {prefix}{command} >> {shlex.quote(str(log))} 2>&1"
    crontab = crontab.replace("%", "\\%")  # cron reads an unescaped % as a newline
    service = "\n".join([
        "[Unit]",
        f"Description=erpops restore drill of {env}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        *([f"Environment=ERPOPS_CONFIG={config}"] if config else []),
        f"ExecStartPre=/bin/mkdir -p {reports}",
        f"ExecStart={command}",
        "",
    ])  # fmt: skip
    timer = "\n".join([
        "[Unit]",
        f"Description=erpops restore drill of {env} ({cron})",
        "",
        "[Timer]",
        f"OnCalendar={calendar}",
        "Persistent=true",
        "RandomizedDelaySec=60",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])  # fmt: skip
    return HostSchedule(crontab, service, timer, unit)
