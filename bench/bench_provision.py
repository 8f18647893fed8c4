"""A second ``erpops provision`` on a converged Docker environment: its wall time and what it
queried. Prints figures; it is not a test.

The environment: PostgreSQL (embedded, the Odoo role and database), a local directory store, the
Docker runtime with web (2) and worker (1) of the test image behind Traefik (the tests' images).
After a first provision converged it, alternating in the same invocation:

- reference: ``erpops run noop.yaml`` (one ``log`` step) on the same environment from the command
  line — the start-up, configuration, journal and lock every run pays;
- ``erpops provision --yes`` from the command line (it changes nothing: each step says so).

Then one provision in process with the Docker API requests and SQL statements counted (what it
queried). Target: under 1.5 s.

    uv run python bench/bench_provision.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from tests.fixtures.docker import build_images, cleanup, docker_environment, engine_client, free_port  # noqa: E402
from tests.fixtures.tls import self_signed  # noqa: E402

NOOP = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: noop, version: 1.0.0}
lock: environment
steps:
  - {id: hello, action: log, with: {message: hello}}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from erpops.backends.postgres import local_server as pgserver

    client = engine_client()
    prefix = f"erpops-p{secrets.token_hex(3)}"
    repo = f"{prefix}-odoo"
    build_images(client, repo)
    tmp = Path(tempfile.mkdtemp(prefix="erpops-benchp-", dir="/tmp"))

    class Images:
        healthy, front = f"{repo}:healthy-v1", f"{repo}:front"
        tls = self_signed(tmp, stem="front")

    info = pgserver.start_primary(tmp / "pg", free_port(), sync=False)
    name = f"{prefix}-env"
    try:
        raw = docker_environment(name, Images, front_port=free_port())  # type: ignore[arg-type]  # shaped like an ImageSet
        raw["database"] = {"dsn": info.dsn("postgres"), "name": "erp"}
        raw["storage"] = {"url": f"file://{tmp / 'store'}"}
        raw["odoo"] |= {
            "db_user": "odoo_bench",
            "db_password": "env:BENCH_ODOO_PW",
            "conf_file": str(tmp / "odoo.conf"),
        }
        raw["runtime"]["config_dir"] = str(tmp / "files")
        (tmp / "erpops.yaml").write_text(yaml.safe_dump({"environments": {name: raw}}))
        (tmp / "noop.yaml").write_text(NOOP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_") and k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"ERPOPS_CONFIG": str(tmp / "erpops.yaml"), "ERPOPS_STATE": f"sqlite:///{tmp}/s.db",
                "BENCH_ODOO_PW": "bench-password-1"}  # fmt: skip
        exe = str(Path(sys.executable).parent / "erpops")

        def cli(*argv: str) -> float:
            t = time.perf_counter()
            done = subprocess.run([exe, *argv, "--env", name, "--yes"], env=env, capture_output=True, text=True)
            took = time.perf_counter() - t
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
            return took

        first = cli("provision")
        print(f"first provision (from nothing: role, database, store, files, Traefik, 3 instances): {first:.2f} s")
        times: dict[str, list[float]] = {"noop": [], "provision": []}
        for _ in range(args.rounds):
            times["noop"].append(cli("run", str(tmp / "noop.yaml")))
            times["provision"].append(cli("provision"))
        noop, prov = statistics.median(times["noop"]), statistics.median(times["provision"])
        print(f"second provision on the converged environment, median of {args.rounds} (alternating):")
        print(f"  erpops run noop.yaml (reference)  {noop:6.2f} s")
        print(f"  erpops provision                  {prov:6.2f} s   {prov / noop:4.2f}x the reference (target < 1.5 s)")

        counts = _queried(tmp, name, env)
        print("what one converged provision queried (in process):")
        for what, n in counts.most_common():
            print(f"  {n:4d}  {what}")
    finally:
        cleanup(client, prefix, repo)
        for v in client.volumes.list(filters={"label": f"erpops.environment={name}"}):
            v.remove(force=True)
        client.close()
        pgserver.destroy(tmp / "pg")


def _queried(tmp: Path, name: str, env: dict[str, str]) -> collections.Counter[str]:
    """One provision in process, counting Docker API requests (method and path) and SQL statements."""
    import re

    import psycopg
    import requests

    from erpops.actions.base import load_actions
    from erpops.engine.runner import Engine, RunOptions
    from erpops.environments import load_config
    from erpops.runbook.loader import load_runbook
    from erpops.state import MemoryStateStore

    os.environ.update({k: v for k, v in env.items() if k.startswith(("ERPOPS_", "BENCH_"))})
    counts: collections.Counter[str] = collections.Counter()
    send, execute = requests.Session.send, psycopg.Connection.execute

    def counted_send(self: Any, request: Any, **kwargs: Any) -> Any:
        path = re.sub(r"/v[\d.]+/", "/", request.path_url.split("?")[0])
        path = re.sub(r"/(containers|networks|volumes|images)/(?!json$)[^/]+", r"/\1/{id}", path)
        counts[f"Docker {request.method} {path}"] += 1
        return send(self, request, **kwargs)

    def counted_execute(self: Any, query: Any, *a: Any, **k: Any) -> Any:
        text = query if isinstance(query, str) else type(query).__name__
        counts["SQL " + " ".join(str(text).split()[:2])] += 1
        return execute(self, query, *a, **k)

    requests.Session.send = counted_send  # type: ignore[method-assign]
    psycopg.Connection.execute = counted_execute  # type: ignore[method-assign]
    try:
        environment = load_config(str(tmp / "erpops.yaml")).environment(name)
        runbook = load_runbook(ROOT / "runbooks" / "provision.yaml", load_actions())
        result = Engine(state=MemoryStateStore()).run(runbook, environment, {}, RunOptions(assume_yes=True))
        assert result.state == "succeeded", result.error
    finally:
        requests.Session.send = send  # type: ignore[method-assign]
        psycopg.Connection.execute = execute  # type: ignore[method-assign]
    return counts


if __name__ == "__main__":
    main()
