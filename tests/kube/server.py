"""A Kubernetes API server for the tests: HTTP on 127.0.0.1, driven by the real ``kubernetes``
client and the real ``kubectl``.

What it does as a cluster does: discovery; create, get, list, update, patch (JSON, merge,
strategic merge, server-side apply with managedFields and conflicts), delete (dependents by
owner reference too); monotonic resourceVersions, ``generation`` bumped on spec changes,
optimistic concurrency (409); the ``status`` and ``scale`` subresources; label and field
selectors; watches from a resourceVersion (410 Gone when too old, bookmarks, initial events);
server-side defaults; and controllers (:mod:`tests.kube.controllers`): Deployments roll out
ReplicaSets, ReplicaSets keep their pods, pods get ready (or not) by a rule on their image, Jobs
run and finish with an exit code and a log, the service proxy answers as the ready pods' image
would.

Every object it stores or returns is checked with ``kubernetes-validate`` (strict); a request to
a path or verb the real API does not have is recorded in ``errors`` (the tests fail on it).

Try it by hand::

    uv run python -m tests.kube.server --kubeconfig /tmp/kubeconfig   # then KUBECONFIG=/tmp/kubeconfig kubectl ...
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.kube import patch as P
from tests.kube.resources import (
    BY_PATH,
    CRD_GROUPS,
    RESOURCES,
    Resource,
    api_group,
    api_group_list,
    api_versions,
    defaults,
    openapi_group_version,
    openapi_root,
    resource_list,
)

VALIDATE_VERSION = "1.37.0"
WATCH_WINDOW = 2000  # events kept for watches; an older resourceVersion is 410 Gone
KIND_OF = {r.kind: r for r in RESOURCES}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def unknown_field(obj: dict[str, Any]) -> str | None:
    """The first field of ``obj`` its schema does not declare (``spec.foo``), if any — what a server
    asked for ``fieldValidation=Strict`` refuses. Missing required fields are not its concern here
    (a server-side apply sends only the fields it manages)."""
    import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type information

    if _crd(obj):
        return None
    try:
        kubernetes_validate.validate(obj, VALIDATE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        m = re.search(r"\('([^']+)' was unexpected\)", exc.message)
        if m and exc.message.startswith("Additional properties"):
            return ".".join([*(str(p) for p in exc.path), m.group(1)])
    return None


def _crd(obj: dict[str, Any]) -> bool:
    """An object of a CustomResourceDefinition (Traefik's): no schema here, so its structure is
    checked instead (a name, a ``spec`` mapping, nothing at the top but the usual four)."""
    group = str(obj.get("apiVersion", "")).partition("/")[0]
    if group not in CRD_GROUPS:
        return False
    if str(obj.get("kind", "")).endswith("List"):
        return True
    extra = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
    assert not extra and isinstance(obj.get("spec"), dict) and (obj.get("metadata") or {}).get("name"), (
        f"{obj.get('kind')}: not a well-formed custom resource ({sorted(extra) or 'no spec or name'})"
    )
    return True


def validate(obj: dict[str, Any]) -> None:
    """Strict schema check of one object (a list: each item); raises AssertionError naming the problem."""
    import kubernetes_validate

    if _crd(obj):
        return
    kind = str(obj.get("kind", ""))
    if kind == "Status" or kind.endswith("List"):
        for item in obj.get("items") or []:
            validate({"apiVersion": obj.get("apiVersion"), "kind": kind[:-4], **item})
        return
    try:
        kubernetes_validate.validate(obj, VALIDATE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(
            f"{kind} {obj.get('metadata', {}).get('name')}: {exc.message} at {list(exc.path)}"
        ) from None


class Store:
    """Objects by (resource, namespace, name), the resourceVersion counter and the watch log."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[tuple[Resource, str, str], dict[str, Any]] = {}
        self.rv = 100
        self.log: list[tuple[int, str, Resource, dict[str, Any]]] = []
        self.errors: list[str] = []
        self.requests: list[tuple[str, str]] = []

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, event: str, res: Resource, obj: dict[str, Any]) -> None:
        self.log.append((int(obj["metadata"]["resourceVersion"]), event, res, copy.deepcopy(obj)))
        if len(self.log) > WATCH_WINDOW:
            del self.log[: len(self.log) - WATCH_WINDOW]
        self.changed.notify_all()

    def oldest_rv(self) -> int:
        return self.log[0][0] if self.log else self.rv

    # --- reads ----------------------------------------------------------------------------------
    def get(self, res: Resource, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.get((res, ns, name))
            if obj is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{res.plural}{"." + res.group if res.group else ""} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            return copy.deepcopy(obj)

    def find(self, res: Resource, ns: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (r, n, _), o in sorted(self.objects.items(), key=lambda kv: (kv[0][1], kv[0][2]))
                if r == res and (ns is None or n == ns)
            ]

    # --- writes ---------------------------------------------------------------------------------
    def create(self, res: Resource, ns: str, obj: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", f"{res.kind}: metadata.name: Required value")
            if res.namespaced:
                if (KIND_OF["Namespace"], "", ns) not in self.objects and ns != "default":
                    raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
                meta["namespace"] = ns
            if (res, ns if res.namespaced else "", name) in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{res.plural}{"." + res.group if res.group else ""} "{name}" already exists',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            obj = defaults(res.kind, obj)
            meta = obj["metadata"]
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            meta.pop("managedFields", None)
            meta.pop("generateName", None) if meta.get("name") else None
            if manager:
                meta["managedFields"] = [_entry(manager, "Update", res, P.leaf_paths(obj))]
            obj.pop("status", None)  # status is the controllers' to write
            meta["resourceVersion"] = self.next_rv()
            validate(obj)
            self.objects[(res, ns if res.namespaced else "", name)] = obj
            self._record("ADDED", res, obj)
            return copy.deepcopy(obj)

    def replace(
        self,
        res: Resource,
        ns: str,
        name: str,
        new: dict[str, Any],
        *,
        subresource: str | None = None,
        manager: str | None = None,
        operation: str = "Update",
        check_rv: bool = True,
        applied: set[P.Path] | None = None,
    ) -> dict[str, Any]:
        """Store ``new`` as the object (an update of the main resource ignores status, of status
        changes only status); generation bumps when the spec changed."""
        with self.lock:
            key = (res, ns if res.namespaced else "", name)
            old = self.objects.get(key)
            if old is None:
                self.get(res, ns, name)  # raises 404
                raise AssertionError("unreachable")
            given_rv = (new.get("metadata") or {}).get("resourceVersion")
            if check_rv and given_rv and given_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {res.plural}{"." + res.group if res.group else ""} "{name}": '
                    "the object has been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            new = copy.deepcopy(new)
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            if subresource == "status":
                merged = copy.deepcopy(old)
                merged["status"] = new.get("status", {})
                new = merged
            else:
                new = defaults(res.kind, new)
                if "status" in res.subresources and "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                meta = new.setdefault("metadata", {})
                for k in ("uid", "creationTimestamp", "namespace", "name", "generation"):  # not the client's to change
                    if k in old["metadata"]:
                        meta[k] = old["metadata"][k]
                if "ownerReferences" not in meta and "ownerReferences" in old["metadata"]:
                    meta["ownerReferences"] = old["metadata"]["ownerReferences"]
                meta["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields", []))
                if old.get("spec") != new.get("spec"):
                    meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if new == {
                **old,
                "metadata": {**old["metadata"], **{"resourceVersion": old["metadata"]["resourceVersion"]}},
            }:
                return copy.deepcopy(old)  # nothing changed: no new resourceVersion, no event
            if manager:
                _own(new, old, res, manager, operation, subresource, applied)
            if _same(new, old):
                return copy.deepcopy(old)
            new["metadata"]["resourceVersion"] = self.next_rv()
            validate(new)
            self.objects[key] = new
            self._record("MODIFIED", res, new)
            return copy.deepcopy(new)

    def delete(self, res: Resource, ns: str, name: str, preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        with self.lock:
            obj = self.get(res, ns, name)
            for field in ("uid", "resourceVersion"):  # DeleteOptions.preconditions, as the API server checks them
                wanted = (preconditions or {}).get(field)
                if wanted and wanted != obj["metadata"][field]:
                    label = "UID" if field == "uid" else "ResourceVersion"
                    raise ApiError(
                        409,
                        "Conflict",
                        f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: "
                        f"{obj['metadata'][field]}",
                        {"name": name, "group": res.group, "kind": res.plural},
                    )
            del self.objects[(res, ns if res.namespaced else "", name)]
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self._record("DELETED", res, obj)
            uid = obj["metadata"]["uid"]
            for (r, n, child), o in list(self.objects.items()):  # dependents go too (background)
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences", [])):
                    self.delete(r, n, child)
            return obj


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = lambda o: {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}  # noqa: E731
    return bool(strip(a) == strip(b))


def _entry(
    manager: str, operation: str, res: Resource, paths: set[P.Path], subresource: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": res.api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": P.fields_v1(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _own(
    new: dict[str, Any],
    old: dict[str, Any],
    res: Resource,
    manager: str,
    operation: str,
    subresource: str | None,
    applied: set[P.Path] | None,
) -> None:
    """Record who owns what: an Apply owns exactly what it applied; an Update owns what it changed
    (taken from any other manager)."""
    entries = [e for e in new["metadata"].get("managedFields", [])]
    if operation == "Apply":
        mine = set(applied or set())
    else:
        before, after = P.leaf_paths(old), P.leaf_paths(new)
        mine = {p for p in after if P.value_at(new, p) != P.value_at(old, p)} | (after - before)
        current = next((e for e in entries if e["manager"] == manager and e["operation"] == operation
                        and e.get("subresource") == subresource), None)  # fmt: skip
        if current:
            mine |= {p for p in P.paths_of(current["fieldsV1"]) if P.value_at(new, p) is not P._MISSING}
    # what changed value goes to this manager alone; an unchanged field applied by two managers is
    # owned by both (shared ownership)
    taken = {p for p in mine if P.value_at(new, p) != P.value_at(old, p)}
    kept = []
    for e in entries:
        if e["manager"] == manager and e["operation"] == operation and e.get("subresource") == subresource:
            continue
        theirs = P.paths_of(e.get("fieldsV1", {})) - taken
        if theirs:
            kept.append({**e, "fieldsV1": P.fields_v1(theirs)})
    if mine:
        kept.append(_entry(manager, operation, res, mine, subresource))
    new["metadata"]["managedFields"] = kept


class Server:
    """The API server: a store, the HTTP front and the controllers (``start``/``stop``)."""

    def __init__(self, *, image_rules: dict[str, Any] | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.store = Store()
        #: (certificate, key): serve HTTPS, and refuse requests without credentials as a secure port does
        self.tls = tls
        #: bearer token -> the verbs it may use (see _Handler._authorize)
        self.tokens: dict[str, set[str]] = {
            "test-token": {"get", "list", "watch", "create", "update", "patch", "delete"},
            "read-only": {"get", "list", "watch"},
        }
        self.httpd: ThreadingHTTPServer | None = None
        self.url = ""
        self.stopping = threading.Event()
        from tests.kube.controllers import Controllers

        self.controllers = Controllers(self.store, image_rules or {})

    def start(self) -> Server:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="kube-api").start()
        ingress = type("Ingress", (_Ingress,), {"server_ref": self})
        self.ingress = ThreadingHTTPServer(("127.0.0.1", 0), ingress)
        self.ingress.daemon_threads = True
        threading.Thread(target=self.ingress.serve_forever, daemon=True, name="kube-ingress").start()
        self.controllers.start()
        self.store.create(KIND_OF["Namespace"], "", {"metadata": {"name": "default"}})
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.controllers.stop()
        with self.store.lock:
            self.store.changed.notify_all()
        for httpd in (self.httpd, getattr(self, "ingress", None)):
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()

    def ingress_url(self, service: str, path: str = "/web/health", namespace: str = "default") -> str:
        """Where an ingress in front of ``service`` answers (no API credentials, as users reach it)."""
        return f"http://127.0.0.1:{self.ingress.server_address[1]}/{namespace}/{service}{path}"

    def kubeconfig(
        self, path: Path, namespace: str = "default", context: str = "test", token: str = "test-token"
    ) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url, **self._authority()}}],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "test", "user": "tester", "namespace": namespace}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def _authority(self) -> dict[str, str]:
        return {"certificate-authority": str(self.tls[0])} if self.tls else {}


