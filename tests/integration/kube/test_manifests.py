"""The Kubernetes templates (issue 13, item 1): every rendered object of a full environment is
valid in strict mode against Kubernetes 1.30 and 1.37 (kubernetes-validate); Traefik's objects
(its CRDs: no schema of them ships in a package here) are checked for their structure; secrets
are never inline in a ConfigMap or a Deployment; bad templates are named with file and line.
(An invalid object the cluster refuses at apply time is provision's part: issue 13, item 2.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type information
import pytest

from erpops import rendering
from erpops.backends.runtime.kubernetes import manifests
from erpops.environments import Environment
from tests.fixtures.tls import self_signed

CANARY = "canary-k8s-db-pw-90a1"
VERSIONS = ("1.30.0", "1.37.0")


def _env(tmp: Path, **extra: Any) -> Environment:
    cert, key = self_signed(tmp, "erp.example.com", stem="erp")
    raw = {
        "database": {"dsn": "postgresql://erpops@pg.internal:5432/postgres", "name": "erp"},
        "odoo": {"image": "odoo:18.0", "db_password": "env:ERPOPS_TEST_K8S_PW", "workers": 4},
        "runtime": {"kind": "kubernetes", "namespace": "odoo-prod", "project": "odoo", "services": {
            "web": {"replicas": 2, "port": 8069, "vars": {"max_replicas": 8}},
            "worker": {"replicas": 1, "port": 8069},
            "cron": {"replicas": 1}}},
        "ingress": {"host": "erp.example.com", "tls": {"cert_file": str(cert), "key_file": str(key)},
                    "allow_from": ["10.0.0.0/8"], "headers": {"X-Robots-Tag": "noindex"}},
        "drills": {"schedule": "0 3 * * *", "image": "registry.example/erpops:1.0", "config_secret": "erpops-config",
                   "env_from_secrets": {"ERPOPS_STATE": "erpops-state#dsn"}},
        "vars": {"storage_class": "nfs-client"},
        **extra,
    }  # fmt: skip
    env = Environment.model_validate(raw)
    env.name = "prod"
    return env


def _kinds(objs: list[manifests.Manifest]) -> list[str]:
    return [m.describe() for m in objs]


def test_every_object_is_valid_for_130_and_137_and_traefiks_are_well_formed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPOPS_TEST_K8S_PW", CANARY)
    objs = manifests.render(_env(tmp_path))
    assert _kinds(objs) == [
        "Namespace odoo-prod", "ServiceAccount odoo-prod/odoo-erpops", "Role odoo-prod/odoo-erpops",
        "RoleBinding odoo-prod/odoo-erpops", "ConfigMap odoo-prod/odoo-odoo-conf", "Secret odoo-prod/odoo-odoo-db",
        "PersistentVolumeClaim odoo-prod/odoo-data",
        "Deployment odoo-prod/odoo-web", "Service odoo-prod/odoo-web", "PodDisruptionBudget odoo-prod/odoo-web",
        "HorizontalPodAutoscaler odoo-prod/odoo-web",
        "Deployment odoo-prod/odoo-worker", "Service odoo-prod/odoo-worker",
        "HorizontalPodAutoscaler odoo-prod/odoo-worker",
        "Deployment odoo-prod/odoo-cron",
        "IngressRoute odoo-prod/odoo", "Middleware odoo-prod/odoo-headers", "Middleware odoo-prod/odoo-ratelimit",
        "Middleware odoo-prod/odoo-allow", "Middleware odoo-prod/odoo-database-manager", "Secret odoo-prod/odoo-tls",
        "NetworkPolicy odoo-prod/odoo-odoo", "CronJob odoo-prod/odoo-restore-test",
    ]  # fmt: skip
    migrate = ["odoo", "-d", "erp", "-u", "all", "--stop-after-init"]
    job = manifests.migration_job(
        _env(tmp_path), name="odoo-migrate-r2", image="odoo:18.1", command=migrate, timeout=3600
    )
    for version in VERSIONS:
        for m in objs:
            if m.obj["apiVersion"].startswith("traefik.io/"):
                continue
            kubernetes_validate.validate(m.obj, version, strict=True)  # raises with the path and the schema error
        kubernetes_validate.validate(job, version, strict=True)

    by = {m.describe(): m.obj for m in objs}
    web = by["Deployment odoo-prod/odoo-web"]["spec"]
    assert "replicas" not in web  # the autoscaler owns it
    pod = web["template"]["spec"]["containers"][0]
    assert pod["args"] == ["--max-cron-threads=0"] and [p["containerPort"] for p in pod["ports"]] == [8069, 8072]
    assert pod["startupProbe"]["failureThreshold"] * pod["startupProbe"]["periodSeconds"] >= 600
    password = next(e for e in pod["env"] if e["name"] == "PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "odoo-odoo-db", "key": "password"}
    cron = by["Deployment odoo-prod/odoo-cron"]["spec"]
    assert cron["strategy"] == {"type": "Recreate"} and cron["replicas"] == 1
    assert cron["template"]["spec"]["containers"][0]["args"][0] == "--no-http"
    assert by["HorizontalPodAutoscaler odoo-prod/odoo-web"]["spec"]["maxReplicas"] == 8
    conf = by["ConfigMap odoo-prod/odoo-odoo-conf"]["data"]["odoo.conf"]
    assert "db_password" not in conf and "db_host = pg.internal" in conf and "workers = 4" in conf
    for m in objs:  # the password only in its Secret
        assert (CANARY in str(m.obj)) == (m.describe() == "Secret odoo-prod/odoo-odoo-db"), m.describe()
    drill = by["CronJob odoo-prod/odoo-restore-test"]["spec"]
    assert drill["concurrencyPolicy"] == "Forbid" and drill["successfulJobsHistoryLimit"] == 3

    route = by["IngressRoute odoo-prod/odoo"]["spec"]  # Traefik's CRD: structure
    matches = [r["match"] for r in route["routes"]]
    assert matches[1] == "Host(`erp.example.com`) && PathPrefix(`/websocket`)"
    assert route["routes"][1]["services"] == [{"name": "odoo-web", "port": "websocket"}]
    assert route["routes"][2]["middlewares"][0] == {"name": "odoo-database-manager"} and route["tls"] == {
        "secretName": "odoo-tls"}  # fmt: skip
    for name in ("odoo-headers", "odoo-ratelimit", "odoo-allow", "odoo-database-manager"):
        spec = by[f"Middleware odoo-prod/{name}"]["spec"]
        assert len(spec) == 1 and next(iter(spec)) in ("headers", "rateLimit", "ipAllowList"), spec


def test_a_k8s_secret_password_is_referenced_and_no_secret_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(tmp_path)
    env.odoo.db_password = "k8s-secret:odoo-prod/odoo-db#pw"
    env.ingress = None
    objs = manifests.render(env)
    assert not any(m.obj["kind"] == "Secret" for m in objs)
    web = next(m.obj for m in objs if m.describe() == "Deployment odoo-prod/odoo-web")
    env_vars = web["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "odoo-db", "key": "pw"}}} in env_vars


def test_a_bad_template_is_named_with_its_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPOPS_TEST_K8S_PW", CANARY)
    mine = tmp_path / "templates" / "kubernetes"
    mine.mkdir(parents=True)
    monkeypatch.setenv("ERPOPS_TEMPLATE_PATH", str(tmp_path / "templates"))
    (mine / "network.yaml.j2").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ nope }}\n")
    with pytest.raises(rendering.TemplateFailed) as undefined:
        manifests.render(_env(tmp_path))
    assert f"{mine / 'network.yaml.j2'}:4:" in str(undefined.value) and "'nope' is undefined" in str(undefined.value)
    (mine / "network.yaml.j2").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n")
    with pytest.raises(rendering.TemplateFailed) as broken:
        manifests.render(_env(tmp_path))
    assert f"{mine / 'network.yaml.j2'}:" in str(broken.value) and "not YAML" in str(broken.value)
