"""The test API server behaves as a cluster does, for the official client and the real kubectl
(issue 11, item 5): what the Kubernetes runtime will be tested against must be held to this."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.integration.kube.conftest import deployment, wait
from tests.kube.server import Server

NS = "default"


def _apps(api: Any) -> Any:  # the client's models are Optional everywhere: Any keeps the tests readable
    return client.AppsV1Api(api)


def _core(api: Any) -> Any:
    return client.CoreV1Api(api)


def _batch(api: Any) -> Any:
    return client.BatchV1Api(api)


def _raw(api: Any, method: str, path: str, body: Any, content_type: str) -> dict[str, Any]:
    """A request the typed client has no method for (another patch type, server-side apply)."""
    headers = {"Content-Type": content_type, "Accept": "application/json",
               "Authorization": api.configuration.api_key["BearerToken"]}  # fmt: skip
    data = json.dumps(body) if content_type.endswith("yaml") else body  # JSON bodies: the client encodes them
    answer = api.call_api(method, api.configuration.host + path, header_params=headers, body=data)
    answer.read()
    if not 200 <= answer.status < 300:
        raise ApiException(http_resp=answer)
    return dict(json.loads(answer.data))


def _deploy(api: Any, **kw: Any) -> Any:
    return _apps(api).create_namespaced_deployment(NS, deployment(**kw))


def _rolled_out(apps: Any, name: str = "web") -> bool:
    d = apps.read_namespaced_deployment(name, NS)
    s = d.status
    return bool(
        s is not None
        and s.observed_generation == d.metadata.generation
        and (s.updated_replicas or 0) == d.spec.replicas
        and (s.available_replicas or 0) == d.spec.replicas
        and (s.replicas or 0) == d.spec.replicas
    )


def test_create_read_update_conflicts_and_cascading_delete(api: Any, kube: Server) -> None:
    apps: Any = _apps(api)
    made = _deploy(api)
    assert made.metadata.generation == 1 and made.spec.strategy.rolling_update.max_surge == "25%"  # defaults
    assert made.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    with pytest.raises(ApiException) as exc:
        _deploy(api)
    assert exc.value.status == 409 and json.loads(str(exc.value.body))["reason"] == "AlreadyExists"
    wait(lambda: _rolled_out(apps), "the first rollout")
    current = apps.read_namespaced_deployment("web", NS)
    stale = current.metadata.resource_version
    current.metadata.labels["tier"] = "front"  # metadata only: generation stays
    relabelled = apps.replace_namespaced_deployment("web", NS, current)
    assert relabelled.metadata.generation == 1 and int(relabelled.metadata.resource_version) > int(stale)
    current.metadata.resource_version = stale  # optimistic concurrency
    with pytest.raises(ApiException) as exc:
        apps.replace_namespaced_deployment("web", NS, current)
    assert exc.value.status == 409 and "the object has been modified" in str(exc.value.body)
    rs = _apps(api).list_namespaced_replica_set(NS, label_selector="app=web").items
    assert len(rs) == 1 and rs[0].metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert rs[0].metadata.labels["pod-template-hash"] in rs[0].metadata.name
    assert len(_core(api).list_namespaced_pod(NS, label_selector="app=web").items) == 2
    apps.delete_namespaced_deployment("web", NS)
    assert _apps(api).list_namespaced_replica_set(NS).items == []
    assert _core(api).list_namespaced_pod(NS).items == []
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("web", NS)
    assert exc.value.status == 404


def test_patches_merge_keyed_lists_and_the_scale_subresource(api: Any) -> None:
    apps: Any = _apps(api)
    _deploy(api)
    # strategic merge (a dict body): containers and env merge by name, nothing else is replaced
    patched = apps.patch_namespaced_deployment(
        "web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}}},
    )
    c = patched.spec.template.spec.containers
    assert len(c) == 1 and c[0].image == "odoo:18" and [e.name for e in c[0].env] == ["A", "B"]
    assert patched.metadata.generation == 2
    # JSON patch and merge patch through the API client's generic call
    body = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "odoo:18.1"}]
    _raw(api, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web", body, "application/json-patch+json")
    assert apps.read_namespaced_deployment("web", NS).spec.template.spec.containers[0].image == "odoo:18.1"
    merge = {"metadata": {"labels": {"merged": "yes", "app": None}}}  # null removes a key
    merged = _raw(api, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web", merge, "application/merge-patch+json")
    assert merged["metadata"]["labels"] == {"merged": "yes"}
    scaled = apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4 and scaled.kind == "Scale"
    assert apps.read_namespaced_deployment("web", NS).spec.replicas == 4
    assert apps.read_namespaced_deployment_scale("web", NS).status.selector == "app=web"


def _apply(api: Any, body: dict[str, Any], manager: str, force: bool = False) -> dict[str, Any]:
    query = f"?fieldManager={manager}" + ("&force=true" if force else "")
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/{body['metadata']['name']}{query}"
    return _raw(api, "PATCH", path, body, "application/apply-patch+yaml")


def test_server_side_apply_owns_fields_reports_conflicts_and_prunes(api: Any) -> None:
    first = _apply(api, deployment(), "erpops")
    managers = {(m["manager"], m["operation"]) for m in first["metadata"]["managedFields"]}
    assert ("erpops", "Apply") in managers
    fields = next(m for m in first["metadata"]["managedFields"] if m["manager"] == "erpops")["fieldsV1"]
    assert 'k:{"name":"web"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    apps: Any = _apps(api)
    wait(lambda: _rolled_out(apps), "the rollout (the controllers stop writing)")
    settled = apps.read_namespaced_deployment("web", NS).metadata.resource_version
    again = _apply(api, deployment(), "erpops")  # the same configuration: no write
    assert again["metadata"]["resourceVersion"] == settled
    with pytest.raises(ApiException) as exc:  # another manager, another value for an owned field
        _apply(api, deployment(image="odoo:19"), "someone-else")
    assert exc.value.status == 409 and "conflict" in str(exc.value.body).lower()
    forced = _apply(api, deployment(image="odoo:19"), "someone-else", force=True)
    assert forced["spec"]["template"]["spec"]["containers"][0]["image"] == "odoo:19"
    with pytest.raises(ApiException) as exc:  # erpops lost the image to a forced apply: its old value conflicts
        _apply(api, deployment(), "erpops")
    assert exc.value.status == 409
    mine = deployment(image="odoo:19")  # agreeing with the other manager is no conflict (shared ownership)
    mine["metadata"]["annotations"] = {"erpops.io/note": "only erpops sets this"}
    noted = _apply(api, mine, "erpops")
    assert noted["metadata"]["annotations"]["erpops.io/note"] == "only erpops sets this"
    del mine["metadata"]["annotations"], mine["metadata"]["labels"]
    pruned = _apply(api, mine, "erpops")  # erpops stops applying its annotation: it goes (nobody else owns it)
    assert "erpops.io/note" not in (pruned["metadata"].get("annotations") or {})
    assert pruned["metadata"]["labels"] == {"app": "web"}  # the other manager still applies the label: it stays


def test_managed_fields_never_hold_what_the_server_sets(api: Any) -> None:
    """As a cluster's: no manager owns apiVersion, kind, or the metadata the server sets (the
    creation time, the generation a patch bumps, uid, resourceVersion) — whether it created,
    patched, scaled or applied."""
    apps: Any = _apps(api)
    _deploy(api)
    applied = deployment()
    applied["metadata"]["annotations"] = {"note": "applied"}
    _apply(api, applied, "applier", force=True)
    apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
                                     field_manager="patcher")  # fmt: skip
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}}, field_manager="scaler")
    d = apps.read_namespaced_deployment("web", NS)
    assert d.metadata.generation >= 3 and d.metadata.creation_timestamp is not None
    entries = d.metadata.managed_fields
    assert {e.manager for e in entries} >= {"patcher", "scaler", "applier"}
    for e in entries:
        assert "f:apiVersion" not in e.fields_v1 and "f:kind" not in e.fields_v1, e.manager
        meta = e.fields_v1.get("f:metadata", {})
        held = set(meta) & {"f:creationTimestamp", "f:generation", "f:uid", "f:resourceVersion", "f:name",
                            "f:namespace", "f:selfLink", "f:managedFields"}  # fmt: skip
        assert not held, (e.manager, held)


def test_watches_resume_from_a_resource_version_and_expire(api: Any, kube: Server) -> None:
    apps: Any = _apps(api)
    made = _deploy(api, replicas=1)
    start = made.metadata.resource_version
    apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"x": "1"}}})
    seen = []
    w = watch.Watch()
    for event in w.stream(apps.list_namespaced_deployment, NS, resource_version=start, timeout_seconds=2,
                          field_selector="metadata.name=web"):  # fmt: skip
        seen.append((event["type"], event["object"].metadata.labels.get("x")))
        if event["object"].metadata.labels.get("x") == "1":
            w.stop()
    assert seen and seen[-1] == ("MODIFIED", "1") and all(t == "MODIFIED" for t, _ in seen)
    with kube.store.lock:  # the log moved on: an old resourceVersion is gone
        del kube.store.log[: len(kube.store.log) - 1]
    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(apps.list_namespaced_deployment, NS, resource_version=start, timeout_seconds=2):
            pass
    assert exc.value.status == 410


def test_rolling_update_keeps_capacity_and_an_image_that_never_gets_ready_times_out(api: Any) -> None:
    apps: Any = _apps(api)
    rolling = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}
    _deploy(api, replicas=3, progressDeadlineSeconds=2, **rolling)
    wait(lambda: _rolled_out(apps), "the first rollout")
    apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "odoo:18-never-ready"}]}}}})  # fmt: skip
    lowest = 3
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        d = apps.read_namespaced_deployment("web", NS)
        lowest = min(lowest, d.status.available_replicas or 0)
        progressing = next((c for c in d.status.conditions or [] if c.type == "Progressing"), None)
        if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the rollout of an image that never gets ready did not exceed its progress deadline")
    assert progressing.status == "False" and lowest == 3  # serving capacity never dropped
    assert d.status.updated_replicas == 1  # one surge pod, never ready; the old ones all kept


def test_jobs_end_with_an_exit_code_and_a_log_and_the_service_proxy_answers(api: Any) -> None:
    batch: Any = _batch(api)
    core: Any = _core(api)
    for name, image in (("migrate", "odoo:18"), ("broken", "odoo:18-exit-3")):
        batch.create_namespaced_job(NS, {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "odoo", "image": image,
                 "command": ["odoo", "-u", "all", "--stop-after-init"]}]}}}})  # fmt: skip
    done = wait(lambda: batch.read_namespaced_job("migrate", NS).status.succeeded, "the job to complete")
    assert done == 1
    failed = wait(lambda: batch.read_namespaced_job("broken", NS).status.failed, "the job to fail")
    assert failed == 1
    cond = batch.read_namespaced_job("broken", NS).status.conditions
    assert any(c.type == "Failed" and c.reason == "BackoffLimitExceeded" for c in cond)
    [pod] = core.list_namespaced_pod(NS, label_selector="job-name=broken").items
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3
    assert "exit code 3" in core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=5)

    core.create_namespaced_service(NS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8069}]}})  # fmt: skip
    with pytest.raises(ApiException) as exc:  # no pod yet
        core.connect_get_namespaced_service_proxy_with_path("web:8069", NS, "web/health")
    assert exc.value.status == 503
    _deploy(api, replicas=1)
    answer = wait(lambda: _proxy(core), "the service to answer")
    assert '"pass"' in answer or "'pass'" in answer


def _proxy(core: Any) -> str | None:
    try:
        return str(core.connect_get_namespaced_service_proxy_with_path("web:8069", NS, "web/health"))
    except ApiException:
        return None


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "odoo:18", ports: [{containerPort: 8069}]}
"""


