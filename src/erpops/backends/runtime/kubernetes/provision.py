"""``erpops provision`` on Kubernetes: the rendered manifests (:mod:`.manifests`) applied with
server-side apply under the field manager ``erpops``.

- **Reads**: once per run — the plan's reading serves the apply that follows within
  ``FRESH_SECONDS`` — one list per kind in the namespace, by the environment's labels (the Namespace and
  unlabelled objects by name). An object is unchanged when every field erpops renders has that
  value on the cluster (defaults the server filled in, ``managedFields``, ``status`` and the
  replicas an autoscaler manages are not erpops's) and erpops owns no field it no longer
  renders: a converged environment costs no write request.
- **Plan**: create / update (the fields that differ, ``path: live -> rendered``; Secret values
  masked) / remove / no change per object. Before anything is applied, every object to create or
  update goes through a server-side dry run: one the cluster refuses (an invalid manifest) stops
  the run with the object, its template and the server's words, nothing applied (exit 2; a new
  Namespace is created first, so that what lives in it can be tried). A field another manager
  owns is a conflict: a hand edit (a ``kubectl ...`` manager) is drift and taken back; any other
  manager's (a controller, another tool) stops the run unless ``force``.
- **Apply**: the changed objects in order, then the Deployments' rollouts are waited for.
- **Prune**: objects of the listed kinds labelled for this environment by erpops that are no
  longer rendered are deleted (the Namespace and the filestore's claim never are).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from erpops import secrets
from erpops.backends.runtime.kubernetes import manifests
from erpops.backends.runtime.kubernetes.runtime import FIELD_MANAGER, KubernetesRuntime, _api_error
from erpops.environments import Environment
from erpops.errors import ActionError, InvalidInput, Unreachable
from erpops.provisioning import ObjectChange

MANAGER = FIELD_MANAGER
#: kind -> (API path prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "Service": ("/api/v1", "services", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "CronJob": ("/apis/batch/v1", "cronjobs", True),
    "IngressRoute": ("/apis/traefik.io/v1alpha1", "ingressroutes", True),
    "Middleware": ("/apis/traefik.io/v1alpha1", "middlewares", True),
}
NEVER_PRUNED = ("Namespace", "PersistentVolumeClaim")


class Cluster:
    """Plain REST on the environment's API server (the client's ApiClient: auth, TLS, retries)."""

    def __init__(self, rt: KubernetesRuntime) -> None:
        self.api = rt.api
        self.namespace = rt.namespace
        self.requests: list[str] = []

    def path(self, kind: str, name: str | None = None) -> str:
        if kind not in KINDS:
            raise InvalidInput(f"provision cannot apply a {kind} (it knows {', '.join(KINDS)})")
        prefix, plural, namespaced = KINDS[kind]
        where = f"{prefix}/namespaces/{self.namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
        return f"{where}/{name}" if name else where

    def call(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Any = None,
             content_type: str | None = None) -> Any:  # fmt: skip
        self.requests.append(f"{method} {path.split('?')[0]}")
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method_, url, headers, body_, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()), header_params=headers,
            body=body, auth_settings=["BearerToken"],
        )  # fmt: skip
        try:
            resp = self.api.call_api(method_, url, header_params=headers, body=body_)
            resp.read()
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"cannot reach the Kubernetes API at {self.api.configuration.host}: {exc}") from None
        text = resp.data.decode() if resp.data else ""
        if not 200 <= resp.status <= 299:
            raise ApiException.from_response(http_resp=resp, body=text, data=None)
        return json.loads(text or "null")

    def list(self, kind: str, selector: str) -> list[dict[str, Any]]:
        try:
            items = self.call("GET", self.path(kind), query={"labelSelector": selector}).get("items") or []
        except ApiException as exc:
            if exc.status == 404:  # a kind the cluster does not serve (Traefik's CRDs not installed)
                return []
            raise _api_error(exc, f"list {kind}") from None
        prefix, _, _ = KINDS[kind]
        version = prefix.removeprefix("/apis/").removeprefix("/api/")
        return [{"apiVersion": version, "kind": kind, **item} for item in items]

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("GET", self.path(kind, name)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(exc, f"get {kind} {name}") from None

    def apply(self, obj: dict[str, Any], *, dry_run: bool, force: bool) -> dict[str, Any]:
        query = {"fieldManager": MANAGER, "fieldValidation": "Strict", "force": "true" if force else "false"}
        if dry_run:
            query["dryRun"] = "All"
        path = self.path(obj["kind"], obj["metadata"]["name"])
        return dict(
            self.call("PATCH", path, query=query, body=json.dumps(obj), content_type="application/apply-patch+yaml")
        )

    def delete(self, kind: str, name: str, preconditions: Mapping[str, str] | None = None) -> None:
        """Delete (background propagation); with ``preconditions`` (uid, resourceVersion) only the
        object as it was read: one changed or replaced since is left alone and reported."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if preconditions:
            options["preconditions"] = dict(preconditions)
        try:
            self.call("DELETE", self.path(kind, name), body=options, content_type="application/json")
        except ApiException as exc:
            if exc.status == 409:
                raise ActionError(
                    f"{kind} {self.namespace}/{name} changed since provision read it: not pruned; run provision again"
                ) from None
            if exc.status != 404:
                raise _api_error(exc, f"delete {kind} {name}") from None


