"""Inside a pod erpops uses the pod's service account, as kubectl does: the API server from
``KUBERNETES_SERVICE_HOST``/``_PORT`` over HTTPS, the mounted token and CA, the pod's namespace
(issue 11, item 1). The test API server serves HTTPS with a certificate of its own here and
refuses requests without credentials, as a cluster's secure port does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from erpops.backends.runtime import open_runtime
from erpops.backends.runtime.kubernetes import runtime as k8s_runtime
from erpops.environments import Environment
from erpops.errors import Unreachable
from tests.fixtures.tls import self_signed
from tests.kube.objects import provision
from tests.kube.server import serving


def _pod(monkeypatch: pytest.MonkeyPatch, tmp: Path, url: str, ca: Path, token: str, namespace: str) -> None:
    """What the kubelet gives a pod: the service account directory and the service's address."""
    account = tmp / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(token)
    (account / "ca.crt").write_bytes(ca.read_bytes())
    (account / "namespace").write_text(namespace)
    monkeypatch.setattr(k8s_runtime, "SERVICE_ACCOUNT", account)
    host, port = url.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp / "home"))  # no ~/.kube/config


def _env() -> Environment:
    services = {"web": {"replicas": 2, "port": 8069, "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3}}}
    return Environment.model_validate({"name": "pod", "runtime": {"kind": "kubernetes", "services": services}})


def test_in_a_pod_the_service_account_is_used_over_https(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with serving(tls=(cert, key)) as server:
        assert server.url.startswith("https://")
        admin: Any = config.new_client_from_config(str(server.kubeconfig(tmp_path / "admin")))
        core: Any = client.CoreV1Api(admin)
        core.create_namespace({"metadata": {"name": "odoo-pod"}})
        labels = {"erpops.io/environment": "pod", "erpops.io/service": "web"}
        provision(admin, "erpops-pod-web", labels, image="erpops-test/odoo:v1", namespace="odoo-pod")
        admin.close()

        _pod(monkeypatch, tmp_path, server.url, cert, "test-token", "odoo-pod")
        with open_runtime(_env()) as rt:
            assert rt.describe() == f"Kubernetes {server.url} (context in-cluster, namespace odoo-pod)"
            rt.deploy("web", "erpops-test/odoo:v2", release="r2", timeout=60)
            state = rt.service_state("web")
            assert (state.image, state.ready, state.revision) == ("erpops-test/odoo:v2", 2, "r2")
        assert server.store.errors == [], server.store.errors


def test_a_service_account_the_server_refuses_or_no_configuration_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    with serving(tls=(cert, key)) as server:
        _pod(monkeypatch, tmp_path, server.url, cert, "expired-token", "default")
        with pytest.raises(Unreachable) as refused:
            open_runtime(_env()).current()
        assert "401" in str(refused.value) or "Unauthorized" in str(refused.value), refused.value

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")  # not in a pod, no kubeconfig anywhere
    with pytest.raises(Unreachable) as nothing:
        open_runtime(_env())
    said = str(nothing.value)
    assert "no Kubernetes configuration" in said and "$KUBECONFIG" in said and "\n" not in said
