"""``erpops provision`` on Kubernetes (issue 13, item 2), on the test API server: from nothing
(server-side apply under the field manager erpops, rollouts waited for), a second run with no
write request (one list per kind), a hand-edited image and ConfigMap reported by a dry run and
put back, a field another tool owns refused unless forced, a removed service pruned, and an
object the cluster refuses named with nothing applied (exit 2)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client

from tests.fixtures.odoo_crons import Database
from tests.fixtures.tls import self_signed
from tests.kube.server import Server

CANARY = "canary-k8s-prov-pw-4b2c"


def _config(tmp: Path, dsn: str, role: str, services: dict[str, Any] | None = None) -> Path:
    cert, key = self_signed(tmp, "erp.example.test", stem="erp")
    quick = {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}
    env = {
        "database": {"dsn": dsn, "name": f"erp_{role}"},
        "odoo": {"image": "erpops-test/odoo:v1", "db_password": "env:ERPOPS_TEST_PW", "db_user": role,
                 "db_host": "pg.internal", "db_port": 5432},  # as the pods reach PostgreSQL
        "runtime": {"kind": "kubernetes", "kubeconfig": str(tmp / "kubeconfig"), "namespace": "odoo-t",
                    "project": "odoo", "services": services or {
                        "web": {"replicas": 2, "port": 8069, "healthcheck": quick, "vars": {"autoscale": False}},
                        "worker": {"replicas": 1, "port": 8069, "healthcheck": quick},
                        "cron": {"replicas": 1, "healthcheck": quick}}},
        "ingress": {"host": "erp.example.test", "tls": {"cert_file": str(cert), "key_file": str(key)}},
        "drills": {"schedule": "0 3 * * *", "image": "erpops:test", "config_secret": "erpops-config"},
    }  # fmt: skip
    path = tmp / "erpops.yaml"
    path.write_text(yaml.safe_dump({"state": f"sqlite:///{tmp / 'state.db'}", "environments": {"k": env}}))
    return path


def _erpops(tmp: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")} | (extra or {})
    env.update(ERPOPS_CONFIG=str(tmp / "erpops.yaml"), XDG_STATE_HOME=str(tmp / "xdg"), ERPOPS_TEST_PW=CANARY,
               COLUMNS="200")  # fmt: skip
    argv = [sys.executable, "-m", "erpops", "provision", "--env", "k", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, cwd=tmp)


def _writes(kube: Server) -> list[tuple[str, str]]:
    return [r for r in kube.store.requests if r[0] not in ("GET",)]


@pytest.fixture
def role(odoo_db: Database) -> Iterator[str]:
    name = f"odoo_{secrets.token_hex(3)}"
    yield name
    with psycopg.connect(odoo_db.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS erp_{name}")
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_provision_from_nothing_then_no_writes_then_drift_put_back_and_prune(
    kube: Server, api: Any, tmp_path: Path, odoo_db: Database, role: str
) -> None:
    _config(tmp_path, odoo_db.dsn, role)
    dry = _erpops(tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "create    Deployment odoo-t/odoo-web" in dry.stdout and "create    IngressRoute odoo-t/odoo" in dry.stdout
    assert CANARY not in dry.stdout + dry.stderr
    apps: Any = client.AppsV1Api(api)
    core: Any = client.CoreV1Api(api)
    assert core.list_namespace().items[0].metadata.name == "default" and len(core.list_namespace().items) == 1

    first = _erpops(tmp_path, "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    web = apps.read_namespaced_deployment("odoo-web", "odoo-t")
    assert web.status.ready_replicas == 2 and web.spec.template.spec.containers[0].image == "erpops-test/odoo:v1"
    assert core.read_namespaced_secret("odoo-odoo-db", "odoo-t").data["password"]  # the password's Secret
    assert (
        client.BatchV1Api(api).read_namespaced_cron_job("odoo-restore-test", "odoo-t").spec.concurrency_policy
        == "Forbid"
    )
    managers = {e.manager for e in web.metadata.managed_fields}
    assert "erpops" in managers

    before = len(kube.store.requests)
    again = _erpops(tmp_path, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    made = kube.store.requests[before:]
    writes = [r for r in made if r[0] != "GET" and "/leases" not in r[1]]  # the run's lock Lease aside
    assert writes == [], writes  # no write request
    lists = [r for r in made if r[0] == "GET" and "labelSelector=" in r[1]]
    kinds = {r[1].split("?")[0] for r in lists}
    assert len(lists) == len(kinds), lists  # one list per kind: the run applies what its plan read
    assert "nothing to change" in again.stdout

    # the autoscaler scales worker: replicas it manages are not drift
    apps.patch_namespaced_deployment_scale("odoo-worker", "odoo-t", {"spec": {"replicas": 3}},
                                           field_manager="kube-controller-manager")  # fmt: skip
    scaled = _erpops(tmp_path, "--dry-run")
    assert scaled.returncode == 0 and "nothing to change" in scaled.stdout, scaled.stdout
    assert "Deployment odoo-t/odoo-worker" not in scaled.stdout, scaled.stdout

    # drift: kubectl-style hand edits of an image and of odoo.conf
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "odoo", "image": "erpops-test/odoo:v9"}]}}}}
    apps.patch_namespaced_deployment("odoo-web", "odoo-t", patch, field_manager="kubectl-edit")
    core.patch_namespaced_config_map("odoo-odoo-conf", "odoo-t", {"data": {"odoo.conf": "[options]\nworkers = 64\n"}},
                                     field_manager="kubectl-edit")  # fmt: skip
    drift = _erpops(tmp_path, "--dry-run")
    said = drift.stdout
    image = "spec.template.spec.containers[0].image: erpops-test/odoo:v9 -> erpops-test/odoo:v1"
    assert f"update    Deployment odoo-t/odoo-web: {image}" in said, said
    assert "update    ConfigMap odoo-t/odoo-odoo-conf" in said, said
    fixed = _erpops(tmp_path, "--yes")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (
        apps.read_namespaced_deployment("odoo-web", "odoo-t").spec.template.spec.containers[0].image
        == "erpops-test/odoo:v1"
    )
    assert "workers = 64" not in core.read_namespaced_config_map("odoo-odoo-conf", "odoo-t").data["odoo.conf"]

    # a field another tool owns: refused unless forced
    apps.patch_namespaced_deployment(
        "odoo-worker", "odoo-t", {"spec": {"revisionHistoryLimit": 3}}, field_manager="argocd"
    )
    refused = _erpops(tmp_path, "--yes")
    assert refused.returncode == 1 and 'conflict with "argocd"' in refused.stdout + refused.stderr, refused.stdout
    assert "--param force=true" in refused.stdout + refused.stderr
    forced = _erpops(tmp_path, "--yes", "--param", "force=true")
    assert (
        forced.returncode == 0
        and apps.read_namespaced_deployment("odoo-worker", "odoo-t").spec.revision_history_limit == 10
    )

    # worker removed from erpops.yaml: its Deployment, Service and autoscaler are pruned
    raw = yaml.safe_load((tmp_path / "erpops.yaml").read_text())
    del raw["environments"]["k"]["runtime"]["services"]["worker"]
    (tmp_path / "erpops.yaml").write_text(yaml.safe_dump(raw))
    pruned = _erpops(tmp_path, "--yes")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "remove    Deployment odoo-t/odoo-worker" in pruned.stdout
    assert [d.metadata.name for d in apps.list_namespaced_deployment("odoo-t").items] == ["odoo-cron", "odoo-web"]
    assert kube.store.errors == [], kube.store.errors


def test_a_plan_read_stands_for_its_apply_only_while_fresh_and_a_stale_prune_deletes_nothing_changed(
    kube: Server, api: Any, tmp_path: Path, odoo_db: Database, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from erpops.backends.runtime.kubernetes import provision
    from erpops.environments import load_config

    _config(tmp_path, odoo_db.dsn, role)
    assert _erpops(tmp_path, "--yes").returncode == 0
    raw = yaml.safe_load((tmp_path / "erpops.yaml").read_text())
    del raw["environments"]["k"]["runtime"]["services"]["worker"]
    (tmp_path / "erpops.yaml").write_text(yaml.safe_dump(raw))
    env = load_config(str(tmp_path / "erpops.yaml")).environments["k"]
    monkeypatch.setenv("ERPOPS_TEST_PW", CANARY)

    planned, _ = provision.converge(env, apply=False)
    assert {("Deployment", "odoo-t/odoo-worker", "remove")} <= {(c.kind, c.name, c.action) for c in planned.changes}
    # between the plan and its apply, someone changes the worker Deployment: it is not deleted
    apps: Any = client.AppsV1Api(api)
    apps.patch_namespaced_deployment("odoo-worker", "odoo-t", {"metadata": {"annotations": {"x": "y"}}})
    before = len(kube.store.requests)
    with pytest.raises(Exception, match="changed since provision read it: not pruned"):
        provision.converge(env, apply=True, planned=planned)
    assert not [r for r in kube.store.requests[before:] if "labelSelector=" in r[1]]  # the plan's read, reused
    assert "odoo-worker" in {d.metadata.name for d in apps.list_namespaced_deployment("odoo-t").items}

    # a stale reading (older than FRESH_SECONDS) is read again: the prune then goes through
    planned, _ = provision.converge(env, apply=False)
    planned.at -= provision.FRESH_SECONDS
    apps.patch_namespaced_deployment("odoo-worker", "odoo-t", {"metadata": {"annotations": {"x": "z"}}})
    before = len(kube.store.requests)
    provision.converge(env, apply=True, planned=planned)
    assert [r for r in kube.store.requests[before:] if "labelSelector=" in r[1]]
    assert "odoo-worker" not in {d.metadata.name for d in apps.list_namespaced_deployment("odoo-t").items}
    assert kube.store.errors == [], kube.store.errors


def test_an_object_the_cluster_refuses_is_named_and_nothing_is_applied(
    kube: Server, api: Any, tmp_path: Path, odoo_db: Database, role: str
) -> None:
    _config(tmp_path, odoo_db.dsn, role)
    mine = tmp_path / "templates" / "kubernetes"
    mine.mkdir(parents=True)
    shipped = Path(__file__).resolve().parents[3] / "templates" / "kubernetes" / "network.yaml.j2"
    (mine / "network.yaml.j2").write_text(
        shipped.read_text().replace("  policyTypes: [Ingress]", "  policyTypes: [Ingress]\n  bogus: 1")
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "odoo-t"}}
    core: Any = client.CoreV1Api(api)
    core.create_namespace(namespace)  # exists: every object is tried first
    run = _erpops(tmp_path, "--yes", extra={"ERPOPS_TEMPLATE_PATH": str(tmp_path / "templates")})
    assert run.returncode == 2, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert (
        "NetworkPolicy odoo-t/odoo-odoo" in said and "network.yaml.j2" in said and 'unknown field "spec.bogus"' in said
    )
    assert "nothing was applied" in said
    assert client.AppsV1Api(api).list_namespaced_deployment("odoo-t").items == []
    assert client.CoreV1Api(api).list_namespaced_config_map("odoo-t").items == []
    applied = [w for w in kube.store.requests if w[0] == "PATCH" and "dryRun=All" not in w[1]]
    assert applied == [], applied  # only dry runs reached the server
    kube.store.errors.clear()  # the server recorded the refused object: that was the point
