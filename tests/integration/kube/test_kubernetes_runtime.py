"""The Kubernetes runtime against the test API server: what the contract tests do not cover —
bad input (each one clear line, exit 3, nothing changed) and the capacity kept during a failed
deploy (issue 11, items 2 and 4)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from erpops.backends.runtime import DeployFailed, open_runtime
from erpops.environments import Environment
from erpops.errors import ExitCode, Unreachable
from tests.kube.objects import autoscaler, provision
from tests.kube.server import Server

LABELS = {"erpops.io/environment": "k", "erpops.io/service": "web"}


def _env(kubeconfig: Path | str, **runtime: Any) -> Environment:
    web = {"replicas": 2, "port": 8069, "healthcheck": {"interval": 0.2, "timeout": 1, "retries": 3, "start_period": 2}}
    raw = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "namespace": "default", "services": {"web": web}}
    raw.update(runtime)
    return Environment.model_validate({"name": "k", "runtime": raw})


def _provision(api: Any, image: str = "erpops-test/odoo:v1") -> None:
    provision(api, "erpops-k-web", LABELS, image=image)


def test_bad_configuration_is_one_clear_line_exit_3(kube: Server, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with pytest.raises(Unreachable) as exc:
        open_runtime(_env(tmp_path / "nowhere"))
    assert "kubeconfig" in str(exc.value) and "nowhere" in str(exc.value)
    assert exc.value.exit_code == ExitCode.UNREACHABLE
    with pytest.raises(Unreachable) as exc:
        open_runtime(_env(kubeconfig, context="no-such-context"))
    assert "no-such-context" in str(exc.value)
    with open_runtime(_env(kubeconfig)) as rt, pytest.raises(Unreachable) as missing:
        rt.deploy("web", "erpops-test/odoo:v1", release="r1", timeout=30)
    assert "no Deployment erpops-k-web" in str(missing.value) and "erpops provision" in str(missing.value)
    assert kube.store.find(next(r for r in kube.store.objects if r[0].kind == "Namespace")[0]) != []  # still up
    dead = tmp_path / "dead"
    dead.write_text(kubeconfig.read_text().replace(kube.url, "http://127.0.0.1:9"))
    with open_runtime(_env(dead)) as rt, pytest.raises(Unreachable) as unreachable:
        rt.current()
    assert "cannot reach the Kubernetes API" in str(unreachable.value)


def test_a_failed_deploy_keeps_capacity_names_the_cause_and_restores(api: Any, tmp_path: Path) -> None:
    _provision(api)
    apps: Any = client.AppsV1Api(api)
    with open_runtime(_env(tmp_path / "kubeconfig")) as rt:
        rt.deploy("web", "erpops-test/odoo:v1", release="r1", timeout=60)
        lowest = [2]
        stop = threading.Event()

        def sample() -> None:  # the serving capacity while the bad deploys run
            while not stop.is_set():
                st = apps.read_namespaced_deployment("erpops-k-web", "default").status
                lowest[0] = min(lowest[0], st.available_replicas or 0)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            with pytest.raises(DeployFailed) as pull:
                rt.deploy("web", "erpops-test/odoo:v2-no-pull", release="r2", timeout=60)
            assert "ImagePullBackOff" in str(pull.value) and "rolled back" in str(pull.value)
            with pytest.raises(DeployFailed) as never:
                rt.deploy("web", "erpops-test/odoo:v2-never-ready", release="r3", timeout=60)
            assert "ready" in str(never.value) and never.value.restored_at >= never.value.verdict_at
        finally:
            stop.set()
            sampler.join()
        assert lowest[0] == 2  # maxUnavailable 0: the serving pods were never fewer than desired
        state = rt.service_state("web")
        assert (state.revision, state.image, state.desired, state.ready) == ("r1", "erpops-test/odoo:v1", 2, 2)
        assert getattr(rt, "requests", 0) > 0  # the Kubernetes runtime counts its API requests


def test_scaling_for_a_peak_raises_an_autoscalers_floor_and_the_revert_restores_it_exactly(
    api: Any, tmp_path: Path
) -> None:
    _provision(api)
    autoscaling: Any = client.AutoscalingV2Api(api)
    autoscaler(api, "web", "erpops-k-web", low=2, high=4)
    with open_runtime(_env(tmp_path / "kubeconfig")) as rt:
        rt.deploy("web", "erpops-test/odoo:v1", release="r1", timeout=60)
        peak = rt.scale("web", 6, timeout=60)
        assert (peak.desired, peak.ready) == (6, 6)
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", "default")
        assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (6, 6)  # the autoscaler will not undo the peak
        assert any("minReplicas 6" in n for n in rt.notes)
        again = rt.scale("web", 5, timeout=60)  # a changed peak keeps the values from before it
        assert again.desired == 5
        assert autoscaling.read_namespaced_horizontal_pod_autoscaler("web", "default").spec.min_replicas == 5
        back = rt.scale("web", 2, timeout=60)  # the revert: back to the replicas before the peak
        assert (back.desired, back.ready) == (2, 2)
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", "default")
        assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 4)
        assert not any(k.startswith("erpops.io/") for k in (hpa.metadata.annotations or {}))


def test_a_role_that_may_not_and_a_rejected_token_are_one_line_exit_3(kube: Server, api: Any, tmp_path: Path) -> None:
    _provision(api)
    readonly = kube.kubeconfig(tmp_path / "readonly", token="read-only")
    with open_runtime(_env(readonly)) as rt:
        assert rt.service_state("web").desired == 0  # reading is allowed
        with pytest.raises(Unreachable) as exc:
            rt.deploy("web", "erpops-test/odoo:v1", release="r1", timeout=30)
    said = str(exc.value)
    assert "403" in said and 'cannot patch resource "deployments" in API group "apps"' in said, said
    assert exc.value.exit_code == ExitCode.UNREACHABLE and "\n" not in said
    assert client.AppsV1Api(api).read_namespaced_deployment("erpops-k-web", "default").spec.replicas == 0  # unchanged
    stranger = kube.kubeconfig(tmp_path / "stranger", token="who-is-this")
    with open_runtime(_env(stranger)) as rt, pytest.raises(Unreachable) as exc:
        rt.current()
    assert "401" in str(exc.value) and "Unauthorized" in str(exc.value)


def test_a_rollout_past_its_progress_deadline_is_a_failed_deploy(api: Any, tmp_path: Path) -> None:
    """The cluster's own verdict (Progressing=False, ProgressDeadlineExceeded) ends the deploy before
    erpops's readiness budget would (here 40 s), and the previous revision comes back."""
    _provision(api)
    apps: Any = client.AppsV1Api(api)
    apps.patch_namespaced_deployment("erpops-k-web", "default", {"spec": {"progressDeadlineSeconds": 1}})
    slow = {"interval": 1, "timeout": 1, "retries": 3, "start_period": 36}
    env = _env(tmp_path / "kubeconfig")
    env.runtime.services["web"]["healthcheck"] = slow
    with open_runtime(Environment.model_validate(env.model_dump())) as rt:
        rt.deploy("web", "erpops-test/odoo:v1", release="r1", timeout=60)
        t0 = time.monotonic()
        with pytest.raises(DeployFailed) as exc:
            rt.deploy("web", "erpops-test/odoo:v2-never-ready", release="r2", timeout=60)
        assert "exceeded its progress deadline" in str(exc.value) and time.monotonic() - t0 < 20
        state = rt.service_state("web")
        assert (state.revision, state.image, state.ready) == ("r1", "erpops-test/odoo:v1", 2)


