"""``k8s-secret:namespace/name#key`` references, resolved through the environment's cluster API
(``k8s-secret:name#key``: in the environment's namespace). The value is registered for redaction
by :func:`erpops.secrets.resolve` like every secret; a missing Secret or key is an input error
(exit 2) naming the reference, never the value; a role that may not read it is exit 3."""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from erpops.backends.runtime.kubernetes.runtime import connect
from erpops.environments import Environment
from erpops.errors import Unreachable
from erpops.secrets import SecretReferenceError

_REF = re.compile(
    r"(?:(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/)?(?P<name>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)#(?P<key>[-._a-zA-Z0-9]+)"
)


def resolver_for(env: Environment) -> Callable[[str], str]:
    """A resolver bound to ``env``'s cluster (connected on first use, once)."""
    lock = threading.Lock()
    held: dict[str, Any] = {}

    def resolve(ref: str) -> str:
        m = _REF.fullmatch(ref)
        if m is None:
            raise SecretReferenceError(f"k8s-secret:{ref}: expected k8s-secret:namespace/name#key")
        with lock:
            if "api" not in held:
                held["api"], _, held["namespace"] = connect(env)
        namespace, name, key = m.group("ns") or held["namespace"], m.group("name"), m.group("key")
        try:
            secret = client.CoreV1Api(held["api"]).read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretReferenceError(f"k8s-secret:{ref}: no Secret {name} in namespace {namespace}") from None
            raise Unreachable(f"k8s-secret:{ref}: the cluster refused to read it ({exc.status} {exc.reason})") from None
        data = secret.data or {}
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise SecretReferenceError(f"k8s-secret:{ref}: Secret {namespace}/{name} has no key {key!r} (keys: {keys})")
        try:
            return base64.b64decode(data[key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SecretReferenceError(f"k8s-secret:{ref}: the value of key {key!r} is not UTF-8 text") from None

    return resolve