@contextmanager
def serving(**kwargs: Any) -> Iterator[Server]:
    server = Server(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


# --- HTTP -------------------------------------------------------------------------------------


def _labels_match(labels: dict[str, str], selector: str) -> bool:
    """A label selector string (``a=b,c!=d,e in (x,y),f notin (z),g,!h``)."""
    if not selector:
        return True
    parts: list[str] = []
    depth, cur = 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for raw in (p.strip() for p in parts if p.strip()):
        if " notin " in raw:
            key, values = raw.split(" notin ", 1)
            if labels.get(key.strip()) in {v.strip() for v in values.strip(" ()").split(",")}:
                return False
        elif " in " in raw:
            key, values = raw.split(" in ", 1)
            if labels.get(key.strip()) not in {v.strip() for v in values.strip(" ()").split(",")}:
                return False
        elif "!=" in raw:
            key, value = raw.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in raw:
            key, value = raw.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif raw.startswith("!"):
            if raw[1:] in labels:
                return False
        elif raw not in labels:
            return False
    return True


def _fields_match(obj: dict[str, Any], selector: str) -> bool:
    for raw in (p.strip() for p in selector.split(",") if p.strip()):
        neg = "!=" in raw
        key, value = raw.replace("==", "=").split("!=" if neg else "=", 1)
        cur: Any = obj
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if (str(cur) == value) == neg:
            return False
    return True


def _age(created: str) -> str:
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _table(res: Resource, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    """The ``meta.k8s.io/v1`` Table kubectl asks ``get`` for (the columns a cluster prints)."""

    def col(name: str, kind: str = "string", fmt: str = "") -> dict[str, Any]:
        return {"name": name, "type": kind, "format": fmt, "description": name, "priority": 0}

    def st(o: dict[str, Any], k: str) -> int:
        return int((o.get("status") or {}).get(k, 0))

    if res.kind == "Deployment":
        columns = [col("Name", fmt="name"), col("Ready"), col("Up-to-date", "integer"), col("Available", "integer"),
                   col("Age")]  # fmt: skip
        cells = [[o["metadata"]["name"], f"{st(o, 'readyReplicas')}/{o['spec'].get('replicas', 1)}",
                  st(o, "updatedReplicas"), st(o, "availableReplicas"), _age(o["metadata"]["creationTimestamp"])]
                 for o in items]  # fmt: skip
    elif res.kind == "ReplicaSet":
        columns = [col("Name", fmt="name"), col("Desired", "integer"), col("Current", "integer"),
                   col("Ready", "integer"), col("Age")]  # fmt: skip
        cells = [[o["metadata"]["name"], o["spec"].get("replicas", 1), st(o, "replicas"), st(o, "readyReplicas"),
                  _age(o["metadata"]["creationTimestamp"])] for o in items]  # fmt: skip
    elif res.kind == "Pod":
        columns = [col("Name", fmt="name"), col("Ready"), col("Status"), col("Restarts", "string"), col("Age")]
        cells = []
        for o in items:
            statuses = (o.get("status") or {}).get("containerStatuses") or []
            ready = sum(1 for c in statuses if c.get("ready"))
            waiting = next((c["state"]["waiting"]["reason"] for c in statuses if "waiting" in (c.get("state") or {})),
                           None)  # fmt: skip
            phase = waiting or (o.get("status") or {}).get("phase", "Pending")
            cells.append([o["metadata"]["name"], f"{ready}/{len(o['spec']['containers'])}", phase, "0",
                          _age(o["metadata"]["creationTimestamp"])])  # fmt: skip
    else:
        columns = [col("Name", fmt="name"), col("Age")]
        cells = [[o["metadata"]["name"], _age(o["metadata"]["creationTimestamp"])] for o in items]
    rows = [{"cells": c, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                    "metadata": o["metadata"]}} for c, o in zip(cells, items, strict=True)]  # fmt: skip
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns, "rows": rows}  # fmt: skip


