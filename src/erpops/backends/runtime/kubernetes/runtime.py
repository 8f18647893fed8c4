"""The Kubernetes runtime: each declared service is a Deployment in the environment's namespace,
driven with the official client, by kubectl's own rules.

Names and labels: the Deployment (and its Service) of service ``web`` is ``<project>-web``
(``runtime.project``, default ``erpops-<env>``); erpops labels what it touches
(``erpops.io/environment``, ``erpops.io/service``) and records the release it rolled to as the pod
template's annotation ``erpops.io/release`` (the ``revision`` the runtime reports). The
Deployments themselves come from ``erpops provision`` (or your own manifests): a declared service
without its Deployment is refused (exit 3), never created here.

- ``deploy``: one strategic-merge patch of the pod template (image, release, environment) with
  ``maxUnavailable: 0`` (serving capacity never drops), then a watch of the Deployment judged as
  ``kubectl rollout status`` judges it, only once ``observedGeneration`` caught up. A
  ``ProgressDeadlineExceeded`` condition, a pod waiting in ``ImagePullBackOff``/``ErrImagePull``,
  new pods not ready within the service's health-check budget (``start_period + retries x
  interval``) or the health gate failing is a failed deploy: the template of the previous revision
  goes back as ``kubectl rollout undo`` puts it back, that rollout is waited for, and
  :class:`DeployFailed` says why (verdict and restored instants);
- ``scale`` through the scale subresource; ``stop`` scales to 0 keeping the count in the annotation
  ``erpops.io/stopped-replicas``, which ``deploy``/``start`` use;
- ``run_once``: a Job from the service's pod template (``backoffLimit: 0``, ``activeDeadlineSeconds``
  from the timeout), exit code from the container's terminated state, the log's tail, deleted after;
- ``restart`` (``kubectl.kubernetes.io/restartedAt``) and ``set_env`` (env patched by name), each
  waited for like a deploy;
- ``health``: ready pods, then a GET of ``health_path`` through the service's ``health_url`` (an
  ingress) or the API server's service proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Generator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from erpops.backends.runtime.base import (
    DeployFailed,
    DeployResult,
    HealthReport,
    ImageCheck,
    Instance,
    Release,
    RunResult,
    Runtime,
    RuntimeMisconfigured,
    ServiceState,
    http_check,
)
from erpops.environments import Environment
from erpops.errors import StepTimeout, Unreachable

#: Who erpops is in the objects' managedFields (``kubectl get -o yaml --show-managed-fields``, a
#: server-side apply's conflicts): every change it makes, as kubectl names itself kubectl-rollout.
FIELD_MANAGER = "erpops"
RELEASE = "erpops.io/release"
STOPPED = "erpops.io/stopped-replicas"
RESTARTED = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
HPA_MIN = "erpops.io/peak-previous-min-replicas"
HPA_MAX = "erpops.io/peak-previous-max-replicas"
HPA_BEFORE = "erpops.io/peak-previous-replicas"
PULL_ERRORS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName")
WATCH_SLICE = 30  # seconds a watch request stays open before it is renewed
#: What Kubernetes mounts into a pod for its service account (token, ca.crt, namespace)
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _api_error(exc: ApiException, doing: str) -> Unreachable:
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or exc.reason
    except ValueError:
        message = exc.reason
    if exc.status in (401, 403):
        return Unreachable(f"Kubernetes refused to {doing} ({exc.status} {exc.reason}): {message}")
    return Unreachable(f"cannot {doing}: {message} ({exc.status})")


def connect(env: Environment) -> tuple[Any, str, str]:
    """(API client, context name, namespace) of ``env``'s cluster, as kubectl resolves them: the
    environment's ``kubeconfig`` (else ``$KUBECONFIG``, else ``~/.kube/config``) and ``context``
    (else the current one), in-cluster configuration when there is no kubeconfig at all."""
    rt = env.runtime
    kubeconfig = os.path.expanduser(rt.kubeconfig) if rt.kubeconfig else None
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists():
            if kubeconfig and not Path(kubeconfig).is_file():
                raise Unreachable(f"environment {env.name!r}: kubeconfig {kubeconfig} cannot be read")
            api = config.new_client_from_config(config_file=kubeconfig, context=rt.context)
            contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == rt.context), current) if rt.context else current
            context = str(chosen["name"])
            default_ns = chosen.get("context", {}).get("namespace")
        else:
            api, default_ns = _in_cluster(env)
            context = "in-cluster"
    except config.ConfigException as exc:
        raise Unreachable(f"environment {env.name!r}: Kubernetes configuration: {exc}") from None
    return api, context, rt.namespace or default_ns or "default"


def _in_cluster(env: Environment) -> tuple[Any, str | None]:
    """The pod's service account, as kubectl uses it inside a pod: the API server from
    ``KUBERNETES_SERVICE_HOST``/``_PORT``, its token (re-read as the kubelet rotates it) and CA,
    the pod's namespace. A client configuration of its own: the client's default is left alone."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise Unreachable(
            f"environment {env.name!r}: no Kubernetes configuration: set runtime.kubeconfig or $KUBECONFIG, "
            "or create ~/.kube/config (in a pod, the service account is used)"
        )
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = client.Configuration()
    InClusterConfigLoader(
        token_filename=str(SERVICE_ACCOUNT / "token"), cert_filename=str(SERVICE_ACCOUNT / "ca.crt")
    ).load_and_set(configuration)
    namespace_file = SERVICE_ACCOUNT / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else None
    return client.ApiClient(configuration), namespace


