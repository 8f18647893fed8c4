"""Kubernetes deploy speed and API requests, on the test API server (tests/kube). Prints figures;
it is not a test.

1. Rolling a 2-replica Deployment to a new image, alternating in the same invocation between:
   - the official client directly: one strategic-merge patch of the image, then a watch of the
     Deployment until kubectl's rollout-status rule says done (observedGeneration caught up,
     updated = replicas = available = desired);
   - erpops's runtime (``KubernetesRuntime.deploy``): the same patch (plus the release annotation
     and ``maxUnavailable: 0``), the same watch, its checks for pull errors and readiness, then its
     health gate through the service proxy.
   Target: erpops <= 1.2x the direct client.
2. API requests erpops makes per deploy, per rollback (a deploy back to the previous image: what
   ``erpops rollback`` asks of the runtime) and per scale-for-peak (scale 2 -> 4 -> 2), counted by
   the server; the waits are watches, not polling loops.

    uv run python bench/bench_k8s_deploy.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client, config, watch  # noqa: E402
from tests.kube.objects import provision  # noqa: E402
from tests.kube.server import Server, serving  # noqa: E402

from erpops.backends.runtime import open_runtime  # noqa: E402
from erpops.environments import Environment  # noqa: E402

LABELS = {"erpops.io/environment": "bench", "erpops.io/service": "web"}
NAME = "erpops-bench-web"


def make_deployment(api: Any) -> None:
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
    provision(api, NAME, LABELS, image="bench/odoo:v0", replicas=2, strategy=rolling)


def direct(api: Any, image: str) -> float:
    """The reference: patch the image, watch until kubectl would say rolled out."""
    apps: Any = client.AppsV1Api(api)
    t0 = time.perf_counter()
    body = {"spec": {"template": {"spec": {"containers": [{"name": "odoo", "image": image}]}}}}
    d = apps.patch_namespaced_deployment(NAME, "default", body)
    generation, rv = d.metadata.generation, d.metadata.resource_version
    w = watch.Watch()
    for event in w.stream(apps.list_namespaced_deployment, "default", field_selector=f"metadata.name={NAME}",
                          resource_version=rv, timeout_seconds=60):  # fmt: skip
        s, want = event["object"].status, event["object"].spec.replicas
        if (s and (s.observed_generation or 0) >= generation and (s.updated_replicas or 0) == want
                and (s.replicas or 0) == want and (s.available_replicas or 0) == want):  # fmt: skip
            w.stop()
    return time.perf_counter() - t0


def requests_of(server: Server, fn: Any) -> tuple[int, float]:
    before = len(server.store.requests)
    t0 = time.perf_counter()
    fn()
    return len(server.store.requests) - before, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    with serving() as server:
        kubeconfig = server.kubeconfig(tmp / "kubeconfig")
        api = config.new_client_from_config(str(kubeconfig))
        make_deployment(api)
        check = {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 5}
        runtime = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "namespace": "default",
                   "services": {"web": {"replicas": 2, "port": 8069, "healthcheck": check}}}  # fmt: skip
        env = Environment.model_validate({"name": "bench", "runtime": runtime})
        ref: list[float] = []
        ours: list[float] = []
        with open_runtime(env) as rt:
            rt.deploy("web", "bench/odoo:warm", release="warm", timeout=60)
            direct(api, "bench/odoo:warm2")
            for i in range(args.rounds):
                ref.append(direct(api, f"bench/odoo:ref{i}"))
                t0 = time.perf_counter()
                rt.deploy("web", f"bench/odoo:v{i}", release=f"r{i}", timeout=60)
                ours.append(time.perf_counter() - t0)
            deploy_requests, _ = requests_of(server, lambda: rt.deploy("web", "bench/odoo:next", release="n",
                                                                       timeout=60))  # fmt: skip
            rollback_requests, _ = requests_of(server, lambda: rt.deploy("web", f"bench/odoo:v{args.rounds - 1}",
                                                                         release="back", timeout=60))  # fmt: skip
            peak_up, _ = requests_of(server, lambda: rt.scale("web", 4, timeout=60))
            peak_down, _ = requests_of(server, lambda: rt.scale("web", 2, timeout=60))
        api.close()
    r, o = statistics.median(ref), statistics.median(ours)
    print(f"deploy, 2 replicas, {args.rounds} rounds (medians): direct client patch + watch {r:.3f} s, "
          f"KubernetesRuntime.deploy {o:.3f} s: {o / r:.2f}x (target <= 1.2x)")  # fmt: skip
    print(f"  direct rounds: {', '.join(f'{x:.3f}' for x in ref)}")
    print(f"  erpops rounds: {', '.join(f'{x:.3f}' for x in ours)}")
    print(f"API requests (counted by the server): deploy {deploy_requests}, rollback {rollback_requests}, "
          f"scale-for-peak {peak_up} up + {peak_down} down")  # fmt: skip


if __name__ == "__main__":
    main()
