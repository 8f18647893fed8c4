"""The playbooks through the command line on Kubernetes (the test API server): deploy with its
migration Job, a failing migration (exit 6, nothing rolled), rollback to the last good release and
to a named one, scale-for-peak with an autoscaler on a real database (issue 11, items 2 and 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.fixtures.odoo_crons import Database
from tests.integration.kube.test_kubernetes_runtime import _provision
from tests.kube.objects import autoscaler, provision
from tests.kube.server import Server


def _provision_cron(api: Any) -> None:
    labels = {"erpops.io/environment": "k", "erpops.io/service": "cron"}
    provision(api, "erpops-k-cron", labels, image="erpops-test/odoo:v1", replicas=1, port=None, args=["--no-http"],
              strategy={"type": "Recreate"})  # fmt: skip


def test_deploy_a_failing_migration_and_rollbacks_on_a_cluster(kube: Server, api: Any, tmp_path: Path) -> None:
    _provision(api)
    _provision_cron(api)
    web = {"replicas": 2, "port": 8069, "health_url": kube.ingress_url("erpops-k-web"),
           "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}}  # fmt: skip
    cron = {"replicas": 1, "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}}
    config = {"state": f"sqlite:///{tmp_path / 'state.db'}", "environments": {"k": {"runtime": {
        "kind": "kubernetes", "kubeconfig": str(tmp_path / "kubeconfig"),
        "services": {"web": web, "cron": cron}}}}}  # fmt: skip
    (tmp_path / "erpops.yaml").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env.update(ERPOPS_CONFIG=str(tmp_path / "erpops.yaml"), XDG_STATE_HOME=str(tmp_path / "xdg"))
    apps: Any = client.AppsV1Api(api)

    def erpops(*args: str) -> tuple[int, list[dict[str, Any]], str]:
        done = subprocess.run([sys.executable, "-m", "erpops", *args, "--yes", "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        return done.returncode, events, done.stderr

    def image() -> str:
        return str(apps.read_namespaced_deployment("erpops-k-web", "default").spec.template.spec.containers[0].image)

    code, events, err = erpops("deploy", "--env", "k", "--image", "erpops-test/odoo:v1", "--skip-backup")
    assert code == 0, err + json.dumps(events[-3:])
    said = [e["message"] for e in events if e["event"] == "step.log" and e.get("step") == "migrate"]
    assert "pausing cron (1 -> 0) while the command runs" in said and "resuming cron (0 -> 1)" in said, said
    code, events, err = erpops("deploy", "--env", "k", "--image", "erpops-test/odoo:v2", "--skip-backup")
    assert code == 0 and image() == "erpops-test/odoo:v2", err + json.dumps(events[-4:])
    second = events[0]["run_id"]  # the release id is the deploying run's id

    revision = apps.read_namespaced_deployment("erpops-k-web", "default").metadata.annotations
    code, events, err = erpops("deploy", "--env", "k", "--image", "erpops-test/odoo:v3-exit-3", "--skip-backup")
    assert code == 6, err + json.dumps(events[-3:])
    migrate = next(e for e in events if e["event"] == "step.finished" and e["step"] == "migrate")
    assert migrate["status"] == "failed" and "3" in (migrate["error"] or ""), migrate
    assert not any(e["event"] == "step.started" and e["step"] == "roll" for e in events)  # nothing rolled
    after = apps.read_namespaced_deployment("erpops-k-web", "default")
    assert image() == "erpops-test/odoo:v2" and after.metadata.annotations == revision
    assert client.BatchV1Api(api).list_namespaced_job("default").items == []  # the migration Job was deleted
    assert apps.read_namespaced_deployment("erpops-k-cron", "default").spec.replicas == 1  # resumed after a failure

    code, events, err = erpops("rollback", "--env", "k")  # the last good release before the current one
    assert code == 0 and image() == "erpops-test/odoo:v1", err + json.dumps(events[-3:])
    code, events, err = erpops("rollback", "--env", "k", "--to", second)  # a named release
    assert code == 0 and image() == "erpops-test/odoo:v2", err + json.dumps(events[-3:])


def test_scale_for_peak_on_a_cluster_with_an_autoscaler_defers_crons_and_reverts_exactly(
    kube: Server, api: Any, odoo_db: Database, tmp_path: Path
) -> None:
    """``erpops scale-for-peak`` through the command line: the headroom is checked on the real
    database, web is scaled through the autoscaler's floor, the named crons are deferred; the
    revert puts the autoscaler's bounds, the replicas and exactly the deferred crons back."""
    _provision(api)
    odoo_db.reset_crons()
    autoscaling: Any = client.AutoscalingV2Api(api)
    autoscaler(api, "web", "erpops-k-web", low=2, high=4)
    web = {"replicas": 2, "port": 8069, "health_url": kube.ingress_url("erpops-k-web"),
           "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}}  # fmt: skip
    config = {"state": f"sqlite:///{tmp_path / 'state.db'}", "environments": {"k": {
        "runtime": {"kind": "kubernetes", "kubeconfig": str(tmp_path / "kubeconfig"), "services": {"web": web}},
        "odoo": {"image": "erpops-test/odoo:v1", "workers": 2, "db_maxconn": 4},
        "database": {"dsn": odoo_db.dsn, "name": odoo_db.name}}}}  # fmt: skip
    (tmp_path / "erpops.yaml").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
    env.update(ERPOPS_CONFIG=str(tmp_path / "erpops.yaml"), XDG_STATE_HOME=str(tmp_path / "xdg"))
    apps: Any = client.AppsV1Api(api)

    def erpops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "erpops", *args, "--env", "k", "--yes"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    def bounds() -> tuple[int, int, int]:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", "default")
        replicas = apps.read_namespaced_deployment("erpops-k-web", "default").spec.replicas
        return hpa.spec.min_replicas, hpa.spec.max_replicas, replicas

    deployed = erpops("deploy", "--image", "erpops-test/odoo:v1", "--skip-backup")
    assert deployed.returncode == 0, deployed.stderr
    crons = odoo_db.crons()
    too_many = erpops("scale-for-peak", "--replicas", "200")  # 200 x 2 workers x 4 connections
    assert too_many.returncode != 0 and "max_connections" in too_many.stderr + too_many.stdout, too_many.stderr
    assert bounds() == (2, 4, 2) and odoo_db.crons() == crons  # refused before anything changed

    peak = erpops("scale-for-peak", "--replicas", "6", "--until", "2h", "--param", "crons=Digest Emails")
    assert peak.returncode == 0, peak.stderr + peak.stdout
    assert bounds() == (6, 6, 6)  # the autoscaler will not scale the peak back down
    assert "minReplicas 6" in peak.stdout, peak.stdout
    assert not odoo_db.crons()["Digest Emails"] and odoo_db.crons()["Procurement: run scheduler"]

    revert = erpops("scale-for-peak", "--revert")
    assert revert.returncode == 0, revert.stderr + revert.stdout
    assert bounds() == (2, 4, 2) and odoo_db.crons() == crons
