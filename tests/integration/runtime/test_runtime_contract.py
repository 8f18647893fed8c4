"""The runtime interface's contract, written against ``backends.runtime.base.Runtime`` only.

Every test takes a ``target`` (one runtime kind with its test images and a fresh environment) and
talks to it through :func:`open_runtime` alone: no SDK, no container or pod. The module is
parametrized by runtime kind: Docker (the real engine) and Kubernetes (the test API server of
``tests/kube``, with the Deployments and Services ``erpops provision`` would make).

The same tests run against a real cluster when asked (``make test-cluster``, not part of ``make
test``): ``ERPOPS_TEST_CLUSTER`` names its kubeconfig (``ERPOPS_TEST_CONTEXT`` a context) and
``ERPOPS_TEST_IMAGES`` the repository ``scripts/test_images.py`` pushed the test images to. Each
session works in a namespace of its own, deleted at the end.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from erpops.backends.runtime import (
    DeployFailed,
    ImageNotFound,
    Runtime,
    ServiceState,
    open_runtime,
)
from erpops.environments import Environment
from tests.fixtures.docker import *  # noqa: F403
from tests.fixtures.docker import cleanup, docker_environment, free_port, front_opener

CLUSTER = os.environ.get("ERPOPS_TEST_CLUSTER", "")
KINDS = ["docker", "kubernetes", *(["cluster"] if CLUSTER else [])]


@dataclass
class Target:
    """One runtime under test: images that answer /web/health (v1, v2), one that answers 500, one
    whose /bin/migrate fails, and a factory of fresh environments (services ``web`` and ``worker``,
    ``web`` reachable through its ``health_url``)."""

    kind: str
    v1: str
    v2: str
    unhealthy: str
    migration_fails: str
    missing: str
    new_env: Callable[[], Environment]
    health_body: Callable[[Runtime, str], dict[str, Any]] | None = None  # when not through health_url


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "docker":
        images = request.getfixturevalue("docker_images")
        client = request.getfixturevalue("docker_client")
        made: list[str] = []

        def new_env() -> Environment:
            name = f"{images.prefix}-c{len(made)}{os.urandom(2).hex()}"
            made.append(name)
            raw = docker_environment(name, images, front_port=free_port())
            return Environment.model_validate({**raw, "name": name})

        opener = front_opener(images)

        def through_front(rt: Runtime, service: str) -> dict[str, Any]:
            url = rt.health_url(service)
            assert url and url.startswith("https://localhost:"), url  # the environment's Traefik front
            with opener.open(url, timeout=5) as resp:
                body: dict[str, Any] = json.loads(resp.read())
            return body

        yield Target(
            "docker",
            images.healthy,
            images.healthy_v2,
            images.unhealthy,
            images.migration_fails,
            f"{images.prefix}-no-such-image:1",
            new_env,
            through_front,
        )
        for name in made:
            cleanup(client, name, repository="erpops-no-such-repository")
    elif request.param == "kubernetes":
        yield from _kubernetes_target(request.getfixturevalue("tmp_path"))
    elif request.param == "cluster":
        yield from _cluster_target()
    else:  # pragma: no cover - a kind in KINDS without a target is a mistake in this file
        pytest.fail(f"no contract target for runtime kind {request.param!r}")


def _health_body(target: Target, rt: Runtime, service: str) -> dict[str, Any]:
    if target.health_body is not None:
        return target.health_body(rt, service)
    url = rt.health_url(service)
    assert url, "the contract's services are reachable through a health_url"
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def _rolled_out(state: ServiceState, n: int, revision: str) -> None:
    assert (state.desired, state.updated, state.ready, state.revision) == (n, n, n, revision), state
    assert state.rolled_out and state.replicas == n


def test_image_check_and_one_off_runs(target: Target) -> None:
    with open_runtime(target.new_env()) as rt:
        known = rt.check_image(target.v1)
        assert known.image == target.v1 and known.status in ("present", "pulled", "unverified")
        try:
            missing = rt.check_image(target.missing)
        except ImageNotFound as exc:
            assert target.missing in str(exc)
        else:  # a cluster cannot know before an instance pulls it
            assert missing.status == "unverified"

        ok = rt.run_once(target.v1, ["/bin/migrate"], timeout=60)
        assert ok.exit_code == 0 and "migration done" in ok.log_tail and ok.seconds >= 0
        failed = rt.run_once(target.migration_fails, ["/bin/migrate"], env={"X": "1"}, timeout=60)
        assert failed.exit_code == 3 and "column x does not exist" in failed.log_tail


def test_deploy_reports_a_rollout_and_a_failed_one_changes_nothing(target: Target) -> None:
    with open_runtime(target.new_env()) as rt:
        assert rt.service_state("web").desired == 0
        first = rt.deploy("web", target.v1, release="r1", timeout=120)
        assert first.image == target.v1 and first.replicas == 2
        _rolled_out(rt.service_state("web"), 2, "r1")

        report = rt.health("web", timeout=30)
        assert report.healthy and report.http_status == 200 and report.url == rt.health_url("web")
        assert report.healthy_replicas == report.replicas == 2
        unreachable = rt.health("web", timeout=1, url=f"http://127.0.0.1:{free_port()}/web/health")
        assert not unreachable.healthy and unreachable.http_status is None

        with pytest.raises(DeployFailed) as failed:
            rt.deploy("web", target.unhealthy, release="r2", timeout=60)
        assert failed.value.service == "web" and failed.value.restored_at >= failed.value.verdict_at
        state = rt.service_state("web")
        _rolled_out(state, 2, "r1")
        assert state.image == target.v1

        rt.deploy("web", target.v2, release="r3", timeout=120)
        state = rt.service_state("web")
        _rolled_out(state, 2, "r3")
        assert state.image == target.v2 and _health_body(target, rt, "web")["version"] == "v2"
        now = rt.current()
        assert now.images["web"] == target.v2 and now.services["web"].as_dict()["revision"] == "r3"


def test_scale_stop_start_restart_and_set_env_wait_until_done(target: Target) -> None:
    with open_runtime(target.new_env()) as rt:
        rt.deploy("web", target.v1, release="r1", timeout=120)

        _rolled_out(rt.scale("web", 3, timeout=120), 3, "r1")
        _rolled_out(rt.scale("web", 1, timeout=120), 1, "r1")

        stopped = rt.stop("web", timeout=60)
        assert (stopped.desired, stopped.ready, stopped.replicas) == (0, 0, 0)
        assert not rt.health("web", timeout=1).healthy

        started = rt.start("web", timeout=120)
        _rolled_out(started, 1, "r1")
        assert started.image == target.v1 and rt.health("web", timeout=30).healthy

        before = {i.id for i in started.running}
        restarted = rt.restart("web", timeout=120)
        _rolled_out(restarted, 1, "r1")
        assert {i.id for i in restarted.running}.isdisjoint(before) and restarted.image == target.v1

        changed = rt.set_env("web", {"MARKER": "contract"}, timeout=120)
        _rolled_out(changed, 1, "r1")
        assert _health_body(target, rt, "web")["marker"] == "contract"


K8S_V1, K8S_V2 = "erpops-test/odoo:v1", "erpops-test/odoo:v2"
K8S_RULES = {
    K8S_V1: {"log": "migration done"},
    K8S_V2: {"log": "migration done"},
    "erpops-test/odoo:v1-exit-3": {"exit_code": 3, "log": "ERROR: column x does not exist"},
}


def _kubernetes_target(tmp: Path) -> Iterator[Target]:
    from kubernetes import config

    from tests.kube.objects import provision
    from tests.kube.server import serving

    with serving(image_rules=K8S_RULES) as server:
        kubeconfig = server.kubeconfig(tmp / "kubeconfig")
        api = config.new_client_from_config(str(kubeconfig))
        made: list[int] = []

        def new_env() -> Environment:
            name = f"k{len(made)}"
            made.append(1)
            project = f"erpops-{name}"
            services: dict[str, Any] = {}
            for service, replicas in (("web", 2), ("worker", 1)):
                labels = {"erpops.io/environment": name, "erpops.io/service": service}
                full = f"{project}-{service}"
                provision(api, full, labels, image=K8S_V1)  # what `erpops provision` makes
                services[service] = {
                    "replicas": replicas,
                    "port": 8069,
                    "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2},
                }
            services["web"]["health_url"] = server.ingress_url(f"{project}-web")  # the users' way in
            raw = {"name": name, "runtime": {"kind": "kubernetes", "kubeconfig": str(kubeconfig),
                                             "namespace": "default", "services": services}}  # fmt: skip
            return Environment.model_validate(raw)

        yield Target(
            "kubernetes",
            K8S_V1,
            K8S_V2,
            "erpops-test/odoo:v1-never-ready",
            "erpops-test/odoo:v1-exit-3",
            "erpops-test/no-such-image:1",
            new_env,
        )
        api.close()
        assert server.store.errors == [], server.store.errors


def _cluster_target() -> Iterator[Target]:
    """A real cluster: a namespace of this session's own, the Deployments and Services ``erpops
    provision`` would make (with a readiness probe on /web/health, which a kubelet needs to hold an
    unhealthy pod out of service), health through the API server's service proxy."""
    from kubernetes import client, config

    from tests.kube.objects import provision

    repository = os.environ.get("ERPOPS_TEST_IMAGES", "")
    if not repository:
        pytest.fail("ERPOPS_TEST_IMAGES must name the repository scripts/test_images.py pushed to", pytrace=False)
    context = os.environ.get("ERPOPS_TEST_CONTEXT") or None
    api = config.new_client_from_config(config_file=CLUSTER, context=context)
    core: Any = client.CoreV1Api(api)
    namespace = f"erpops-contract-{os.urandom(3).hex()}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"erpops.io/test": "contract"}}})
    made: list[int] = []
    probe = {"httpGet": {"path": "/web/health", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}

    def new_env() -> Environment:
        name = f"c{len(made)}"
        made.append(1)
        project = f"erpops-{name}"
        services: dict[str, Any] = {}
        for service, replicas in (("web", 2), ("worker", 1)):
            labels = {"erpops.io/environment": name, "erpops.io/service": service}
            provision(api, f"{project}-{service}", labels, image=f"{repository}:healthy-v1", port=8080,
                      namespace=namespace, readiness=probe)  # fmt: skip
            services[service] = {"replicas": replicas, "port": 8080, "health_path": "/web/health"}
        raw = {"name": name, "runtime": {"kind": "kubernetes", "kubeconfig": CLUSTER, "context": context,
                                         "namespace": namespace, "services": services}}  # fmt: skip
        return Environment.model_validate(raw)

    def health_body(rt: Runtime, service: str) -> dict[str, Any]:
        name = f"erpops-{rt.env.name}-{service}"
        raw = core.connect_get_namespaced_service_proxy_with_path(name, namespace, "web/health", _preload_content=False)
        parsed: dict[str, Any] = json.loads(raw.data)  # (preloaded, the client turns JSON into a repr string)
        return parsed

    try:
        yield Target(
            "cluster",
            f"{repository}:healthy-v1",
            f"{repository}:healthy-v2",
            f"{repository}:unhealthy",
            f"{repository}:migration-fails",
            f"{repository}:no-such-tag",
            new_env,
            health_body,
        )
    finally:
        core.delete_namespace(namespace)
        api.close()
