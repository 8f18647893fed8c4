"""The environment's front on Docker: one Traefik container in front of the ingress service.

With an ``ingress:`` section, the environment gets ``<project>-traefik`` (image ``ingress.image``)
on the project network, publishing ``http_port`` (301 to HTTPS) and ``https_port`` on
``ingress.bind`` and its API on 127.0.0.1:``api_port``. Its configuration lives in a folder on the
engine's host (``ingress.config_dir``, default ``<runtime.config_dir>/traefik``),
mounted at ``/etc/traefik``: ``traefik.yml`` (static, from ``templates/traefik/traefik.yml.j2``),
``dynamic/erpops.yml`` (the routes, from ``templates/traefik/dynamic.yml.j2``), ``certs/``.

The instances *in rotation* are the servers of the routes: the ingress service's containers on
their HTTP port, and on Odoo's ``gevent_port`` for ``/websocket``. erpops rewrites the routes
atomically (temporary file beside the watched folder, then a rename) and reads Traefik's API
until it has loaded that rendering (its generation marker) with every router enabled and exactly
those servers: only then do new instances serve and old ones get stopped (after
``ingress.drain_seconds`` for the requests already sent to them; a retry middleware sends a
request whose connection was refused to another server). With no instance in rotation (a stopped
service) the front answers 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import docker
import docker.errors
import yaml
from docker.models.containers import Container
from pydantic import BaseModel, ConfigDict, ValidationError

from erpops import rendering
from erpops.backends.ingress.traefik import TraefikAPI, generation_of, write_dynamic
from erpops.backends.runtime.base import RuntimeMisconfigured, ServiceSpec
from erpops.errors import ActionError, validation_message
from erpops.files import state_dir, write_atomic

if TYPE_CHECKING:
    from erpops.environments import Environment, Ingress

# Typed Any on purpose: the Engine API accepts "unless-stopped" (and "no"), types-docker's
# _RestartPolicy lists only "always" and "on-failure".
RESTART_UNLESS_STOPPED: Any = {"Name": "unless-stopped"}
#: Where Traefik listens inside its container.
LISTEN = {"http": 80, "https": 443, "api": 8099}
IN_CONTAINER = "/etc/traefik"


def container_id(c: Container) -> str:
    """The id of a container the engine listed or created (the SDK types it optional)."""
    if c.id is None:
        raise RuntimeError("docker container without an id")
    return c.id


def container_name(c: Container) -> str:
    """The name of a container the engine listed or created (the SDK types it optional)."""
    return c.name or container_id(c)[:12]


def files_dir(env: Environment, project: str) -> Path:
    """The host folder of the files erpops renders for a Docker environment (``runtime.config_dir``)."""
    if env.runtime.config_dir:
        return Path(env.runtime.config_dir).expanduser()
    return state_dir() / "docker" / project


class FrontContainer(BaseModel):
    """The Traefik container as ``templates/docker/front.yml.j2`` renders it."""

    model_config = ConfigDict(extra="forbid")
    name: str
    image: str
    command: list[str]
    ports: dict[str, tuple[str, int]]
    volumes: dict[str, dict[str, str]]
    labels: dict[str, str] = {}
    restart: Literal["unless-stopped", "always", "on-failure", "no"] = "unless-stopped"


def config_dir(env: Environment, project: str) -> Path:
    """The host folder holding the front's configuration (mounted into Traefik)."""
    assert env.ingress is not None
    if env.ingress.config_dir:
        return Path(env.ingress.config_dir).expanduser()
    return files_dir(env, project) / "traefik"