def test_the_real_kubectl_applies_rolls_out_undoes_and_scales(kubectl: Any, api: Any) -> None:
    """The server answers the real kubectl as a cluster does — with kubectl's default validation:
    the server's OpenAPI documents say it checks fields itself (fieldValidation=Strict)."""
    typo = kubectl("apply", "--server-side", "-f", "-", stdin=MANIFEST.replace("replicas: 2", "replicaz: 2"))
    assert typo.returncode != 0 and 'strict decoding error: unknown field "spec.replicaz"' in typo.stderr, typo.stderr
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=MANIFEST)
    assert applied.returncode == 0 and "serverside-applied" in applied.stdout, applied.stderr
    status = kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    assert status.returncode == 0 and "successfully rolled out" in status.stdout, status.stderr
    table = kubectl("get", "deploy", "web").stdout.split()  # the columns a cluster prints
    assert table[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and table[5:9] == ["web", "2/2", "2", "2"]
    assert kubectl("set", "image", "deploy/web", "web=odoo:18.1").returncode == 0
    status = kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    assert status.returncode == 0 and "successfully rolled out" in status.stdout, status.stderr
    history = kubectl("rollout", "history", "deploy/web")
    assert history.returncode == 0 and [line.split()[0] for line in history.stdout.splitlines()[2:4]] == ["1", "2"]
    undo = kubectl("rollout", "undo", "deploy/web")
    assert undo.returncode == 0 and "rolled back" in undo.stdout, undo.stderr
    assert kubectl("rollout", "status", "deploy/web", "--timeout=30s").returncode == 0
    shown = kubectl("get", "deploy", "web", "-o", "json")
    d = json.loads(shown.stdout)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "odoo:18"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"  # as a cluster numbers it
    assert kubectl("scale", "deploy/web", "--replicas=3").returncode == 0
    wait(lambda: _rolled_out(_apps(api)) and _apps(api).read_namespaced_deployment(
        "web", NS).status.available_replicas == 3, "the scaled deployment")  # fmt: skip
    conflict = kubectl("apply", "--server-side", "--field-manager=other", "-f", "-",
                       stdin=MANIFEST.replace('"odoo:18"', '"odoo:19"'))  # fmt: skip
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower(), conflict.stderr
