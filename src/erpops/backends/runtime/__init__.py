"""Runtimes: where an environment's Odoo services run (the interface is in :mod:`.base`).

- :mod:`.base`: the interface every runtime implements (``Runtime``), the service settings
  (``ServiceSpec``), what a runtime reports (``ServiceState``, ``Release``, ``HealthReport``...),
  its errors, and ``http_check`` / ``wait_until``;
- :mod:`.docker`: Docker on one host (``runtime.kind: docker``);
- ``kubernetes/``: a cluster (``runtime.kind: kubernetes``), where the Kubernetes runtime goes.

This package's face: :func:`open_runtime` picks the implementation of an environment (loaded only
then, so the SDKs stay out of start-up), :func:`shared_runtime` keeps one open runtime per
environment for the steps of a run. The interface's names are re-exported here.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from erpops.backends.runtime.base import (
    DeployFailed,
    DeployResult,
    DockerServiceSpec,
    HealthcheckSpec,
    HealthReport,
    ImageCheck,
    ImageNotFound,
    Instance,
    Release,
    RunResult,
    Runtime,
    RuntimeMisconfigured,
    ServiceSpec,
    ServiceState,
    UnknownService,
    deprecation_notice,
    http_check,
    service_specs,
    wait_until,
)
from erpops.environments import Environment
from erpops.errors import ErpopsError, TargetUnreachable

__all__ = [
    "SHARED_MAX",
    "DeployFailed",
    "DeployResult",
    "DockerServiceSpec",
    "HealthReport",
    "HealthcheckSpec",
    "ImageCheck",
    "ImageNotFound",
    "Instance",
    "Release",
    "RunResult",
    "Runtime",
    "RuntimeMisconfigured",
    "ServiceSpec",
    "ServiceState",
    "UnknownService",
    "close_shared_runtimes",
    "deprecation_notice",
    "environment_lease",
    "http_check",
    "install_secret_resolvers",
    "open_runtime",
    "service_specs",
    "shared_runtime",
    "wait_until",
]


def open_runtime(env: Environment) -> Runtime:
    """The runtime of ``env`` (``env.runtime.kind``); exit 3 when it has none or it is unreachable."""
    kind = env.runtime.kind
    if kind == "docker":
        from erpops.backends.runtime.docker.runtime import DockerRuntime

        return DockerRuntime(env)
    if kind == "kubernetes":
        import importlib
        import importlib.util

        if importlib.util.find_spec("erpops.backends.runtime.kubernetes") is None:
            raise RuntimeMisconfigured(
                f"environment {env.name!r}: the Kubernetes runtime is not available in this erpops version"
            )
        module = importlib.import_module("erpops.backends.runtime.kubernetes")
        runtime: Runtime = module.KubernetesRuntime(env)
        return runtime
    what = (
        "the built-in sandbox runs databases and storage, no application containers"
        if env.name == "sandbox"
        else (f"runtime.kind: {kind}")
    )
    raise RuntimeMisconfigured(
        f"environment {env.name!r} has no runtime ({what}); declare an environment with runtime.kind docker "
        "or kubernetes and its services in erpops.yaml (example: docs/configuration.md)"
    )


def install_secret_resolvers(env: Environment) -> None:
    """Let ``k8s-secret:`` references resolve through ``env``'s cluster (a Kubernetes environment;
    nothing otherwise). Connects only when a reference is resolved."""
    if env.runtime.kind != "kubernetes":
        return
    import importlib

    from erpops import secrets

    module = importlib.import_module("erpops.backends.runtime.kubernetes.secrets")
    secrets.register_resolver("k8s-secret", module.resolver_for(env))


def environment_lease(
    env: Environment,
    *,
    run_id: str,
    runbook: str,
    wait: float | None = None,
    cancel: threading.Event | None = None,
) -> AbstractContextManager[None]:
    """The environment lock on a Kubernetes cluster (``coordination.k8s.io/v1`` Lease), for
    environments whose state store is not shared between machines."""
    import importlib

    module = importlib.import_module("erpops.backends.runtime.kubernetes.lease")
    lease: AbstractContextManager[None] = module.environment_lease(
        env, run_id=run_id, runbook=runbook, wait=wait, cancel=cancel
    )
    return lease


# --- one open runtime per environment, shared by the steps of a run ------------------------------
#: Environments whose runtime stays open at once in one process (the least recently used closes).
SHARED_MAX = 4


@dataclass
class _Shared:
    runtime: Runtime
    users: int = 0
    dropped: bool = False


_shared: dict[str, _Shared] = {}  # insertion order = least recently used first
_shared_lock = threading.Lock()


def _shared_key(env: Environment) -> str | None:
    """What a runtime is opened from: the environment and the variables naming the engine."""
    try:
        dumped = env.model_dump_json()
    except ValueError:  # a value pydantic cannot serialize (PydanticSerializationError)
        return None
    where = sorted((k, v) for k, v in os.environ.items() if k.startswith(("DOCKER_", "KUBE")))
    return f"{dumped}\n{where}"


def _release(entry: _Shared) -> None:
    """Close ``entry`` once it is dropped and nobody uses it (called with the lock held)."""
    if entry.dropped and entry.users == 0:
        entry.runtime.close()


def _drop(key: str, entry: _Shared) -> None:
    with _shared_lock:
        if _shared.get(key) is entry:
            del _shared[key]
        entry.dropped = True


@contextmanager
def shared_runtime(env: Environment) -> Iterator[Runtime]:
    """The runtime of ``env`` like :func:`open_runtime`, but opened once per process and kept open
    for the next user: the steps of a run (preflight, rollout, health gate, release records...)
    share one engine client instead of each opening a connection and checking the engine again.

    A runtime whose engine stopped answering (:class:`~erpops.errors.TargetUnreachable`) or that
    failed unexpectedly is dropped, so the next user opens and checks it afresh.
    """
    key = _shared_key(env)
    if key is None:  # cannot tell environments apart: a runtime of its own
        with open_runtime(env) as runtime:
            yield runtime
        return
    with _shared_lock:
        entry = _shared.pop(key, None)
        if entry is not None:
            _shared[key] = entry  # most recently used last
            entry.users += 1
    if entry is None:
        runtime = open_runtime(env)  # outside the lock: reaching the engine may take a while
        with _shared_lock:
            entry = _shared.get(key)
            if entry is None:
                entry = _shared[key] = _Shared(runtime)
                spare = None
            else:  # another thread opened one meanwhile
                spare = runtime
            entry.users += 1
            while len(_shared) > SHARED_MAX:
                old = _shared.pop(next(iter(_shared)))
                old.dropped = True
                _release(old)
        if spare is not None:
            spare.close()
    try:
        yield entry.runtime
    except TargetUnreachable:
        _drop(key, entry)
        raise
    except ErpopsError:
        raise
    except BaseException:
        _drop(key, entry)
        raise
    finally:
        with _shared_lock:
            entry.users -= 1
            _release(entry)


@atexit.register
def close_shared_runtimes() -> None:
    """Close every shared runtime nobody is using (at exit; tests may call it too)."""
    with _shared_lock:
        entries = list(_shared.values())
        _shared.clear()
        for entry in entries:
            entry.dropped = True
            _release(entry)
