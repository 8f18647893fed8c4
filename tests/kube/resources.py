"""The API resources the test API server serves (what erpops and kubectl use), with discovery
documents and the server-side defaults a real API server fills in."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def verbs(self) -> list[str]:
        return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), subresources=("status",)),
    Resource("", "v1", "pods", "Pod", short=("po",), subresources=("status", "log")),
    Resource("", "v1", "services", "Service", short=("svc",), subresources=("status", "proxy")),
    Resource("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    Resource("apps", "v1", "deployments", "Deployment", short=("deploy",), subresources=("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short=("rs",), subresources=("status", "scale")),
    Resource("batch", "v1", "jobs", "Job", subresources=("status",)),
    Resource("batch", "v1", "cronjobs", "CronJob", short=("cj",), subresources=("status",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short=("hpa",),
        subresources=("status",),
    ),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), subresources=("status",)),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), subresources=("status",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    # Traefik's CRDs (as its Helm chart installs them): no schema here, checked for their structure
    Resource("traefik.io", "v1alpha1", "ingressroutes", "IngressRoute"),
    Resource("traefik.io", "v1alpha1", "middlewares", "Middleware"),
]
#: API groups served by CustomResourceDefinitions: kubernetes-validate has no schema for them.
CRD_GROUPS = frozenset({"traefik.io"})

BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    if _r.group:
        GROUPS.setdefault(_r.group, [])
        if _r.version not in GROUPS[_r.group]:
            GROUPS[_r.group].append(_r.version)


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for name, versions in GROUPS.items():
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    versions = GROUPS.get(name)
    if versions is None:
        return None
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs, "preferredVersion": vs[0]}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    found = [r for r in RESOURCES if r.group == group and r.version == version]
    if not found:
        return None
    items: list[dict[str, Any]] = []
    for r in found:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        }
        if r.short:
            entry["shortNames"] = list(r.short)
        items.append(entry)
        for sub in r.subresources:
            kind = {"scale": "Scale", "log": "Pod", "proxy": "ServiceProxyOptions"}.get(sub, r.kind)
            verbs = {"log": ["get"], "proxy": ["create", "delete", "get", "patch", "update"]}.get(
                sub, ["get", "patch", "update"]
            )
            sub_entry: dict[str, Any] = {
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1")
            items.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


# --- defaults ---------------------------------------------------------------------------------


def _container_defaults(c: dict[str, Any]) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image", ""))
    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            p.setdefault("timeoutSeconds", 1)
            p.setdefault("periodSeconds", 10)
            p.setdefault("successThreshold", 1)
            p.setdefault("failureThreshold", 3)
            if "httpGet" in p:
                p["httpGet"].setdefault("scheme", "HTTP")


def pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        _container_defaults(c)


def defaults(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    spec = obj.get("spec")
    if kind == "Secret" and isinstance(obj.get("stringData"), dict):  # the API server stores it as data
        import base64

        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    if kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {})
        pod_spec_defaults(template.setdefault("spec", {}))
    elif kind == "ReplicaSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        pod_spec_defaults(spec.setdefault("template", {}).setdefault("spec", {}))
    elif kind == "Pod" and isinstance(spec, dict):
        pod_spec_defaults(spec)
    elif kind == "Job" and isinstance(spec, dict):
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        template = spec.setdefault("template", {})
        pod_spec_defaults(template.setdefault("spec", {}))
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    return obj


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


# --- OpenAPI v3 (what kubectl reads to learn that the server validates fields itself) ----------------


def openapi_root() -> dict[str, Any]:
    paths = {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=erpops"}}
    for name, versions in GROUPS.items():
        for v in versions:
            paths[f"apis/{name}/{v}"] = {"serverRelativeURL": f"/openapi/v3/apis/{name}/{v}?hash=erpops"}
    return {"paths": paths}


def openapi_group_version(group: str, version: str) -> dict[str, Any] | None:
    """The operations of one group/version, with the ``fieldValidation`` query parameter a real
    server declares (kubectl then leaves unknown-field checks to the server: ``fieldValidation=Strict``)."""
    found = [r for r in RESOURCES if r.group == group and r.version == version]
    if not found:
        return None
    param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
             "description": "how the server treats unknown or duplicate fields"}  # fmt: skip
    prefix = f"/apis/{group}/{version}" if group else "/api/v1"
    paths: dict[str, Any] = {}
    for r in found:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        base = f"{prefix}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{prefix}/{r.plural}"

        def op(verb: str, gvk: dict[str, str] = gvk, r: Resource = r) -> dict[str, Any]:
            return {"operationId": f"{verb}{r.kind}", "parameters": [param],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk}  # fmt: skip

        paths[base] = {"post": op("post")}
        paths[f"{base}/{{name}}"] = {"put": op("put"), "patch": op("patch")}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": paths,
            "components": {"schemas": {}}}  # fmt: skip