def selector_of(match: dict[str, Any]) -> str:
    """A LabelSelector as the string form."""
    parts = [f"{k}={v}" for k, v in sorted((match.get("matchLabels") or {}).items())]
    for expr in match.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], ",".join(expr.get("values") or [])
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                      "DoesNotExist": f"!{key}"}[op])  # fmt: skip
    return ",".join(parts)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    _cached: bytes | None = None

    def _body(self) -> Any:
        if self._cached is not None:
            raw = self._cached
        else:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        try:
            if ctype == "application/apply-patch+yaml":
                return yaml.safe_load(raw) if raw else {}
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from None

    def _unknown(self) -> None:
        store = self.server_ref.store
        store.errors.append(f"{self.command} {self.path}: the Kubernetes API has no such path or verb")
        self._send(404, ApiError(404, "NotFound", "the server could not find the requested resource").status())

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._cached = None  # one handler serves every request of a kept-alive connection
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        store = self.server_ref.store
        store.requests.append((self.command, self.path))
        try:
            if self.command == "GET" and self._discovery(parts):
                return
            target = self._target(parts)
            if target is None:
                return self._unknown()
            res, ns, name, sub, rest = target
            self._authorize(res, ns, name, sub, query)
            if query.get("fieldValidation") == "Strict" and self.command in ("POST", "PUT", "PATCH"):
                self._strict(res, query)
            self._serve(res, ns, name, sub, rest, query)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except P.PatchError as exc:
            self._send(422, ApiError(422, "Invalid", str(exc)).status())
        except AssertionError as exc:  # an object the real API would never store or return
            store.errors.append(f"{self.command} {self.path}: {exc}")
            self._send(500, ApiError(500, "InternalError", f"invalid object: {exc}").status())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a bug of the test server, or a request it cannot read: the test fails
            store.errors.append(f"{self.command} {self.path}: {type(exc).__name__}: {exc}")
            self._send(500, ApiError(500, "InternalError", f"{type(exc).__name__}: {exc}").status())

    def _authorize(self, res: Resource, ns: str, name: str | None, sub: str | None, query: dict[str, str]) -> None:
        """Bearer tokens as a cluster's RBAC would judge them: ``test-token`` may do anything,
        ``read-only`` only get, list and watch; any other is not authenticated (401). A request
        without credentials is served as the old API server's insecure local port served it (kubectl
        sends no token over plain HTTP); over HTTPS such a request is not authenticated (401), as
        on a cluster's secure port with anonymous requests disabled."""
        auth = self.headers.get("Authorization") or ""
        if not auth and not self.server_ref.tls:
            return
        scheme, _, token = auth.partition(" ")
        # the scheme in any case, as the API server takes it (the client's in-cluster loader sends "bearer")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token not in self.server_ref.tokens:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[self.command]
        if verb == "get" and name is None:
            verb = "watch" if query.get("watch") in ("true", "1") else "list"
        if verb not in self.server_ref.tokens[token]:
            what = f"{res.plural}/{sub}" if sub else res.plural
            group = f'"{res.group}"'
            where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            subject = f'{res.plural}{"." + res.group if res.group else ""} "{name}" is forbidden' if name else \
                f"{res.plural}{'.' + res.group if res.group else ''} is forbidden"  # fmt: skip
            raise ApiError(403, "Forbidden", f'{subject}: User "{token}" cannot {verb} resource "{what}" '
                           f"in API group {group}{where}",
                           {"name": name or "", "group": res.group, "kind": res.plural})  # fmt: skip

    def _strict(self, res: Resource, query: dict[str, str]) -> None:
        """``fieldValidation=Strict`` on a whole object (create, update, server-side apply): an
        unknown field is refused as a cluster refuses it (400, strict decoding error)."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        if self.command == "PATCH" and ctype != "application/apply-patch+yaml":
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self._cached = raw  # read once: _body() takes it from here
        try:
            body = yaml.safe_load(raw) if ctype == "application/apply-patch+yaml" else json.loads(raw or b"{}")
        except ValueError:
            return
        if isinstance(body, dict):
            field = unknown_field({**body, "apiVersion": res.api_version, "kind": res.kind})
            if field:
                raise ApiError(400, "BadRequest", f'{res.kind} in version "{res.version}" cannot be handled as a '
                               f'{res.kind}: strict decoding error: unknown field "{field}"')  # fmt: skip

    def _discovery(self, parts: list[str]) -> bool:
        doc: Any = None
        if parts == ["version"]:
            doc = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-erpops-test", "platform": "linux/amd64",
                   "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                   "goVersion": "go1.25", "compiler": "gc"}  # fmt: skip
        elif parts == ["api"]:
            doc = api_versions()
        elif parts == ["apis"]:
            doc = api_group_list()
        elif parts == ["api", "v1"]:
            doc = resource_list("", "v1")
        elif len(parts) == 2 and parts[0] == "apis":
            doc = api_group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = resource_list(parts[1], parts[2])
        elif parts == ["openapi", "v3"]:
            doc = openapi_root()
        elif parts[:2] == ["openapi", "v3"] and parts[2:3] == ["api"] and parts[3:] == ["v1"]:
            doc = openapi_group_version("", "v1")
        elif parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5:
            doc = openapi_group_version(parts[3], parts[4])
        elif parts and parts[0] in ("openapi", "healthz", "livez", "readyz"):
            if parts[0] == "openapi":  # OpenAPI v2: not served (clients use v3)
                self._send(404, ApiError(404, "NotFound", "the server could not find the requested resource").status())
            else:
                self._send(200, b"ok", "text/plain")
            return True
        else:
            return False
        if doc is None:
            self._unknown()
        else:
            self._send(200, doc)
        return True

    def _target(self, parts: list[str]) -> tuple[Resource, str, str | None, str | None, list[str]] | None:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
            ns, rest = rest[1], rest[2:]
        if not rest:
            return None
        res = BY_PATH.get((group, version, rest[0]))
        if res is None or (res.namespaced and not ns and len(rest) > 1):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in res.subresources:
            return None
        return res, ns, name, sub, rest[3:]

    # -- verbs -----------------------------------------------------------------------------------
    def _serve(
        self, res: Resource, ns: str, name: str | None, sub: str | None, rest: list[str], query: dict[str, str]
    ) -> None:
        store = self.server_ref.store
        verb = self.command
        manager = query.get("fieldManager") or (self.headers.get("User-Agent") or "unknown").split("/")[0]
        if name is None:
            if verb == "GET":
                if query.get("watch") in ("true", "1"):
                    return self._watch(res, ns or None, query)
                return self._list(res, ns or None, query)
            if verb == "POST":
                obj = self._body()
                out = store.create(res, ns, obj, manager)
                return self._send(201, out)
            return self._unknown()
        if sub == "scale":
            return self._scale(res, ns, name, query, manager)
        if sub == "log":
            if verb != "GET":
                return self._unknown()
            pod = store.get(res, ns, name)
            text = self.server_ref.controllers.pod_log(pod)
            if query.get("tailLines"):
                text = "\n".join(text.splitlines()[-int(query["tailLines"]) :]) + "\n"
            return self._send(200, text.encode(), "text/plain")
        if sub == "proxy":
            svc = store.get(res, ns, name.split(":")[0])
            code, body = self.server_ref.controllers.proxy(svc, "/" + "/".join(rest))
            return self._send(code, body.encode(), "application/json" if body.startswith("{") else "text/plain")
        if verb == "GET":
            obj = store.get(res, ns, name)
            if "as=Table" in (self.headers.get("Accept") or ""):
                return self._send(200, _table(res, [obj], obj["metadata"]["resourceVersion"]))
            return self._send(200, obj)
        if verb == "PUT":
            out = store.replace(res, ns, name, self._body(), subresource=sub, manager=manager)
            return self._send(200, out)
        if verb == "PATCH":
            return self._patch(res, ns, name, sub, query, manager)
        if verb == "DELETE" and sub is None:
            options = self._body() or {}
            obj = store.delete(res, ns, name, options.get("preconditions") if isinstance(options, dict) else None)
            details = {"name": name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]}
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "details": details})  # fmt: skip
        return self._unknown()

    def _list(self, res: Resource, ns: str | None, query: dict[str, str]) -> None:
        store = self.server_ref.store
        with store.lock:
            items = self._matching(res, ns, query)
            rv = str(store.rv)
        if "as=Table" in (self.headers.get("Accept") or ""):
            return self._send(200, _table(res, items, rv))
        for item in items:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        doc = {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": {"resourceVersion": rv},
               "items": items}  # fmt: skip
        self._send(200, doc)

    def _matching(self, res: Resource, ns: str | None, query: dict[str, str]) -> list[dict[str, Any]]:
        store = self.server_ref.store
        out = []
        for obj in store.find(res, ns):
            if _labels_match(obj["metadata"].get("labels") or {}, query.get("labelSelector", "")) and _fields_match(
                obj, query.get("fieldSelector", "")
            ):
                out.append(obj)
        return out

    def _chunk(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, res: Resource, ns: str | None, query: dict[str, str]) -> None:
        store = self.server_ref.store
        timeout = float(query.get("timeoutSeconds") or 30)
        deadline = time.monotonic() + min(timeout, 300)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def visible(obj: dict[str, Any]) -> bool:
            return (ns is None or obj["metadata"].get("namespace") == ns) and _labels_match(
                obj["metadata"].get("labels") or {}, query.get("labelSelector", "")
            ) and _fields_match(obj, query.get("fieldSelector", ""))  # fmt: skip

        with store.lock:
            start = query.get("resourceVersion", "")
            initial = query.get("sendInitialEvents") in ("true", "1") or start in ("", "0")
            if start not in ("", "0") and not initial and int(start) < store.oldest_rv() - 1:
                gone = ApiError(410, "Expired", f"too old resource version: {start} ({store.oldest_rv()})")
                self._chunk({"type": "ERROR", "object": gone.status()})
                self.wfile.write(b"0\r\n\r\n")
                return
            since = store.rv if initial else int(start)
            first = [o for o in store.find(res, ns) if visible(o)] if initial else []
        for obj in first:
            self._chunk({"type": "ADDED", "object": obj})
        if initial and bookmarks and query.get("sendInitialEvents") in ("true", "1"):
            mark = {"apiVersion": res.api_version, "kind": res.kind,
                    "metadata": {"resourceVersion": str(since),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}  # fmt: skip
            self._chunk({"type": "BOOKMARK", "object": mark})
        while not self.server_ref.stopping.is_set():
            with store.lock:
                events = [(rv, t, o) for rv, t, r, o in store.log if r == res and rv > since and visible(o)]
                if not events:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    store.changed.wait(min(left, 0.5))
                    continue
            for rv, kind, obj in events:
                self._chunk({"type": kind, "object": obj})
                since = rv
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _patch(self, res: Resource, ns: str, name: str, sub: str | None, query: dict[str, str], manager: str) -> None:
        store = self.server_ref.store
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        body = self._body()
        with store.lock:
            if ctype == "application/apply-patch+yaml":
                if query.get("dryRun") == "All":
                    return self._dry_run(lambda: self._apply(res, ns, name, sub, body, query))
                return self._apply(res, ns, name, sub, body, query)
            current = store.get(res, ns, name)
            if ctype == "application/json-patch+json":
                new = P.json_patch(current, body)
            elif ctype == "application/merge-patch+json":
                new = P.merge_patch(current, body)
            elif ctype == "application/strategic-merge-patch+json":
                new = P.strategic_merge(current, body)
            else:
                raise ApiError(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}"
                )
            check = bool((body or {}).get("metadata", {}).get("resourceVersion")) if isinstance(body, dict) else False
            out = store.replace(res, ns, name, new, subresource=sub, manager=manager, check_rv=check)
        self._send(200, out)

    def _dry_run(self, operation: Any) -> None:
        """``dryRun=All``: the request is handled as usual (defaults, validation, conflicts) and
        answered, but nothing is stored, versioned or seen by a watch."""
        store = self.server_ref.store
        with store.lock:
            saved = (copy.deepcopy(store.objects), store.rv, list(store.log))
            answered: list[tuple[int, Any]] = []
            send = self._send
            self._send = lambda code, body, content_type="application/json": answered.append((code, body))  # type: ignore[method-assign]
            try:
                operation()
            finally:
                self._send = send  # type: ignore[method-assign]
                store.objects, store.rv, store.log = saved
        code, out = answered[0]
        self._send(code, out)

    def _apply(
        self, res: Resource, ns: str, name: str, sub: str | None, body: dict[str, Any], query: dict[str, str]
    ) -> None:
        store = self.server_ref.store
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                           "is required for apply patch")  # fmt: skip
        force = query.get("force") in ("true", "1")
        body.setdefault("metadata", {}).setdefault("name", name)
        if body.get("kind") != res.kind:
            raise ApiError(400, "BadRequest", f"apply: kind {body.get('kind')!r} does not match {res.kind}")
        applied = P.leaf_paths(body)
        try:
            current = store.get(res, ns, name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            created = store.create(res, ns, copy.deepcopy(body))
            key = (res, ns if res.namespaced else "", created["metadata"]["name"])
            with store.lock:
                store.objects[key]["metadata"]["managedFields"] = [_entry(manager, "Apply", res, applied)]
                out = copy.deepcopy(store.objects[key])
            return self._send(201, out)
        conflicts = []
        previous: set[P.Path] = set()
        for entry in current["metadata"].get("managedFields", []):
            owned = P.paths_of(entry.get("fieldsV1", {}))
            if entry["manager"] == manager and entry["operation"] == "Apply":
                previous = owned
                continue
            for path in applied & owned:
                if P.value_at(current, path) != P.value_at(body, path) and path[-1] != ".":
                    conflicts.append((entry["manager"], path))
        if conflicts and not force:
            causes = [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{m}"',
                    "field": "." + ".".join(p[2:] if p.startswith("f:") else p for p in path),
                }
                for m, path in conflicts
            ]
            raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflicts: "
                           + "; ".join(f"conflict with \"{c['message'][15:-1]}\": {c['field']}" for c in causes),
                           {"causes": causes})  # fmt: skip
        merged = P.apply_merge(current, {k: v for k, v in body.items() if k != "status" or sub == "status"})
        others = set()
        for entry in current["metadata"].get("managedFields", []):
            if not (entry["manager"] == manager and entry["operation"] == "Apply"):
                others |= P.paths_of(entry.get("fieldsV1", {}))
        for path in sorted(previous - applied - others, key=len, reverse=True):  # no longer applied, nobody else's
            P.remove_path(merged, path)
        out = store.replace(res, ns, name, merged, subresource=sub, manager=manager, operation="Apply",
                            check_rv=False, applied=applied)  # fmt: skip
        self._send(200, out)

    def _scale(self, res: Resource, ns: str, name: str, query: dict[str, str], manager: str) -> None:
        store = self.server_ref.store
        with store.lock:
            obj = store.get(res, ns, name)

            def scale_of(o: dict[str, Any]) -> dict[str, Any]:
                return {
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {
                        k: o["metadata"][k]
                        for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                    },
                    "spec": {"replicas": o["spec"].get("replicas", 1)},
                    "status": {
                        "replicas": (o.get("status") or {}).get("replicas", 0),
                        "selector": selector_of(o["spec"].get("selector") or {}),
                    },
                }

            if self.command == "GET":
                return self._send(200, scale_of(obj))
            body = self._body()
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            current = scale_of(obj)
            if self.command == "PUT":
                wanted = body
            elif ctype == "application/json-patch+json":
                wanted = P.json_patch(current, body)
            elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                wanted = P.merge_patch(current, body)
            else:
                return self._unknown()
            validate(wanted)
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            new = copy.deepcopy(obj)
            new["spec"]["replicas"] = int(wanted["spec"]["replicas"])
            if self.command == "PUT" and rv:
                new["metadata"]["resourceVersion"] = rv
            out = store.replace(res, ns, name, new, manager=manager, subresource="scale",
                                check_rv=self.command == "PUT")  # fmt: skip
            self._send(200, scale_of(out))


class _Ingress(BaseHTTPRequestHandler):
    """An ingress in front of the cluster's Services: ``GET /<namespace>/<service>/<path>`` answers
    as the service proxy does, without credentials (as users reach the application)."""

    protocol_version = "HTTP/1.1"
    server_ref: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path).path.split("/", 3)
        store = self.server_ref.store
        code, body = 404, "404 page not found"
        if len(parts) >= 3:
            with store.lock:
                svc = store.objects.get((KIND_OF["Service"], parts[1], parts[2]))
            if svc is not None:
                code, body = self.server_ref.controllers.proxy(svc, "/" + (parts[3] if len(parts) > 3 else ""))
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description="A Kubernetes API server for trying erpops by hand")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="write a kubeconfig pointing at it here")
    parser.add_argument(
        "--image-rules",
        type=Path,
        help="JSON: image -> what its containers do, over the rules on its name "
        '(e.g. {"repo:unhealthy": {"ready_after": null}, "repo:bad-migration": {"exit_code": 3, "log": "..."}})',
    )
    args = parser.parse_args()
    rules = json.loads(args.image_rules.read_text()) if args.image_rules else None
    server = Server(image_rules=rules).start()
    server.kubeconfig(args.kubeconfig)
    print(f"serving {server.url}; KUBECONFIG={args.kubeconfig} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
