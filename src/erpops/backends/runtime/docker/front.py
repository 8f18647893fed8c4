"""The managed front proxy of a Docker service (``front: {image, port}``).

One nginx container, ``<project>-<service>-front``, publishes the service's stable port and
balances over the instances *in rotation*. erpops writes the upstream list to
``/etc/nginx/conf.d/erpops.conf`` and reloads nginx (SIGHUP, graceful); a generation marker
served at ``/.erpops/front-generation`` says when the new configuration is live, and the old
worker processes (seen with ``docker top``, nothing needed in the image) are waited for, so an
instance leaves rotation before it is stopped and no request is cut. With no instance in
rotation (a stopped service) the front answers 502.
"""

from __future__ import annotations

import io
import tarfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
from docker.models.containers import Container

from erpops.backends.runtime.base import ServiceSpec, wait_until
from erpops.errors import ActionError

# Typed Any on purpose: the Engine API accepts "unless-stopped", types-docker's _RestartPolicy lists
# only "always" and "on-failure".
RESTART_UNLESS_STOPPED: Any = {"Name": "unless-stopped"}


def container_id(c: Container) -> str:
    """The id of a container the engine listed or created (the SDK types it optional)."""
    if c.id is None:
        raise RuntimeError("docker container without an id")
    return c.id


def container_name(c: Container) -> str:
    """The name of a container the engine listed or created (the SDK types it optional)."""
    return c.name or container_id(c)[:12]


if TYPE_CHECKING:
    from erpops.environments import Environment

FRONT_CONF_DIR = "/etc/nginx/conf.d"
FRONT_CONF = "erpops.conf"
GENERATION_PATH = "/.erpops/front-generation"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FrontProxy:
    """Mixed into :class:`~erpops.backends.docker_runtime.DockerRuntime`, which provides these."""

    client: docker.DockerClient
    project: str
    env: Environment
    public_host: str
    ensure_image: Callable[..., str]
    _network: Callable[[], str]
    _front_labels: Callable[[str], dict[str, str]]

    def _front_url(self, spec: ServiceSpec) -> str | None:
        if spec.docker.front is None:
            return None
        host = spec.docker.front.bind if spec.docker.front.bind not in ("0.0.0.0", "", "::") else self.public_host
        return f"http://{host}:{spec.docker.front.port}"

    def _front_conf(self, service: str, spec: ServiceSpec, members: Sequence[Container], generation: str) -> str:
        assert spec.docker.front is not None and spec.port is not None
        servers = []
        for c in members:
            c.reload()
            ip = c.attrs["NetworkSettings"]["Networks"][self.project]["IPAddress"]
            servers.append(f"    server {ip}:{spec.port} max_fails=0;  # {c.name}")
        if not servers:
            servers.append("    server 127.0.0.1:9 down;  # no instance in rotation")
        upstream = f"erpops_{self.project}_{service}".replace("-", "_")
        return "\n".join(
            [
                f"# Written by erpops for {self.env.name}/{service}; rewritten at every deploy, scale or restart.",
                f"upstream {upstream} {{",
                *servers,
                "}",
                "server {",
                f"    listen {spec.docker.front.port};",
                f"    location = {GENERATION_PATH} {{ return 200 '{generation}'; }}",
                "    location / {",
                f"        proxy_pass http://{upstream};",
                "        proxy_next_upstream error timeout http_502 http_503;",
                "        proxy_connect_timeout 5s;",
                "        proxy_read_timeout 720s;",
                "        proxy_set_header Host $http_host;",
                "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                "        proxy_set_header X-Forwarded-Proto $scheme;",
                "        proxy_set_header X-Forwarded-Host $http_host;",
                "    }",
                "}",
                "",
            ]
        )

    def _front_set(self, service: str, spec: ServiceSpec, members: Sequence[Container]) -> None:
        """Put exactly ``members`` in rotation; return once the proxy's old workers have finished."""
        assert spec.docker.front is not None
        front_name = f"{self.project}-{service}-front"
        generation = str(time.time_ns())
        data = self._front_conf(service, spec, members, generation).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(FRONT_CONF)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        try:
            front = self.client.containers.get(front_name)
        except docker.errors.NotFound:
            self.ensure_image(spec.docker.front.image)
            front = self.client.containers.create(
                spec.docker.front.image,
                name=front_name,
                labels=self._front_labels(service),
                ports={f"{spec.docker.front.port}/tcp": (spec.docker.front.bind, spec.docker.front.port)},
                network=self._network(),
                init=True,
                restart_policy=RESTART_UNLESS_STOPPED,
                detach=True,
            )
        front.put_archive(FRONT_CONF_DIR, buf.getvalue())
        old_workers: set[str] = set()
        if front.status == "running":
            old_workers = self._front_workers(front)
            front.kill(signal="SIGHUP")
        else:
            front.start()
        url = f"{self._front_url(spec)}{GENERATION_PATH}"

        def loaded() -> bool:
            try:
                with _NO_PROXY.open(url, timeout=1.0) as resp:
                    return bool(resp.read().decode().strip() == generation)
            except (OSError, ValueError):
                return False

        if not wait_until(loaded, 15.0, 0.02):
            raise ActionError(
                f"front proxy {front_name} did not load its new configuration within 15s (docker logs {front_name})"
            )
        # Old workers keep accepting until the master tells them to quit, then finish their
        # requests: the old upstreams are in use until every one of them has exited.
        wait_until(lambda: not (old_workers & self._front_workers(front)), spec.docker.front.drain_timeout, 0.02)

    @staticmethod
    def _front_workers(front: Container) -> set[str]:
        """PIDs of the proxy's worker processes (``docker top``; nothing needed in the image)."""
        top = front.top()
        titles = top.get("Titles") or []
        pid_col = titles.index("PID") if "PID" in titles else 1
        return {str(p[pid_col]) for p in top.get("Processes") or [] if "worker process" in " ".join(map(str, p))}