class KubernetesRuntime(Runtime):
    kind = "kubernetes"

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        self.project = env.runtime.project or f"erpops-{env.name}"
        self.api, self.context, self.namespace = connect(env)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.requests = 0  # API requests this runtime made (for the benchmarks)

    # --- names and reads ---------------------------------------------------------------------------
    def describe(self) -> str:
        return f"Kubernetes {self.api.configuration.host} (context {self.context}, namespace {self.namespace})"

    def name_of(self, service: str) -> str:
        self.spec(service)
        return f"{self.project}-{service}"

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise _api_error(exc, doing) from None
        except urllib3.exceptions.HTTPError as exc:  # the API server is not there
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> Unreachable:
        why = getattr(exc, "reason", None) or exc
        return Unreachable(f"cannot reach the Kubernetes API at {self.api.configuration.host} ({self.context}): {why}")

    def _deployment(self, service: str, *, missing_ok: bool = False) -> Any:
        name = self.name_of(service)
        self.requests += 1
        try:
            return self.apps.read_namespaced_deployment(name, self.namespace)
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(exc) from None
        except ApiException as exc:
            if exc.status == 404:
                if missing_ok:
                    return None
                raise Unreachable(
                    f"service {service!r}: no Deployment {name} in namespace {self.namespace} ({self.describe()}); "
                    "run `erpops provision` first"
                ) from None
            raise _api_error(exc, f"read deployment {name}") from None

    @staticmethod
    def _selector(deployment: Any) -> str:
        """The Deployment's label selector as a query string (its pods, its ReplicaSets)."""
        return ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())

    def _watch(
        self, what: str, list_fn: Any, resource_version: str, seconds: float, **selector: str
    ) -> Generator[Any, None, None]:
        """One watch request (at most ``seconds``, at most WATCH_SLICE) from ``resource_version``:
        its (type, object) events until the caller stops or the server ends it. :class:`_Expired`
        when that resourceVersion is too old (410): the caller reads the current state again."""
        w = watch.Watch()
        self.requests += 1
        try:
            for event in w.stream(list_fn, self.namespace, resource_version=resource_version,
                                  timeout_seconds=max(1, min(int(seconds) + 1, WATCH_SLICE)), **selector):  # fmt: skip
                if event["type"] == "ERROR":
                    return
                yield event["type"], event["object"]
        except ApiException as exc:
            if exc.status == 410:
                raise _Expired from None
            raise _api_error(exc, f"watch {what}") from None
        finally:
            w.stop()

    def _pods(self, deployment: Any) -> list[Any]:
        selector = self._selector(deployment)
        pods = self._call("list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        return sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)

    @staticmethod
    def _instance(pod: Any) -> Instance:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        phase = pod.status.phase or "Pending"
        waiting = next(
            (cs.state.waiting.reason for cs in (pod.status.container_statuses or []) if cs.state and cs.state.waiting),
            None,
        )
        state = "running" if phase == "Running" and not pod.metadata.deletion_timestamp else (waiting or phase.lower())
        return Instance(
            id=pod.metadata.uid,
            name=pod.metadata.name,
            image=pod.spec.containers[0].image,
            release=(pod.metadata.annotations or {}).get(RELEASE, ""),
            state=state,
            health="healthy" if ready else ("starting" if phase in ("Pending", "Running") else "unhealthy"),
        )

    def _state(self, service: str, deployment: Any) -> ServiceState:
        if deployment is None:
            return ServiceState(service)
        st = deployment.status
        instances = tuple(self._instance(p) for p in self._pods(deployment))
        annotations = deployment.spec.template.metadata.annotations or {}
        return ServiceState(
            service,
            instances,
            desired=deployment.spec.replicas or 0,
            updated=(st.updated_replicas or 0) if st else 0,
            ready=(st.ready_replicas or 0) if st else 0,
            revision=annotations.get(RELEASE),
        )

    def current(self) -> Release:
        return Release(self.env.name, {s: self._state(s, self._deployment(s, missing_ok=True)) for s in self.specs})

    def service_state(self, service: str) -> ServiceState:
        return self._state(service, self._deployment(service, missing_ok=True))

    def check_image(self, image: str, *, pull: bool = False) -> ImageCheck:
        return ImageCheck(image, "unverified", detail="a cluster pulls images on its nodes: the rollout says")

    # --- rollouts ----------------------------------------------------------------------------------
    def _judge(self, d: Any, generation: int) -> tuple[bool, str | None, str]:
        """kubectl's rollout status rule: (done, failure or None, progress message)."""
        st = d.status
        if st is None or (st.observed_generation or 0) < generation:
            return False, None, "waiting for the deployment spec update to be observed"
        for c in st.conditions or []:
            if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
                return False, f"deployment {d.metadata.name} exceeded its progress deadline", ""
        want = d.spec.replicas or 0
        updated, replicas, available = st.updated_replicas or 0, st.replicas or 0, st.available_replicas or 0
        if updated < want:
            return False, None, f"{updated} out of {want} new replicas have been updated"
        if replicas > updated:
            return False, None, f"{replicas - updated} old replicas are pending termination"
        if available < updated:
            return False, None, f"{available} of {updated} updated replicas are available"
        return True, None, "rolled out"

    def _wait_rollout(self, service: str, generation: int, timeout: float, *, ready_budget: float | None) -> Any:
        """Watch the Deployment until kubectl would call its rollout done; raise StepTimeout, or
        RuntimeError(reason) for a failed rollout (deadline exceeded, image not pulled, not ready)."""
        name = self.name_of(service)
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        d = self._deployment(service)
        resource_version = d.metadata.resource_version
        while True:
            done, failure, _ = self._judge(d, generation)
            if done:
                return d
            if failure is None and ready_budget is not None:
                failure = self._pod_failure(d, started, ready_budget)
            if failure:
                raise _RolloutFailed(failure)
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepTimeout(f"deployment {name}: rollout not done after {timeout:g}s")
            seconds = left if ready_budget is None else min(left, ready_budget)  # the budget is checked above
            watching = self._watch(f"deployment {name}", self.apps.list_namespaced_deployment, resource_version,
                                   seconds, field_selector=f"metadata.name={name}")  # fmt: skip
            try:
                with contextlib.closing(watching) as events:  # the watch request ends with the loop
                    for _, d in events:
                        resource_version = d.metadata.resource_version
                        done, failure, _ = self._judge(d, generation)
                        if done or failure or (ready_budget is not None and time.monotonic() - started > ready_budget):
                            break
            except _Expired:
                d = self._deployment(service)  # start again from now
                resource_version = d.metadata.resource_version

    def _pod_failure(self, d: Any, started: float, budget: float) -> str | None:
        """Pods of the new revision that cannot pull their image, or none ready within ``budget``."""
        pods = [p for p in self._pods(d) if (p.metadata.annotations or {}).get(RELEASE) ==
                (d.spec.template.metadata.annotations or {}).get(RELEASE)]  # fmt: skip
        template_image = d.spec.template.spec.containers[0].image
        fresh = [p for p in pods if p.spec.containers[0].image == template_image]
        for pod in fresh:
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                if waiting is not None and waiting.reason in PULL_ERRORS:
                    return f"pod {pod.metadata.name} cannot pull image {cs.image}: {waiting.reason}"
        if time.monotonic() - started > budget:
            ready = sum(1 for p in fresh if self._instance(p).health == "healthy")
            if ready < (d.spec.replicas or 0):
                return f"{ready} of {d.spec.replicas} new pods ready after {budget:g}s (their health check fails)"
        return None

    def _budget(self, service: str) -> float:
        hc = self.spec(service).healthcheck
        return hc.start_period + hc.retries * hc.interval + hc.timeout

    def _patch(self, service: str, body: Any, doing: str) -> Any:
        name = self.name_of(service)
        return self._call(doing, self.apps.patch_namespaced_deployment, name, self.namespace, body,
                          field_manager=FIELD_MANAGER)  # fmt: skip

    def _template_patch(
        self, service: str, d: Any, *, image: str | None = None, env: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        container: dict[str, Any] = {"name": d.spec.template.spec.containers[0].name}
        if image is not None:
            container["image"] = image
        if env:
            container["env"] = [
                {"name": k, "$patch": "delete"} if v is None else {"name": k, "value": v} for k, v in env.items()
            ]
        template: dict[str, Any] = {"spec": {"containers": [container]}}
        if annotations:
            template["metadata"] = {"annotations": dict(annotations)}
        return template

    def _roll(self, service: str, patch: dict[str, Any], timeout: float, doing: str) -> Any:
        patched = self._patch(service, patch, doing)
        return self._wait_rollout(service, patched.metadata.generation, timeout, ready_budget=self._budget(service))

    def deploy(
        self,
        service: str,
        image: str,
        *,
        release: str,
        timeout: float = 300.0,
        env: Mapping[str, str | None] | None = None,
        replicas: int | None = None,
    ) -> DeployResult:
        t0 = time.monotonic()
        d = self._deployment(service)
        previous = d.spec.template.spec.containers[0].image
        stopped = (d.metadata.annotations or {}).get(STOPPED)
        count = (
            replicas if replicas is not None else (d.spec.replicas or int(stopped or 0) or self.spec(service).replicas)
        )
        current_env = {e.name: e.value for e in (d.spec.template.spec.containers[0].env or [])}
        env_changes = {k: v for k, v in (env or {}).items() if current_env.get(k) != v}
        annotations = {RELEASE: release}
        same = (previous == image and (d.spec.template.metadata.annotations or {}).get(RELEASE) == release
                and not env_changes and d.spec.replicas == count)  # fmt: skip
        if same:
            return DeployResult(service, image, previous, release, count, time.monotonic() - t0, changed=False)
        patch: dict[str, Any] = {
            "metadata": {"annotations": {STOPPED: None}},
            "spec": {
                "replicas": count,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
                "template": self._template_patch(service, d, image=image, env=env_changes, annotations=annotations),
            },
        }
        revision_before = (d.metadata.annotations or {}).get(REVISION)
        try:
            self._roll(service, patch, timeout, f"deploy {image} to {self.name_of(service)}")
            report = self.health(service, timeout=min(timeout, self._budget(service)))
            if not report.healthy:
                raise _RolloutFailed(f"health gate: {report.detail}")
        except (_RolloutFailed, StepTimeout) as exc:
            verdict = time.monotonic()
            self._undo(service, revision_before, timeout)
            raise DeployFailed(
                f"deploy of {image} to {service} failed ({exc}); rolled back to revision {revision_before} "
                f"({previous})",
                service=service,
                image=image,
                verdict_at=verdict,
                restored_at=time.monotonic(),
            ) from None
        return DeployResult(service, image, previous, release, count, time.monotonic() - t0)

    def _undo(self, service: str, revision: str | None, timeout: float) -> None:
        """What ``kubectl rollout undo --to-revision`` does: the ReplicaSet of that revision gives its
        pod template back (without its pod-template-hash label), then that rollout is waited for."""
        d = self._deployment(service)
        selector = self._selector(d)
        sets = self._call("list replicasets", self.apps.list_namespaced_replica_set, self.namespace,
                          label_selector=selector).items  # fmt: skip
        owned = [rs for rs in sets if any(o.uid == d.metadata.uid for o in (rs.metadata.owner_references or []))]
        target = next((rs for rs in owned if (rs.metadata.annotations or {}).get(REVISION) == revision), None)
        if target is None:
            raise Unreachable(f"deployment {d.metadata.name}: no ReplicaSet of revision {revision} to roll back to")
        template = self.api.sanitize_for_serialization(target.spec.template)
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        ops = [{"op": "replace", "path": "/spec/template", "value": template}]
        patched = self._call("roll back", self.apps.patch_namespaced_deployment, d.metadata.name, self.namespace, ops,
                             field_manager=FIELD_MANAGER)  # fmt: skip
        self._wait_rollout(service, patched.metadata.generation, timeout, ready_budget=None)

    # --- health ------------------------------------------------------------------------------------
    def health_url(self, service: str) -> str | None:
        return self.spec(service).health_url

    def health(self, service: str, timeout: float = 60.0, *, url: str | None = None) -> HealthReport:
        t0 = time.monotonic()
        spec = self.spec(service)
        target = url or self.health_url(service)
        deadline = t0 + timeout
        while True:
            d = self._deployment(service)
            want = d.spec.replicas or 0
            ready = (d.status.ready_replicas or 0) if d.status else 0
            code, detail = None, f"{ready} of {want} pods ready"
            if want and ready >= want:
                if target:
                    code, detail = http_check(target, timeout=min(5.0, max(deadline - time.monotonic(), 0.5)))
                elif spec.port is None:  # no HTTP (cron, workers): ready pods are its health
                    code, detail = 200, f"{ready} of {want} pods ready (no port: no HTTP check)"
                else:
                    code, detail = self._proxy_check(service, spec.health_path)
                if code == 200:
                    return HealthReport(service, True, want, ready, target, code, detail, time.monotonic() - t0)
            if time.monotonic() >= deadline:
                return HealthReport(service, False, want, ready, target, code, detail, time.monotonic() - t0)
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))  # never more than one check a second

    def _proxy_check(self, service: str, path: str) -> tuple[int | None, str]:
        name = f"{self.name_of(service)}:{self.spec(service).port}"
        self.requests += 1
        try:
            body = self.core.connect_get_namespaced_service_proxy_with_path(name, self.namespace, path.lstrip("/"))
        except ApiException as exc:
            return exc.status, f"service proxy {name}{path}: {exc.status} {exc.reason}"
        return 200, str(body)[:200]

    # --- replicas, restart, environment ------------------------------------------------------------
    def _hpa(self, service: str) -> Any:
        """The HorizontalPodAutoscaler whose target is the service's Deployment, if any."""
        name = self.name_of(service)
        found = self._call("list horizontal pod autoscalers",
                           client.AutoscalingV2Api(self.api).list_namespaced_horizontal_pod_autoscaler,
                           self.namespace).items  # fmt: skip
        return next((h for h in found if h.spec.scale_target_ref.kind == "Deployment"
                     and h.spec.scale_target_ref.name == name), None)  # fmt: skip

    def _peak_hpa(self, hpa: Any, replicas: int, before: int) -> None:
        """With an autoscaler, a peak is its floor: ``minReplicas`` (and ``maxReplicas`` when lower)
        raised to ``replicas``, the values it had kept in annotations; scaling back to the replicas
        before the peak restores exactly those values."""
        notes = hpa.metadata.annotations or {}
        autoscaling = client.AutoscalingV2Api(self.api)
        name = hpa.metadata.name
        if HPA_MIN in notes and int(notes.get(HPA_BEFORE, "-1")) == replicas:  # the end of the peak
            restore_min = None if notes[HPA_MIN] == "" else int(notes[HPA_MIN])
            patch: dict[str, Any] = {
                "metadata": {"annotations": {HPA_MIN: None, HPA_MAX: None, HPA_BEFORE: None}},
                "spec": {"minReplicas": restore_min, "maxReplicas": int(notes[HPA_MAX])},
            }
            what = f"restored autoscaler {name}: minReplicas {restore_min}, maxReplicas {notes[HPA_MAX]}"
        else:
            keep = {} if HPA_MIN in notes else {
                HPA_MIN: "" if hpa.spec.min_replicas is None else str(hpa.spec.min_replicas),
                HPA_MAX: str(hpa.spec.max_replicas), HPA_BEFORE: str(before)}  # fmt: skip
            ceiling = max(hpa.spec.max_replicas, replicas)
            patch = {"metadata": {"annotations": keep}, "spec": {"minReplicas": replicas, "maxReplicas": ceiling}}
            what = f"autoscaler {name}: minReplicas {replicas}"
        self._call(f"patch autoscaler {name}", autoscaling.patch_namespaced_horizontal_pod_autoscaler, name,
                   self.namespace, patch, field_manager=FIELD_MANAGER)  # fmt: skip
        self.notes.append(what)

    def scale(self, service: str, replicas: int, *, timeout: float = 300.0) -> ServiceState:
        name = self.name_of(service)
        hpa = self._hpa(service)
        if hpa is not None:
            before = self._deployment(service).spec.replicas or 0
            self._peak_hpa(hpa, replicas, before)
        self._call(f"scale {name}", self.apps.patch_namespaced_deployment_scale, name, self.namespace,
                   {"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER)  # fmt: skip
        d = self._deployment(service)
        self._wait_rollout(service, d.metadata.generation, timeout, ready_budget=None)
        self._wait_pods(service, replicas, timeout)
        return self.service_state(service)

    def _wait_pods(self, service: str, count: int, timeout: float) -> None:
        """Until exactly ``count`` pods exist (scaling down: the old ones are gone), by a watch."""
        d = self._deployment(service)
        selector = self._selector(d)
        listed = self._call("list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        pods = {p.metadata.name for p in listed.items}
        resource_version = listed.metadata.resource_version
        deadline = time.monotonic() + timeout
        while len(pods) != count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepTimeout(f"service {service}: {len(pods)} pods, not {count}, after {timeout:g}s")
            try:
                for kind, pod in self._watch("pods", self.core.list_namespaced_pod, resource_version, left,
                                             label_selector=selector):  # fmt: skip
                    resource_version = pod.metadata.resource_version
                    if kind == "DELETED":
                        pods.discard(pod.metadata.name)
                    elif kind in ("ADDED", "MODIFIED"):
                        pods.add(pod.metadata.name)
                    if len(pods) == count:
                        break
            except _Expired:
                return self._wait_pods(service, count, max(deadline - time.monotonic(), 0.0))

    def stop(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        d = self._deployment(service)
        if d.spec.replicas:
            self._patch(service, {"metadata": {"annotations": {STOPPED: str(d.spec.replicas)}}}, "record replicas")
        return self.scale(service, 0, timeout=timeout)

    def start(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        """The Deployment keeps its template while stopped: the same image and release come back,
        as many pods as were stopped."""
        d = self._deployment(service)
        image = d.spec.template.spec.containers[0].image
        release = (d.spec.template.metadata.annotations or {}).get(RELEASE) or "start"
        self.deploy(service, image, release=release, timeout=timeout)
        return self.service_state(service)

    def restart(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        d = self._deployment(service)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + f"-{time.monotonic_ns() % 10**6}"
        patch = {"spec": {"template": self._template_patch(service, d, annotations={RESTARTED: stamp})}}
        self._roll(service, patch, timeout, f"restart {self.name_of(service)}")
        self._wait_pods(service, d.spec.replicas or 0, timeout)
        return self.service_state(service)

    def set_env(self, service: str, values: Mapping[str, str | None], *, timeout: float = 300.0) -> ServiceState:
        d = self._deployment(service)
        patch = {"spec": {"template": self._template_patch(service, d, env=values)}}
        self._roll(service, patch, timeout, f"set the environment of {self.name_of(service)}")
        self._wait_pods(service, d.spec.replicas or 0, timeout)
        return self.service_state(service)

    # --- one-off runs -------------------------------------------------------------------------------
    def run_once(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 3600.0,
        service: str | None = None,
    ) -> RunResult:
        t0 = time.monotonic()
        if service is not None:
            d = self._deployment(service)
            pod_spec = self.api.sanitize_for_serialization(d.spec.template.spec)
        else:
            pod_spec = {"containers": [{"name": "run"}]}
        container = pod_spec["containers"][0]
        container.update(image=image, command=list(command))
        container.pop("args", None)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            container.pop(probe, None)
        if env:
            merged = {e["name"]: e for e in container.get("env") or []}
            merged.update({k: {"name": k, "value": v} for k, v in env.items()})
            container["env"] = list(merged.values())
        pod_spec["restartPolicy"] = "Never"
        labels = {"erpops.io/environment": self.env.name, "erpops.io/run": "once"}
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"generateName": f"{self.project}-run-", "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": max(int(timeout), 1),
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }
        made = self._call("create a job", self.batch.create_namespaced_job, self.namespace, job,
                          field_manager=FIELD_MANAGER)  # fmt: skip
        name = made.metadata.name
        try:
            conditions = self._wait_job(name, made.metadata.resource_version, timeout + 10)
            pods = self._call("list job pods", self.core.list_namespaced_pod, self.namespace,
                              label_selector=f"job-name={name}").items  # fmt: skip
            code, tail = 1, ""
            if not pods:
                reason = conditions.get("Failed")
                return RunResult(1, f"job {name}: {reason.reason if reason else 'no pod ran'}", time.monotonic() - t0)
            pod = sorted(pods, key=lambda p: p.metadata.creation_timestamp)[-1]
            for cs in pod.status.container_statuses or []:
                if cs.state and cs.state.terminated:
                    code = cs.state.terminated.exit_code
            if "Failed" in conditions and conditions["Failed"].reason == "DeadlineExceeded":
                code = code or 124
            tail = self._call("read the job's log", self.core.read_namespaced_pod_log, pod.metadata.name,
                              self.namespace, tail_lines=20)  # fmt: skip
            return RunResult(int(code), str(tail), time.monotonic() - t0)
        finally:
            self.requests += 1
            with contextlib.suppress(ApiException):  # gone already: nothing to delete
                self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")

    def _wait_job(self, name: str, resource_version: str, timeout: float) -> dict[str, Any]:
        """Watch the Job until it is Complete or Failed; its conditions by type."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepTimeout(f"job {name} did not finish within {timeout:g}s")
            try:
                for _, job in self._watch(f"job {name}", self.batch.list_namespaced_job, resource_version, left,
                                          field_selector=f"metadata.name={name}"):  # fmt: skip
                    resource_version = job.metadata.resource_version
                    conditions = {c.type: c for c in (job.status.conditions or [])} if job.status else {}
                    if "Complete" in conditions or "Failed" in conditions:
                        return conditions
            except _Expired:
                job = self._call(f"read job {name}", self.batch.read_namespaced_job, name, self.namespace)
                resource_version = job.metadata.resource_version

    def close(self) -> None:
        self.api.close()


class _Expired(Exception):
    """A watch's resourceVersion is too old (410 Gone): read the current state, watch from there."""


class _RolloutFailed(Exception):
    """A rollout that will not complete (judged before its timeout)."""


__all__ = ["KubernetesRuntime", "RuntimeMisconfigured"]
