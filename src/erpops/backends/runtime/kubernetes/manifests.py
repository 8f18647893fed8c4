"""An Odoo environment on Kubernetes as manifests, rendered from ``templates/kubernetes/``:

- ``namespace.yaml.j2``: the Namespace (unless ``default``), the erpops ServiceAccount and the
  least Role/RoleBinding its in-cluster drills need;
- ``config.yaml.j2``: odoo.conf as a ConfigMap (no secret in it), the database password's Secret
  when ``odoo.db_password`` is not already a ``k8s-secret:`` reference, and the filestore's
  PersistentVolumeClaim (``<project>-data``, ReadWriteMany: every Odoo pod shares it);
- ``service.yaml.j2`` once per declared service: Deployment (web: HTTP and websocket ports,
  startup / readiness / liveness probes on ``health_path``, ``--max-cron-threads=0``; cron:
  ``--no-http``, one replica, ``Recreate``), Service, PodDisruptionBudget (web) and
  HorizontalPodAutoscaler (web, worker; the Deployment then leaves ``replicas`` to it);
- ``ingress.yaml.j2`` with an ``ingress:``: Traefik's IngressRoute and Middlewares (TLS from a
  Secret made of ``ingress.tls``'s files, or an ACME resolver);
- ``network.yaml.j2``: the NetworkPolicy; ``drills.yaml.j2`` with ``drills:``: the CronJob of
  ``erpops restore-test``; ``migration-job.yaml.j2``: the migration Job (:func:`migration_job`).

Service templates read per-service ``vars``: ``max_replicas`` (HPA, default 3x replicas),
``cpu_target`` (70), ``autoscale`` (true for web and worker), ``resources``, ``run_as_user``
(101, the Odoo image's ``odoo``). Environment ``vars``: ``data_size`` (10Gi), ``storage_class``.
No SDK here: rendering and parsing only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from erpops import rendering, secrets
from erpops.backends.runtime.base import service_specs
from erpops.environments import Environment
from erpops.errors import InvalidInput
from erpops.provisioning import db_endpoint

ROLES = ("web", "worker", "cron")
DEFAULT_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2560Mi"}}


@dataclass(frozen=True)
class Manifest:
    source: Path  # the template it came from
    obj: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(apiVersion, kind, namespace, name): what it is on the cluster."""
        meta = self.obj.get("metadata") or {}
        obj = self.obj
        return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))

    def describe(self) -> str:
        _, kind, ns, name = self.key
        return f"{kind} {ns + '/' if ns else ''}{name}"


def project_of(env: Environment) -> str:
    return env.runtime.project or f"erpops-{env.name}"


def namespace_of(env: Environment) -> str:
    return env.runtime.namespace or "default"


def base_labels(env: Environment) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "erpops",
        "app.kubernetes.io/part-of": project_of(env),
        "erpops.io/environment": env.name,
    }


def _password(env: Environment, resolve: Callable[[str], str]) -> dict[str, Any] | None:
    ref = env.odoo.db_password
    if not ref:
        return None
    if ref.startswith("k8s-secret:"):
        rest = ref.removeprefix("k8s-secret:")
        where, _, key = rest.partition("#")
        name = where.rpartition("/")[2]
        return {"name": name, "key": key, "value": None}
    return {"name": f"{project_of(env)}-odoo-db", "key": "password", "value": resolve(ref)}


def _service(env: Environment, name: str, spec: Any, image: str) -> dict[str, Any]:
    role = name if name in ROLES else "other"
    labels = {**base_labels(env), "app.kubernetes.io/name": "odoo", "app.kubernetes.io/component": name,
              "erpops.io/service": name, **spec.labels}  # fmt: skip
    v = spec.vars
    if spec.command:
        args = list(spec.command)
    elif role == "cron":
        args = ["--no-http", f"--max-cron-threads={max(env.odoo.max_cron_threads, 1)}"]
    else:
        args = ["--max-cron-threads=0"]
    autoscaled = bool(v.get("autoscale", role in ("web", "worker"))) and spec.replicas > 0 and role != "cron"
    return {
        "name": name,
        "role": role,
        "labels": labels,
        "selector": {"erpops.io/environment": env.name, "erpops.io/service": name},
        "replicas": spec.replicas if role != "cron" else min(spec.replicas, 1),
        "image": image,
        "args": args,
        "port": spec.port,
        "health_path": spec.health_path,
        "healthcheck": spec.healthcheck.model_dump(),
        "env": dict(spec.env),
        "autoscaled": autoscaled,
        "max_replicas": int(v.get("max_replicas", max(spec.replicas * 3, spec.replicas + 1))),
        "cpu_target": int(v.get("cpu_target", 70)),
        "resources": v.get("resources", DEFAULT_RESOURCES),
        "run_as_user": int(v.get("run_as_user", 101)),
        "stop_timeout": max(int(spec.docker.stop_timeout), 30),
        "data_claim": f"{project_of(env)}-data",
    }


