"""``erpops provision`` on Kubernetes (the test API server of tests/kube): wall time and API
requests of a no-change provision and of one that changes one image. Prints figures; it is not
a test.

The environment: web (2), worker (1, autoscaled), cron (1), Traefik's IngressRoute and
Middlewares, the restore-drill CronJob — 21 objects — and PostgreSQL (embedded, the Odoo role and
database). After a first provision, alternating in the same invocation:

- reference: ``erpops run noop.yaml`` (one ``log`` step) from the command line on the same
  environment: start-up, configuration, journal, the lock (a Lease);
- ``erpops provision --yes`` from the command line on the converged environment;
- the same after ``odoo.image`` changed (what a release does to the rendered Deployments: three
  rolled), then changed back.

Requests are counted by the server (the run's lock Lease apart). Target for the no-change run:
one list per kind (for the plan, then for the run), no write.

    uv run python bench/bench_k8s_provision.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from tests.fixtures.docker import free_port  # noqa: E402
from tests.kube.server import serving  # noqa: E402

NOOP = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: noop, version: 1.0.0}
lock: environment
steps:
  - {id: hello, action: log, with: {message: hello}}
"""


def _what(method: str, path: str) -> str:
    """A request as counted: lists by kind, reads and writes of one object by its kind's path."""
    where = path.split("?")[0]
    if not (method == "GET" and "labelSelector" in path):
        where = where.rsplit("/", 1)[0] + "/{name}"
    return f"{method} {where}" + (" (dry run)" if "dryRun=All" in path else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from erpops.backends.postgres import local_server as pgserver

    tmp = Path(tempfile.mkdtemp(prefix="erpops-benchk-", dir="/tmp"))
    info = pgserver.start_primary(tmp / "pg", free_port(), sync=False)
    try:
        with serving() as server:
            server.kubeconfig(tmp / "kubeconfig")
            quick = {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}
            env = {
                "database": {"dsn": info.dsn("postgres"), "name": "erp"},
                "odoo": {"image": "erpops-test/odoo:v1", "db_password": "env:BENCH_PW", "db_user": "odoo_bench",
                         "db_host": "pg.internal", "db_port": 5432},
                "runtime": {"kind": "kubernetes", "kubeconfig": str(tmp / "kubeconfig"), "namespace": "odoo-b",
                            "project": "odoo", "services": {
                                "web": {"replicas": 2, "port": 8069, "healthcheck": quick,
                                        "vars": {"autoscale": False}},
                                "worker": {"replicas": 1, "port": 8069, "healthcheck": quick},
                                "cron": {"replicas": 1, "healthcheck": quick}}},
                "ingress": {"host": "erp.example.test", "rate_limit": {"average": 100, "burst": 200}},
                "drills": {"schedule": "0 3 * * *", "image": "erpops:bench", "config_secret": "erpops-config"},
            }  # fmt: skip
            config = {"state": f"sqlite:///{tmp / 'state.db'}", "environments": {"bench": env}}
            (tmp / "erpops.yaml").write_text(yaml.safe_dump(config))
            (tmp / "noop.yaml").write_text(NOOP)
            penv = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
            penv |= {"ERPOPS_CONFIG": str(tmp / "erpops.yaml"), "BENCH_PW": "bench-password-1",
                     "XDG_STATE_HOME": str(tmp / "xdg")}  # fmt: skip
            exe = str(Path(sys.executable).parent / "erpops")

            def cli(*argv: str) -> tuple[float, collections.Counter[str]]:
                before = len(server.store.requests)
                t = time.perf_counter()
                done = subprocess.run([exe, *argv, "--env", "bench", "--yes"], env=penv, capture_output=True,
                                      text=True)  # fmt: skip
                took = time.perf_counter() - t
                assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
                made = collections.Counter(_what(m, p) for m, p in server.store.requests[before:] if "/leases" not in p)
                return took, made

            def set_image(image: str) -> None:
                config["environments"]["bench"]["odoo"]["image"] = image  # type: ignore[index]
                (tmp / "erpops.yaml").write_text(yaml.safe_dump(config))

            first, _ = cli("provision")
            print(f"first provision (21 objects from nothing, rollouts waited for): {first:.2f} s")
            times: dict[str, list[float]] = {"noop": [], "same": [], "image": []}
            counts: dict[str, collections.Counter[str]] = {}
            for i in range(args.rounds):
                times["noop"].append(cli("run", str(tmp / "noop.yaml"))[0])
                took, counts["same"] = cli("provision")
                times["same"].append(took)
                set_image(f"erpops-test/odoo:v{2 + i % 2}")
                took, counts["image"] = cli("provision")
                times["image"].append(took)
            noop = statistics.median(times["noop"])
            print(f"median of {args.rounds} rounds (alternating in one invocation):")
            print(f"  erpops run noop.yaml (reference)         {noop:6.2f} s")
            for key, label in (("same", "provision, nothing to change"), ("image", "provision, one image changed")):
                med = statistics.median(times[key])
                writes = sum(n for r, n in counts[key].items() if not r.startswith("GET"))
                print(f"  {label:<40} {med:6.2f} s   {med / noop:4.2f}x the reference, "
                      f"{sum(counts[key].values())} requests ({writes} writes)")  # fmt: skip
            for key in ("same", "image"):
                print(f"requests of one provision ({key}):")
                for what, n in sorted(counts[key].items()):
                    print(f"  {n:3d}  {what}")
    finally:
        pgserver.destroy(tmp / "pg")


if __name__ == "__main__":
    main()
