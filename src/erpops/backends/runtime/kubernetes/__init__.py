"""The Kubernetes runtime (``runtime.kind: kubernetes``), loaded by name by ``open_runtime``."""

from erpops.backends.runtime.kubernetes.runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime"]