def context(
    env: Environment,
    images: Mapping[str, str] | None = None,
    resolve: Callable[[str], str] = secrets.resolve,
    namespace: str | None = None,
) -> dict[str, Any]:
    """What the templates see (besides ``env``): names, labels, the database endpoint, the
    password's Secret, odoo.conf without secrets, TLS material."""
    if env.database is None:
        raise InvalidInput(f"environment {env.name!r} has no database: section: Odoo on Kubernetes needs one")
    db = db_endpoint(env, resolve)
    conf = rendering.render("odoo/odoo.conf", {"env": env.as_template(), "db": db, "secrets_from_env": True})
    tls_cert = tls_key = None
    if env.ingress is not None and env.ingress.tls is not None and env.ingress.tls.cert_file:
        try:
            tls_cert = Path(env.ingress.tls.cert_file).expanduser().read_text()
            tls_key = Path(env.ingress.tls.key_file or "").expanduser().read_text()
        except OSError as exc:
            raise InvalidInput(f"ingress.tls: cannot read {exc.filename}: {exc.strerror}") from None
        secrets.REDACTOR.register(tls_key)
    specs = service_specs(env)
    images = images or {}
    services = []
    for name, spec in specs.items():
        image = images.get(name) or spec.image or env.odoo.image
        if not image:
            raise InvalidInput(f"service {name!r} has no image: set odoo.image or runtime.services.{name}.image")
        services.append(_service(env, name, spec, image))
    return {
        "env": env.as_template(),
        "project": project_of(env),
        "namespace": namespace or namespace_of(env),
        "labels": base_labels(env),
        "db": db,
        "password": _password(env, resolve),
        "odoo_conf": conf.text,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "services": services,
        "data": {"size": str(env.vars.get("data_size", "10Gi")), "storage_class": env.vars.get("storage_class")},
    }


def _parse(done: rendering.Rendered) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(done.text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise rendering.TemplateFailed(f"{done.source}{where}: the rendering is not YAML: {exc}") from None
    for d in docs:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
            raise rendering.TemplateFailed(f"{done.source}: a rendered document is not a Kubernetes object")
    return docs


def render(
    env: Environment,
    images: Mapping[str, str] | None = None,
    resolve: Callable[[str], str] = secrets.resolve,
    namespace: str | None = None,
) -> list[Manifest]:
    """Every object of the environment, in the order they are applied (in ``namespace``, default
    ``runtime.namespace`` or ``default``)."""
    ctx = context(env, images, resolve, namespace)
    out: list[Manifest] = []

    def add(name: str, extra: dict[str, Any] | None = None) -> None:
        done = rendering.render(f"kubernetes/{name}", {**ctx, **(extra or {})})
        out.extend(Manifest(done.source, obj) for obj in _parse(done))

    add("namespace.yaml")
    if ctx["namespace"] in ("default", "kube-system", "kube-public"):
        out[:] = [m for m in out if m.obj["kind"] != "Namespace"]
    add("config.yaml")
    for service in ctx["services"]:
        add("service.yaml", {"service": service})
    if env.ingress is not None:
        add("ingress.yaml")
    add("network.yaml")
    if env.drills is not None:
        add("drills.yaml")
    return out


def migration_job(
    env: Environment, *, name: str, image: str, command: list[str], timeout: int, run_as_user: int = 101
) -> dict[str, Any]:
    """The migration Job (``templates/kubernetes/migration-job.yaml.j2``) for ``image`` and ``command``."""
    ctx = context(env)
    job = {"name": name, "image": image, "command": command, "timeout": timeout, "run_as_user": run_as_user}
    (obj,) = _parse(rendering.render("kubernetes/migration-job.yaml", {**ctx, "job": job}))
    return obj
