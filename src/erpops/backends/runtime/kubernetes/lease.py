"""The environment lock on the cluster: a ``coordination.k8s.io/v1`` Lease.

Two engineers on two laptops sharing a cluster but no state database each have their own local
journal, so its lock cannot keep them apart; the Lease ``erpops-lock-<environment>`` in the
environment's namespace does. Its ``holderIdentity`` is the run id (annotations say who, where,
which runbook); the holder renews it every third of ``leaseDurationSeconds`` while the run lives;
another run takes it over only once it expired (a killed holder stops renewing). Every write
carries the resourceVersion it read, so two runs racing for it cannot both win (409).
Refusals are exit 4 with the same message as the state store's lock.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from erpops.backends.runtime.kubernetes.runtime import FIELD_MANAGER, _api_error, connect
from erpops.environments import Environment
from erpops.errors import Interrupted, Locked

PREFIX = "erpops.io/"


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def describe(environment: str, lease: Any, where: str) -> str:
    notes = lease.metadata.annotations or {}
    acquired = _parse(lease.spec.acquire_time)
    since = acquired.strftime("%Y-%m-%d %H:%M:%S UTC") if acquired else "?"
    return (
        f"environment {environment!r} is locked by run {lease.spec.holder_identity} "
        f"({notes.get(PREFIX + 'user', '?')}@{notes.get(PREFIX + 'host', '?')}, runbook "
        f"{notes.get(PREFIX + 'runbook', '?')}, since {since}; cluster Lease {where})"
    )


class LeaseLock:
    def __init__(self, env: Environment, run_id: str, runbook: str, duration: int) -> None:
        self.env = env
        self.api, _, self.namespace = connect(env)
        self.coord: Any = client.CoordinationV1Api(self.api)  # its models say every field may be None
        self.name = f"erpops-lock-{env.name}"
        self.identity = run_id
        self.runbook = runbook
        self.duration = duration
        self.where = f"{self.namespace}/{self.name}"
        self.lost = threading.Event()
        self.absent = False  # the namespace did not exist when the lock was taken

    def _namespace_missing(self) -> bool:
        try:
            client.CoreV1Api(self.api).read_namespace(self.namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    def _body(self, resource_version: str | None, transitions: int, acquired: datetime) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "labels": {PREFIX + "environment": self.env.name},
            "annotations": {
                PREFIX + "user": _who(),
                PREFIX + "host": socket.gethostname(),
                PREFIX + "pid": str(os.getpid()),
                PREFIX + "runbook": self.runbook,
            },
        }
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration,
                "acquireTime": _micro(acquired),
                "renewTime": _micro(_now()),
                "leaseTransitions": transitions,
            },
        }

    def try_acquire(self) -> Any:
        """None when this run holds the Lease now; else the Lease held by another run."""
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _api_error(exc, f"read the lock Lease {self.where}") from None
            try:
                body = self._body(None, 0, _now())
                self.coord.create_namespaced_lease(self.namespace, body, field_manager=FIELD_MANAGER)
                return None
            except ApiException as exc:
                if exc.status == 409:  # another run created it first
                    return self.coord.read_namespaced_lease(self.name, self.namespace)
                if exc.status == 404 and self._namespace_missing():
                    # Nothing of the environment exists on the cluster yet (provision creates its
                    # namespace): no other run can be working in it; the state store's lock holds.
                    self.absent = True
                    return None
                raise _api_error(exc, f"create the lock Lease {self.where}") from None
        spec = lease.spec
        renewed = _parse(spec.renew_time) or _parse(spec.acquire_time)
        expired = renewed is None or (_now() - renewed).total_seconds() > (spec.lease_duration_seconds or 0)
        if spec.holder_identity and spec.holder_identity != self.identity and not expired:
            return lease
        transitions = (spec.lease_transitions or 0) + (0 if spec.holder_identity == self.identity else 1)
        body = self._body(lease.metadata.resource_version, transitions, _now())
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, body, field_manager=FIELD_MANAGER)
        except ApiException as exc:
            if exc.status == 409:  # taken (or renewed) meanwhile
                return self.coord.read_namespaced_lease(self.name, self.namespace)
            raise _api_error(exc, f"take the lock Lease {self.where}") from None
        return None

    def renew(self, stop: threading.Event) -> None:
        if self.absent:
            return
        while not stop.wait(self.duration / 3):
            try:
                lease = self.coord.read_namespaced_lease(self.name, self.namespace)
                if lease.spec.holder_identity != self.identity:
                    self.lost.set()
                    return
                lease.spec.renew_time = _now()
                self.coord.replace_namespaced_lease(self.name, self.namespace, lease, field_manager=FIELD_MANAGER)
            except ApiException:
                continue  # tried again at the next tick; it expires only after three misses

    def release(self) -> None:
        if self.absent:
            return
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                self.coord.delete_namespaced_lease(
                    self.name, self.namespace,
                    body=client.V1DeleteOptions(preconditions=client.V1Preconditions(
                        resource_version=lease.metadata.resource_version)),
                )  # fmt: skip
        except ApiException:
            pass  # it expires by itself


@contextmanager
def environment_lease(
    env: Environment,
    *,
    run_id: str,
    runbook: str,
    wait: float | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[None]:
    """Hold the environment's Lease for the ``with`` block (exit 4 naming the holder at once or
    after ``wait`` seconds; exit 130 when ``cancel`` is set while waiting)."""
    lock = LeaseLock(env, run_id, runbook, env.runtime.lease_seconds)
    deadline = time.monotonic() + (wait or 0.0)
    try:
        while True:
            held = lock.try_acquire()
            if held is None:
                break
            if time.monotonic() >= deadline:
                waited = f" (waited {wait:g}s)" if wait else ""
                raise Locked(
                    describe(env.name, held, lock.where) + waited,
                    hint="wait for it with --wait DURATION; a killed holder's Lease expires after "
                    f"{held.spec.lease_duration_seconds}s",
                )
            if cancel is not None and cancel.wait(0.5):
                raise Interrupted(f"interrupted while waiting for the lock of environment {env.name!r}")
            if cancel is None:
                time.sleep(0.5)
        stop = threading.Event()
        renewer = threading.Thread(target=lock.renew, args=(stop,), daemon=True, name="erpops-lease")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            lock.release()
    finally:
        lock.api.close()