class TraefikFront:
    """Mixed into :class:`~erpops.backends.runtime.docker.runtime.DockerRuntime`, which provides these."""

    client: docker.DockerClient
    project: str
    env: Environment
    public_host: str
    ensure_image: Callable[..., str]
    _network: Callable[[], str]
    _front_labels: Callable[[str], dict[str, str]]

    def _fronted(self, service: str) -> bool:
        """Whether ``service`` is the one behind the environment's ingress."""
        return self.env.ingress is not None and self.env.ingress.service == service

    def _front_url(self, service: str) -> str | None:
        """``https://<ingress host>[:port]`` for the ingress service, else None."""
        if not self._fronted(service):
            return None
        ingress = self._ingress
        port = "" if ingress.https_port == 443 else f":{ingress.https_port}"
        return f"https://{ingress.host}{port}"

    @property
    def _ingress(self) -> Ingress:
        assert self.env.ingress is not None
        return self.env.ingress

    @property
    def _front_name(self) -> str:
        return f"{self.project}-traefik"

    def front_api(self) -> TraefikAPI:
        return TraefikAPI(f"http://127.0.0.1:{self._ingress.api_port}")

    def _front_context(self, servers: dict[str, list[str]], generation: str) -> dict[str, Any]:
        tls = self._ingress.tls
        files = tls is not None and tls.cert_file is not None
        front = {
            "name": self.project,
            "listen": LISTEN,
            "dynamic_dir": f"{IN_CONTAINER}/dynamic",
            "state_dir": f"{IN_CONTAINER}/state",
            "servers": servers,
            "generation": generation,
            "cert_file": f"{IN_CONTAINER}/certs/tls.crt" if files else None,
            "key_file": f"{IN_CONTAINER}/certs/tls.key" if files else None,
            "drain_seconds": self._ingress.drain_seconds,
        }
        return {"env": self.env.as_template(), "front": front}

    def front_static_files(self, folder: Path) -> dict[Path, tuple[bytes, int]]:
        """The static configuration and certificate copies as they must be: path -> (bytes, mode)."""
        text = rendering.render("traefik/traefik.yml", self._front_context({"web": [], "websocket": []}, "")).text
        files = {folder / "traefik.yml": (text.encode(), 0o644)}
        tls = self._ingress.tls
        if tls is not None and tls.cert_file and tls.key_file:
            for source, name in ((tls.cert_file, "tls.crt"), (tls.key_file, "tls.key")):
                try:
                    data = Path(source).expanduser().read_bytes()
                except OSError as exc:
                    raise ActionError(f"ingress.tls: cannot read {source}: {exc.strerror}") from None
                files[folder / "certs" / name] = (data, 0o600)
        return files

    def _front_static(self, folder: Path) -> bool:
        """Write the static configuration and certificates; True when they changed."""
        changed = False
        for path, (data, mode) in self.front_static_files(folder).items():
            if not path.exists() or path.read_bytes() != data:
                write_atomic(path, data, mode)
                changed = True
        (folder / "state").mkdir(mode=0o700, exist_ok=True)
        return changed

    def front_servers(self, spec: ServiceSpec, members: Sequence[Container]) -> dict[str, list[str]]:
        """The routes' servers for ``members``: their HTTP port, and the gevent port for /websocket."""
        servers: dict[str, list[str]] = {"web": [], "websocket": []}
        for c in members:
            c.reload()
            ip = c.attrs["NetworkSettings"]["Networks"][self.project]["IPAddress"]
            servers["web"].append(f"http://{ip}:{spec.port}")
            servers["websocket"].append(f"http://{ip}:{self.env.odoo.gevent_port}")
        return servers

    def front_dynamic(self, servers: dict[str, list[str]]) -> tuple[str, str]:
        """(the routes' text, its generation marker) for ``servers``."""
        text = rendering.render("traefik/dynamic.yml", self._front_context(servers, "")).text
        generation = generation_of(text)
        return rendering.render("traefik/dynamic.yml", self._front_context(servers, generation)).text, generation

    def front_container_spec(self, folder: Path) -> FrontContainer:
        """The Traefik container as ``templates/docker/front.yml.j2`` renders it (a user's template
        of that name may add labels or arguments); a rendering that is not such a container is a
        template error naming the file."""
        context = {
            "env": self.env.as_template(),
            "front": {"container": self._front_name, "in_container": IN_CONTAINER, "listen": LISTEN,
                      "folder": str(folder)},
        }  # fmt: skip
        done = rendering.render("docker/front.yml", context)
        try:
            return FrontContainer.model_validate(yaml.safe_load(done.text))
        except (yaml.YAMLError, ValidationError) as exc:
            if isinstance(exc, ValidationError):
                first = exc.errors()[0]
                reason = ".".join(str(p) for p in first["loc"]) + ": " + validation_message(first)
            else:
                reason = str(exc).splitlines()[0]
            raise rendering.TemplateFailed(f"{done.source}: not a front container: {reason}") from None

    def _front_container(self, folder: Path, restart: bool) -> Container:
        """The Traefik container, created (and started) when missing; restarted when ``restart``."""
        ingress = self._ingress
        try:
            front = self.client.containers.get(self._front_name)
        except docker.errors.NotFound:
            spec = self.front_container_spec(folder)
            self.ensure_image(spec.image)
            front = self.client.containers.create(
                spec.image,
                command=spec.command,
                name=spec.name,
                labels={**spec.labels, **self._front_labels(ingress.service)},
                ports=dict(spec.ports),
                volumes=spec.volumes,
                network=self._network(),
                init=True,
                restart_policy=cast(Any, {"Name": spec.restart}),
                detach=True,
            )
            restart = False
        if front.status != "running":
            try:
                front.start()
            except docker.errors.APIError as exc:
                said = str(exc.explanation or exc)
                if "already allocated" in said or "address already in use" in said:
                    ports = f"{ingress.http_port}, {ingress.https_port}, api {ingress.api_port}"
                    raise RuntimeMisconfigured(
                        f"the front {self._front_name} cannot start: a port of ingress: ({ports}) is taken: {said}"
                    ) from None
                raise ActionError(f"the front {self._front_name} cannot start: {said}") from None
        elif restart:
            front.restart(timeout=10)
        return front

    def _front_set(self, service: str, spec: ServiceSpec, members: Sequence[Container]) -> None:
        """Put exactly ``members`` in rotation; return once Traefik serves them (and only them)."""
        assert spec.port is not None, "the ingress service needs a port"
        folder = config_dir(self.env, self.project)
        (folder / "dynamic").mkdir(parents=True, exist_ok=True)
        restart = self._front_static(folder)
        servers = self.front_servers(spec, members)
        text, generation = self.front_dynamic(servers)
        write_dynamic(folder / "dynamic", text)
        self._front_container(folder, restart)
        n = self.project
        self.front_api().wait_serving(
            [f"{n}-web", f"{n}-websocket", f"{n}-database-manager"],
            {f"{n}-web": servers["web"], f"{n}-websocket": servers["websocket"]},
            timeout=30.0,
            generation=(f"{n}-generation", generation),
            where=f"(front {self._front_name}: docker logs {self._front_name})",
        )

    def _front_check_tls(self, url: str | None) -> dict[str, Any]:
        """How to check ``url`` over TLS: through the front, trusting its certificate file (or the
        system's CAs for ACME); Traefik's own self-signed default certificate is not verified."""
        front = self._front_url(self._ingress.service) if self.env.ingress else None
        if not url or not front or not url.startswith(front):
            return {}
        tls = self._ingress.tls
        return {"cafile": tls.cert_file if tls else None, "verify": tls is not None}

    def _front_drain(self) -> None:
        """Time for the requests already sent to instances leaving rotation to finish."""
        if self.env.ingress is not None and self.env.ingress.drain_seconds > 0:
            time.sleep(self.env.ingress.drain_seconds)
