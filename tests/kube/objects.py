"""What ``erpops provision`` will make for a service on the test API server, for the tests and
benchmarks that need it made first: its Deployment and, with a port, its Service."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def provision(
    api: Any,
    name: str,
    labels: dict[str, str],
    *,
    image: str,
    replicas: int = 0,
    port: int | None = 8069,
    args: list[str] | None = None,
    namespace: str = "default",
    readiness: dict[str, Any] | None = None,
    **spec: Any,
) -> None:
    """Deployment ``name`` (selector and pod labels ``labels``, one container ``odoo`` of ``image``,
    extra ``spec`` fields such as ``strategy``, the container's ``readiness`` probe) and, when
    ``port`` is given, Service ``name``."""
    container: dict[str, Any] = {"name": "odoo", "image": image}
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    if args:
        container["args"] = args
    if readiness:
        container["readinessProbe"] = readiness
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            **spec,
        },
    }
    apps: Any = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment)
    if port is not None:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": port}]},
        }
        core: Any = client.CoreV1Api(api)
        core.create_namespaced_service(namespace, service)


def autoscaler(api: Any, name: str, deployment: str, *, low: int, high: int, namespace: str = "default") -> None:
    """A HorizontalPodAutoscaler ``name`` on CPU (70%) targeting ``deployment``, ``low``..``high`` replicas."""
    target = {"type": "Utilization", "averageUtilization": 70}
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }
    autoscaling: Any = client.AutoscalingV2Api(api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa)