def _differences(want: Any, have: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, live, rendered) for every rendered field the live object does not have as rendered;
    what the live object has besides (defaults, others' fields) is not a difference."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            yield path or ".", have, want
            return
        for k, v in want.items():
            yield from _differences(v, have.get(k), f"{path}.{k}" if path else k)
    elif isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            yield path, have, want
            return
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            yield from _differences(w, h, f"{path}[{i}]")
    elif want != have and not (isinstance(want, int | float) and str(want) == str(have)):
        yield path, have, want


def _leaves(fields: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The leaf paths of a managedFields ``fieldsV1`` document (``f:spec.f:replicas``)."""
    out: set[str] = set()
    for k, v in fields.items():
        if k == ".":
            continue
        here = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and any(key != "." for key in v):
            out |= _leaves(v, here)
        else:
            out.add(here)
    return out


def _rendered_leaves(obj: Any, prefix: str = "") -> set[str]:
    """The same paths for a rendered object, a list counting as one field (its items' keys are the
    schema's business: see :func:`_truncated`)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if prefix == "" and k in ("apiVersion", "kind"):
                continue
            here = f"{prefix}.f:{k}" if prefix else f"f:{k}"
            sub = _rendered_leaves(v, here) if isinstance(v, dict) else set()
            out |= sub or {here}
    return out


def _truncated(path: str) -> str:
    """A managedFields path cut before its first list item (``k:{...}``, ``v:...``, ``i:...``)."""
    kept: list[str] = []
    for part in path.split("."):
        if part.startswith(("k:", "v:", "i:")):
            break
        kept.append(part)
    return ".".join(kept)


def _mine(live: dict[str, Any]) -> set[str] | None:
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == MANAGER and entry.get("operation") == "Apply":
            return _leaves(entry.get("fieldsV1") or {})
    return None


def _shown(kind: str, path: str, value: Any) -> str:
    if kind == "Secret" and path.startswith(("data", "stringData")):
        return "***"
    text = json.dumps(value) if not isinstance(value, str) else value
    text = secrets.redact(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _compare(m: manifests.Manifest, live: dict[str, Any] | None) -> ObjectChange:
    kind, name = m.obj["kind"], m.describe().split(" ", 1)[1]
    if live is None:
        return ObjectChange(kind, name, "create")
    want = {k: v for k, v in m.obj.items() if k not in ("apiVersion", "kind")}
    if kind == "Secret" and "stringData" in want:  # the server keeps it as base64 data
        import base64

        want = {**want, "data": {k: base64.b64encode(str(v).encode()).decode() for k, v in want["stringData"].items()}}
        del want["stringData"]
    lines = [f"{p}: {_shown(kind, p, h)} -> {_shown(kind, p, w)}" for p, h, w in _differences(want, live)]
    owned = _mine(live)
    if owned is not None:  # fields erpops applied before and renders no more (lists as a whole)
        rendered = _rendered_leaves(m.obj)
        dropped = {_truncated(p) for p in owned} - rendered
        dropped = {p for p in dropped if not any(r.startswith(p + ".") for r in rendered)}
        lines += [f"{p}: set by an earlier provision, no longer rendered" for p in sorted(dropped)]
    return ObjectChange(kind, name, "update", "\n".join(lines)) if lines else ObjectChange(kind, name, "no change")


#: How long a plan's reading may stand in for the apply's (seconds): a run plans every step, then
#: applies; within this, the apply acts on what the plan read (as a saved plan does) instead of
#: listing every kind again. Older (an approval waited for, slow steps before): read again.
FRESH_SECONDS = 60.0


@dataclass
class Observation:
    """What a plan read and decided: reusable by the apply that follows it within FRESH_SECONDS."""

    digest: str  # of the rendered objects and the prune flag: the apply reuses only the same intent
    changes: list[ObjectChange]
    todo: list[manifests.Manifest]
    stale: list[tuple[str, str, dict[str, str]]]  # kind, name, delete preconditions (uid, resourceVersion)
    at: float = field(default_factory=time.monotonic)

    def fresh(self, digest: str) -> bool:
        return digest == self.digest and time.monotonic() - self.at < FRESH_SECONDS


def _digest(rendered: list[manifests.Manifest], prune: bool) -> str:
    text = json.dumps([m.obj for m in rendered], sort_keys=True, default=str) + str(prune)
    return hashlib.sha256(text.encode()).hexdigest()


def _observe(cluster: Cluster, env: Environment, rendered: list[manifests.Manifest], prune: bool) -> Observation:
    """One list per kind (by the environment's labels), a get by name for what is not labelled."""
    selector = f"app.kubernetes.io/managed-by=erpops,erpops.io/environment={env.name}"
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in KINDS:  # every kind erpops may have made here: what is no longer rendered is pruned
        if kind == "Namespace":  # not namespaced: read by name below
            continue
        for item in cluster.list(kind, selector):
            live[(kind, item["metadata"]["name"])] = item
    changes: list[ObjectChange] = []
    todo: list[manifests.Manifest] = []
    for m in rendered:
        key = (m.obj["kind"], m.obj["metadata"]["name"])
        current = live.get(key)
        if current is None:  # not labelled as erpops's (the Namespace, or new): by name
            current = cluster.get(*key)
        change = _compare(m, current)
        changes.append(change)
        if change.changed:
            todo.append(m)
    wanted = {(m.obj["kind"], m.obj["metadata"]["name"]) for m in rendered}
    stale = [
        (kind, name, {"uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"]})
        for (kind, name), obj in live.items()
        if prune and (kind, name) not in wanted and kind not in NEVER_PRUNED
    ]
    changes += [
        ObjectChange(kind, f"{cluster.namespace}/{name}", "remove", "no longer rendered") for kind, name, _ in stale
    ]
    return Observation(_digest(rendered, prune), changes, todo, stale)


def converge(
    env: Environment,
    *,
    apply: bool,
    force: bool = False,
    prune: bool = True,
    images: Mapping[str, str] | None = None,
    resolve: Callable[[str], str] = secrets.resolve,
    timeout: float = 600.0,
    planned: Observation | None = None,
) -> tuple[Observation, list[str]]:
    """Plan (and with ``apply`` converge) the environment; (what was read and decided, the requests
    made). ``planned``: a plan's observation of the same rendering, used instead of reading again
    when fresh (see FRESH_SECONDS); a prune then deletes only objects unchanged since that read."""
    rt = KubernetesRuntime(env)
    try:
        cluster = Cluster(rt)
        rendered = manifests.render(env, images, resolve, namespace=rt.namespace)
        seen = planned if planned is not None and planned.fresh(_digest(rendered, prune)) else None
        seen = seen or _observe(cluster, env, rendered, prune)
        todo, stale = list(seen.todo), seen.stale
        if apply and (todo or stale):
            creating = any(c.kind == "Namespace" and c.action == "create" for c in seen.changes)
            new_namespace = [m for m in todo if m.obj["kind"] == "Namespace" and creating]
            for m in new_namespace:  # what lives in it can be tried only once it exists
                try:
                    cluster.apply(m.obj, dry_run=False, force=force)
                except ApiException as exc:
                    raise _refused(m, exc) from None
            todo = [m for m in todo if m not in new_namespace]
            forced = _check(cluster, todo, force)
            generations: dict[str, int] = {}
            for m in todo:
                try:
                    out = cluster.apply(m.obj, dry_run=False, force=force or m.describe() in forced)
                except ApiException as exc:
                    raise _refused(m, exc) from None
                if m.obj["kind"] == "Deployment":
                    generations[m.obj["metadata"]["name"]] = int(out["metadata"].get("generation", 1))
            for kind, name, preconditions in stale:
                cluster.delete(kind, name, preconditions)
            _wait(rt, env, generations, timeout)
        return seen, cluster.requests
    finally:
        rt.close()


def _refused(m: manifests.Manifest, exc: ApiException) -> Exception:
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or exc.reason
    except ValueError:
        message = exc.reason
    if exc.status == 409:
        return ActionError(
            f"{m.describe()} ({m.source}): {message}; nothing was applied — another field manager owns those "
            "fields: give them to erpops with --param force=true"
        )
    if exc.status in (400, 422):
        return InvalidInput(f"{m.describe()} ({m.source}) is refused by the cluster: {message}; nothing was applied")
    return _api_error(exc, f"apply {m.describe()}")


def _managers(exc: ApiException) -> list[str]:
    try:
        causes = (json.loads(exc.body or "{}").get("details") or {}).get("causes") or []
    except ValueError:
        return []
    found = [re.search(r'conflict with "([^"]+)"', c.get("message", "")) for c in causes]
    return sorted({m.group(1) for m in found if m})


def _check(cluster: Cluster, todo: list[manifests.Manifest], force: bool) -> set[str]:
    """Every object to apply through a server-side dry run first: nothing is applied if one is
    refused. A conflict with a hand edit (a ``kubectl ...`` field manager) is drift: that object is
    applied with force (returned); one with another manager (a controller, another tool) is an
    error unless ``force``."""
    forced: set[str] = set()
    for m in todo:
        try:
            cluster.apply(m.obj, dry_run=True, force=force)
        except ApiException as exc:
            managers = _managers(exc) if exc.status == 409 else []
            if not (managers and all(x.startswith("kubectl") for x in managers)):
                raise _refused(m, exc) from None
            try:
                cluster.apply(m.obj, dry_run=True, force=True)
            except ApiException as again:
                raise _refused(m, again) from None
            forced.add(m.describe())
    return forced


def _wait(rt: KubernetesRuntime, env: Environment, generations: Mapping[str, int], timeout: float) -> None:
    project = manifests.project_of(env)
    deadline = time.monotonic() + timeout
    for name, generation in generations.items():
        service = name.removeprefix(project + "-")
        if service in rt.specs:
            rt._wait_rollout(service, generation, max(1.0, deadline - time.monotonic()), ready_budget=None)
