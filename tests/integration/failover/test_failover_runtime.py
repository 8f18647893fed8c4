"""Failover with a runtime: the application's services get the new primary's endpoint through the
runtime interface (real Docker engine, test images), and the health gate checks them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import docker
import pytest

from erpops.backends.postgres import local_server as pgserver
from erpops.backends.runtime import open_runtime
from erpops.environments import Environment
from tests.fixtures.docker import *  # noqa: F403
from tests.fixtures.docker import ImageSet, cleanup, docker_environment

from .conftest import DB, Pair, writable_error

pytestmark = [pytest.mark.postgres, pytest.mark.docker]


def _container_env(client: docker.DockerClient, env: Environment) -> list[dict[str, str]]:
    with open_runtime(env) as rt:
        web = rt.current().services["web"]
        out = []
        for inst in web.running:
            attrs: Any = client.containers.get(inst.id).attrs
            out.append(dict(item.split("=", 1) for item in attrs["Config"].get("Env") or [] if "=" in item))
        return out


def test_failover_repoints_the_application_services(
    healthy: tuple[Pair, Path, Path], docker_client: docker.DockerClient, docker_images: ImageSet
) -> None:
    pair, primary, standby = healthy
    name = f"{docker_images.prefix}-fo{os.urandom(2).hex()}"
    fast = {"interval": 0.5, "timeout": 1.0, "retries": 3, "start_period": 0}
    web = {
        "port": 8080,
        "replicas": 1,
        "health_path": "/web/health",
        "healthcheck": fast,
        "docker": {"stop_timeout": 2},
    }
    raw = docker_environment(name, docker_images, services={"web": web})
    cfg = pair.env_config(primary, standby, runtime=raw["runtime"], odoo=raw["odoo"])
    env = Environment(name="app", **cfg)
    try:
        with open_runtime(env) as rt:
            rt.deploy("web", docker_images.healthy, release="r1", timeout=60)
        before = _container_env(docker_client, env)
        assert len(before) == 1 and "PGHOST" not in before[0]

        pair.write_config({"app": cfg})
        pair.reset_state()
        res = pair.cli("failover", "--env", "app", "--yes", "--json")
        assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert res.step("repoint")["outputs"]["services"] == ["web"]
        assert res.step("app-health")["status"] == "succeeded"
        report = res.step("report", "finally")["outputs"]
        assert report["lost_rows"] == 0 and report["write_unavailable_seconds"] is not None

        after = _container_env(docker_client, env)
        assert len(after) == 1
        port = str(pgserver.status(standby).port)  # whichever server is the standby now (tests swap them)
        assert after[0]["PGHOST"] == str(standby) and after[0]["PGPORT"] == port
        assert writable_error(pair.dsn(standby, DB)) is None
    finally:
        leftovers = cleanup(docker_client, name, repository="erpops-no-such-repository")
        assert not leftovers, leftovers


def test_failover_repoints_kubernetes_deployments(healthy: tuple[Pair, Path, Path], tmp_path: Path) -> None:
    """The same on Kubernetes (the test API server): the Deployment's pod template gets the new
    primary's endpoint (a rolling update waited for), and the health gate checks it (issue 11)."""
    from kubernetes import client, config

    from tests.kube.objects import provision
    from tests.kube.server import serving

    pair, primary, standby = healthy
    with serving() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        api = config.new_client_from_config(str(kubeconfig))
        labels = {"erpops.io/environment": "app", "erpops.io/service": "web"}
        provision(api, "erpops-app-web", labels, image="erpops-test/odoo:v1")
        apps: Any = client.AppsV1Api(api)
        core: Any = client.CoreV1Api(api)
        web = {"replicas": 1, "port": 8069, "health_url": server.ingress_url("erpops-app-web"),
               "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}}  # fmt: skip
        runtime = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "services": {"web": web}}
        cfg = pair.env_config(primary, standby, runtime=runtime)
        with open_runtime(Environment(name="app", **cfg)) as rt:
            rt.deploy("web", "erpops-test/odoo:v1", release="r1", timeout=60)

        pair.write_config({"app": cfg})
        pair.reset_state()
        res = pair.cli("failover", "--env", "app", "--yes", "--json")
        assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert res.step("repoint")["outputs"]["services"] == ["web"]
        assert res.step("app-health")["status"] == "succeeded"
        template = apps.read_namespaced_deployment("erpops-app-web", "default").spec.template.spec.containers[0]
        env = {e.name: e.value for e in template.env or []}
        assert env["PGHOST"] == str(standby) and env["PGPORT"] == str(pgserver.status(standby).port)
        pods = core.list_namespaced_pod("default", label_selector="erpops.io/service=web").items
        assert len(pods) == 1 and {e.name: e.value for e in pods[0].spec.containers[0].env}["PGHOST"] == str(standby)
        assert writable_error(pair.dsn(standby, DB)) is None
        api.close()
        assert server.store.errors == [], server.store.errors
