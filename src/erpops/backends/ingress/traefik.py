"""Traefik as erpops drives it: the dynamic configuration written atomically into the folder its
file provider watches (a temporary file beside the folder, then a rename: Traefik never reads a
half-written file), and its API read back until the routers are enabled and the services hold
exactly the servers written — the moment the new rotation serves.

No SDK: Traefik's API is plain HTTP JSON (``/api/http/routers``, ``/api/http/services``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from erpops.errors import ActionError, Unreachable

DYNAMIC_FILE = "erpops.yml"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def generation_of(text: str) -> str:
    """The generation marker of a rendering (a digest of it, so the same routes are the same generation)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_dynamic(directory: Path, text: str) -> Path:
    """``text`` into ``directory``/erpops.yml atomically: the temporary file is made in the parent
    folder (outside the watched one) and renamed in, so the watcher sees only whole files."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / DYNAMIC_FILE
    fd, tmp = tempfile.mkstemp(prefix=".erpops-dynamic.", dir=directory.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class TraefikAPI:
    """Traefik's API at ``url`` (``http://127.0.0.1:<api port>``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.requests = 0

    def get(self, path: str, timeout: float = 2.0) -> Any:
        self.requests += 1
        try:
            with _NO_PROXY.open(f"{self.url}{path}", timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise Unreachable(f"Traefik API {self.url}{path}: {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise Unreachable(f"Traefik API {self.url} does not answer ({exc})") from None

    def generation(self, middleware: str) -> str | None:
        """The generation marker Traefik has loaded (the ``X-Erpops-Generation`` of ``middleware``)."""
        m = self.get(f"/api/http/middlewares/{urllib.parse.quote(middleware)}@file")
        headers = ((m or {}).get("headers") or {}).get("customRequestHeaders") or {}
        value = headers.get("X-Erpops-Generation")
        return str(value) if value is not None else None

    def problems(
        self, routers: Sequence[str], services: Mapping[str, Sequence[str]], generation: tuple[str, str] | None = None
    ) -> list[str]:
        """What keeps the given file-provider routers and services from serving as written: the
        rendering not loaded yet (``generation``: middleware, marker), a router missing, disabled
        or in error, a service missing or with other servers."""
        found: list[str] = []
        if generation is not None:
            loaded = self.generation(generation[0])
            if loaded != generation[1]:
                return [f"Traefik still serves generation {loaded or '(none)'}, not {generation[1]}"]
        for name in routers:
            r = self.get(f"/api/http/routers/{urllib.parse.quote(name)}@file")
            if r is None:
                found.append(f"router {name} is not loaded")
            elif r.get("status") != "enabled" or r.get("error"):
                found.append(f"router {name} is {r.get('status')}: {'; '.join(r.get('error') or []) or 'no reason'}")
        for name, urls in services.items():
            s = self.get(f"/api/http/services/{urllib.parse.quote(name)}@file")
            if s is None:
                found.append(f"service {name} is not loaded")
                continue
            servers = sorted(x.get("url", "") for x in (s.get("loadBalancer") or {}).get("servers") or [])
            if servers != sorted(urls):
                found.append(f"service {name} serves {servers or 'nothing'}, not {sorted(urls) or 'nothing'}")
            if s.get("error"):
                found.append(f"service {name}: {'; '.join(s['error'])}")
        return found

    def wait_serving(
        self,
        routers: Sequence[str],
        services: Mapping[str, Sequence[str]],
        timeout: float = 15.0,
        *,
        generation: tuple[str, str] | None = None,
        where: str = "",
    ) -> float:
        """Until Traefik has loaded ``generation`` (middleware, marker) and serves ``routers`` and
        ``services`` exactly as written; returns the seconds waited. A configuration Traefik
        refuses (or does not load in ``timeout``) is an error naming what it says about each
        router and service."""
        start = time.monotonic()
        problems: list[str] = []
        while True:
            try:
                problems = self.problems(routers, services, generation)
            except Unreachable as exc:
                problems = [str(exc)]
            if not problems:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise ActionError(
                    f"Traefik did not take the configuration{' ' + where if where else ''} within {timeout:g}s: "
                    + "; ".join(problems)
                )
            time.sleep(0.02)
