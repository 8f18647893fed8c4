"""The Docker runtime against the real engine: deploy, health gate, scale, run_once, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from erpops.backends.runtime import DeployFailed, ImageNotFound, UnknownService, open_runtime
from erpops.errors import ExitCode, TargetUnreachable
from tests.fixtures.docker import ImageSet, dead_docker_host

pytestmark = pytest.mark.docker


def test_deploy_rolls_every_instance_with_zero_failed_requests(
    docker_env: Any, docker_images: ImageSet, poller: Any
) -> None:
    e = docker_env()
    with open_runtime(e.env) as rt:
        first = rt.deploy("web", docker_images.healthy, release="r1", timeout=30)
        assert (first.previous_image, first.replicas) == (None, 2)
        rt.deploy("worker", docker_images.healthy, release="r1", timeout=30)
        now = rt.current()
        assert now.images == {"web": docker_images.healthy, "worker": docker_images.healthy}
        assert now.replicas == {"web": 2, "worker": 1}
        assert now.release == "r1"
        assert now.services["web"].healthy == 2
        old = e.ids()
        with poller(e.front + "/web/health") as p:
            result = rt.deploy("web", docker_images.healthy_v2, release="r2", timeout=30)
        assert p.failures == [], p.failures
        assert p.ok > 10 and p.versions[0] == "v1" and p.versions[-1] == "v2"
        assert result.previous_image == docker_images.healthy
        assert e.ids().isdisjoint(old) and len(e.ids()) == 2
        assert e.images() == {docker_images.healthy_v2}
        # labels alone let a new process find everything again
        c = e.containers("web")[0]
        assert {"erpops.environment", "erpops.service", "erpops.release", "erpops.image"} <= set(c.labels)
        assert c.labels["erpops.release"] == "r2"
        report = rt.health("web", 10)
        assert report.healthy and report.http_status == 200 and report.url == e.front + "/web/health"
    with open_runtime(e.env) as again:
        assert again.current().images["web"] == docker_images.healthy_v2


def test_unhealthy_image_is_refused_and_old_containers_serve_throughout(
    docker_env: Any, docker_images: ImageSet, poller: Any
) -> None:
    e = docker_env()
    with open_runtime(e.env) as rt:
        rt.deploy("web", docker_images.healthy, release="r1", timeout=30)
        old = e.ids()
        with poller(e.front + "/web/health") as p, pytest.raises(DeployFailed) as err:
            rt.deploy("web", docker_images.unhealthy, release="bad", timeout=30)
        assert p.failures == [], p.failures
        assert p.ok > 5 and p.versions == ["v1"]
        assert "unhealthy" in str(err.value) and "previous ones kept serving" in str(err.value)
        assert err.value.restored_at - err.value.verdict_at < 3
        assert e.ids() == old  # nothing replaced, no leftover of the bad image
        assert e.images() == {docker_images.healthy}
        assert rt.health("web", 5).healthy


def test_scale_up_and_down_without_failed_requests(docker_env: Any, docker_images: ImageSet, poller: Any) -> None:
    e = docker_env()
    with open_runtime(e.env) as rt:
        rt.deploy("web", docker_images.healthy, release="r1", timeout=30)
        with poller(e.front + "/web/health") as p:
            assert rt.scale("web", 3, timeout=30).replicas == 3
            assert rt.scale("web", 1, timeout=30).replicas == 1
        assert p.failures == [], p.failures
        assert len(e.ids()) == 1
        assert rt.current().services["web"].release == "r1"
        assert rt.scale("worker", 2).replicas == 2  # from the environment's image: nothing ran yet
        assert e.images("worker") == {docker_images.healthy}


def test_run_once_returns_exit_code_and_log_tail(docker_env: Any, docker_images: ImageSet) -> None:
    e = docker_env(front=False)
    with open_runtime(e.env) as rt:
        ok = rt.run_once(docker_images.healthy, ["/bin/migrate"], service="web", timeout=30)
        assert ok.exit_code == 0 and "migration done" in ok.log_tail
        bad = rt.run_once(docker_images.migration_fails, ["/bin/migrate"], service="web", timeout=30)
        assert bad.exit_code == 3 and "column x does not exist" in bad.log_tail
        env = rt.run_once(docker_images.healthy, ["/bin/sh", "-c", "echo $MARKER $EXTRA"], env={"EXTRA": "y"})
        assert env.log_tail.strip() == "y"
        with_service = rt.run_once(docker_images.healthy, ["/bin/sh", "-c", "echo $MARKER"], service="web")
        assert with_service.log_tail.strip() == "initial"
        from erpops.errors import StepTimeout

        with pytest.raises(StepTimeout):
            rt.run_once(docker_images.healthy, ["/bin/sleep", "30"], timeout=1)
    left = e.client.containers.list(
        all=True, filters={"label": [f"erpops.environment={e.name}", "erpops.role=run-once"]}
    )
    assert left == []


def test_set_env_and_restart_replace_containers(docker_env: Any, docker_images: ImageSet, poller: Any) -> None:
    e = docker_env()
    with open_runtime(e.env) as rt:
        rt.deploy("web", docker_images.healthy, release="r1", timeout=30)
        before = e.ids()
        with poller(e.front + "/web/health") as p:
            rt.set_env("web", {"MARKER": "standby-db"})
        assert p.failures == []
        status, _ = e.front_check()
        assert status == 200
        assert '"marker": "standby-db"' in e.front_get()
        assert e.ids().isdisjoint(before)
        after_env = e.ids()
        rt.restart("web")
        assert e.ids().isdisjoint(after_env) and len(e.ids()) == 2
        assert '"marker": "standby-db"' in e.front_get()
        assert rt.current().services["web"].release == "r1"


def test_unknown_image_unknown_service_and_dead_engine_change_nothing(
    docker_env: Any, docker_images: ImageSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = docker_env(front=False)
    with open_runtime(e.env) as rt:
        rt.deploy("web", docker_images.healthy, release="r1", timeout=30)
        before = e.ids()
        missing = f"{docker_images.repository}:does-not-exist"
        with pytest.raises(ImageNotFound) as err:
            rt.deploy("web", missing, release="r2")
        assert missing in str(err.value) and err.value.exit_code == ExitCode.UNREACHABLE
        with pytest.raises(UnknownService) as err2:
            rt.deploy("nope", docker_images.healthy, release="r2")
        assert "'nope'" in str(err2.value) and "web, worker" in str(err2.value)
        assert err2.value.exit_code == ExitCode.UNREACHABLE
        assert e.ids() == before
    dead = dead_docker_host(tmp_path)
    monkeypatch.setitem(os.environ, "DOCKER_HOST", dead)
    with pytest.raises(TargetUnreachable) as err3:
        open_runtime(e.env)
    assert f"Docker engine not reachable at {dead}" in str(err3.value)
    assert err3.value.exit_code == ExitCode.UNREACHABLE
    monkeypatch.delitem(os.environ, "DOCKER_HOST")
    assert e.ids() == before


def test_volumes_outlive_instances_and_reach_one_off_runs(
    docker_env: Any, docker_images: ImageSet, tmp_path: Path
) -> None:
    from erpops.backends.runtime import RuntimeMisconfigured
    from tests.fixtures.docker import docker_environment

    data = tmp_path / "odoo-data"
    (data / "filestore").mkdir(parents=True)
    (data / "filestore" / "checksum").write_text("attachment bytes")
    (tmp_path / "odoo.conf").write_text("[options]\n")
    e = docker_env(front=False)
    web = e.raw["runtime"]["services"]["web"]
    web["volumes"] = {str(data): "/var/lib/odoo", str(tmp_path / "odoo.conf"): "/etc/odoo/odoo.conf:ro"}
    with open_runtime(e.env) as rt:
        rt.deploy("web", docker_images.healthy, release="r1", timeout=30)
        first = e.containers("web")[0]
        assert first.exec_run(["cat", "/var/lib/odoo/filestore/checksum"]).output == b"attachment bytes"
        assert first.exec_run(["sh", "-c", "echo x > /etc/odoo/odoo.conf"]).exit_code != 0  # read-only
        # a file written by one instance (an attachment) is there for the instances that replace it
        assert first.exec_run(["sh", "-c", "echo new > /var/lib/odoo/filestore/written"]).exit_code == 0
        rt.deploy("web", docker_images.healthy_v2, release="r2", timeout=30)
        assert first.id not in e.ids("web")
        later = e.containers("web")[0]
        assert later.exec_run(["cat", "/var/lib/odoo/filestore/written"]).output.strip() == b"new"
        # the migration container sees the same data directory
        run = rt.run_once(docker_images.healthy, ["/bin/sh", "-c", "ls /var/lib/odoo/filestore"], service="web")
        assert run.log_tail.split() == ["checksum", "written"]
    bad = docker_environment(e.name, docker_images)
    bad["runtime"]["services"]["web"]["volumes"] = {str(data): "relative/path"}
    from erpops.environments import Environment

    with pytest.raises(RuntimeMisconfigured, match="absolute path"):
        open_runtime(Environment.model_validate({**bad, "name": e.name})).spec("web")


def test_stop_takes_a_service_out_and_deploy_brings_back_as_many(docker_env: Any, docker_images: ImageSet) -> None:
    e = docker_env()  # with the Traefik front
    with open_runtime(e.env) as rt:
        rt.deploy("web", docker_images.healthy, release="r1", timeout=30, replicas=3)
        rt.set_env("web", {"MARKER": "kept"}, timeout=30)
        assert e.front_check()[0] == 200
        state = rt.stop("web")
        assert state.replicas == 0 and len(state.instances) == 3  # stopped, not removed
        assert {c.status for c in e.containers("web")} == {"exited"}
        assert e.front_check()[0] == 503  # the front says so; no reset connections
        rt.stop("web")  # stopping a stopped service changes nothing
        result = rt.deploy("web", docker_images.healthy_v2, release="r2", timeout=30)
        assert result.replicas == 3  # as many as were stopped, with their environment
        body = e.front_get()
        assert '"version": "v2"' in body and '"marker": "kept"' in body
        assert len(e.containers("web")) == 3  # the stopped ones were removed after the switch
        with pytest.raises(Exception, match="stop it instead"):
            rt.deploy("web", docker_images.healthy, release="r3", replicas=0)