def _managers(obj: Any) -> dict[tuple[str, str, str | None], str]:
    """``(manager, operation, subresource) -> fieldsV1 as JSON`` of an object's managedFields."""
    import json

    return {(m.manager, m.operation, m.subresource): json.dumps(m.fields_v1) for m in obj.metadata.managed_fields or []}


def test_what_erpops_changes_is_owned_by_the_field_manager_erpops(api: Any, tmp_path: Path) -> None:
    """A platform team's `kubectl get -o yaml --show-managed-fields` (or a GitOps apply's conflict)
    names erpops for the image, environment, restarts, replicas and autoscaler floor it set — not
    the Python client's anonymous default (OpenAPI-Generator), as kubectl names itself
    (kubectl-rollout, kubectl-set)."""
    _provision(api)
    apps: Any = client.AppsV1Api(api)
    autoscaler(api, "web", "erpops-k-web", low=2, high=4)
    with open_runtime(_env(tmp_path / "kubeconfig")) as rt:
        rt.deploy("web", "erpops-test/odoo:v2", release="r2", timeout=60, env={"WORKERS": "4"})
        mine = _managers(apps.read_namespaced_deployment("erpops-k-web", "default"))
        assert not any(m != "erpops" and '"f:image"' in f for (m, _, _), f in mine.items())
        erpops = mine[("erpops", "Update", None)]
        assert '"f:image"' in erpops and "WORKERS" in erpops
        rt.restart("web", timeout=60)
        restarted = _managers(apps.read_namespaced_deployment("erpops-k-web", "default"))
        assert "restartedAt" in restarted[("erpops", "Update", None)]
        rt.scale("web", 3, timeout=60)
        scaled = _managers(apps.read_namespaced_deployment("erpops-k-web", "default"))
        assert '"f:replicas"' in scaled[("erpops", "Update", "scale")]
        hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("web", "default")
        assert '"f:minReplicas"' in _managers(hpa)[("erpops", "Update", None)]
        rt.scale("web", 2, timeout=60)
        with pytest.raises(DeployFailed):  # rolled back by erpops (a JSON patch of the template)
            rt.deploy("web", "erpops-test/odoo:v3-no-pull", release="r3", timeout=60)
        back = _managers(apps.read_namespaced_deployment("erpops-k-web", "default"))
        assert not any(m != "erpops" and '"f:image"' in f for (m, _, _), f in back.items())
