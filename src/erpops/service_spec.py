"""The settings of one entry of ``runtime.services`` in erpops.yaml — what every runtime reads
(image, replicas, port, health, command, env, volumes...) and, under ``docker:``, what only the
Docker runtime reads. Part of the configuration schema: :mod:`erpops.environments` checks every
entry with it when erpops.yaml is read (file:line), the runtimes parse it again
(:func:`erpops.backends.runtime.base.service_specs`). No SDK is imported here.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class HealthcheckSpec(BaseModel):
    """Health check timing of every instance (Docker HEALTHCHECK, Kubernetes probes): an HTTP GET
    of ``health_path``. (``test``, a Docker CMD-SHELL, is ``docker.healthcheck_test`` now.)"""

    model_config = ConfigDict(extra="forbid")
    interval: float = 1.0
    timeout: float = 3.0
    retries: int = 3
    start_period: float = 30.0


class DockerServiceSpec(BaseModel):
    """``runtime.services.<name>.docker``: what only the Docker runtime reads."""

    model_config = ConfigDict(extra="forbid")
    #: Replaced by the environment's ``ingress:`` (Traefik): given, it is refused with where to go.
    front: Any = None
    #: The container's HEALTHCHECK test (``[CMD-SHELL, ...]``); default: a GET of ``health_path``.
    healthcheck_test: list[str] | None = None
    #: Where each instance's port is published (on an ephemeral host port): erpops's own checks.
    publish_bind: str = "127.0.0.1"
    #: Seconds an instance gets to stop.
    stop_timeout: int = 10

    @field_validator("front")
    @classmethod
    def _front_replaced(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "the nginx front (docker.front) was replaced by the environment's Traefik front: remove it and "
                "give the environment an `ingress:` section (host, ports, TLS; docs/configuration.md, Ingress)"
            )
        return value


#: Docker-only keys accepted at the service level before they moved under ``docker:`` (same names).
_DOCKER_KEYS = ("front", "publish_bind", "stop_timeout")
_notified: set[str] = set()


def deprecation_notice(message: str) -> None:
    """One line on stderr, once per process for each message (a setting spelled the old way)."""
    if message not in _notified:
        _notified.add(message)
        print(f"erpops: deprecated: {message}", file=sys.stderr)


class ServiceSpec(BaseModel):
    """One entry of ``runtime.services``. An unknown key is an error (a typo such as ``replicaz``
    must not run with the default); free values for templates go under ``vars``."""

    model_config = ConfigDict(extra="forbid")
    image: str | None = None
    replicas: int = Field(default=1, ge=0)
    port: int | None = None
    health_path: str = "/web/health"
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    #: Mounts: host directory or named volume -> path in the instance, ``:ro`` for read-only —
    #: Odoo's data_dir (the filestore outlives every container), odoo.conf. Mounted into the
    #: one-off runs of the service too (``odoo -u`` writes asset attachments to the filestore).
    #: Kubernetes: the Deployment's own volumes.
    volumes: dict[str, str] = Field(default_factory=dict)
    healthcheck: HealthcheckSpec = Field(default_factory=HealthcheckSpec)
    #: A URL that reaches the service as its users do (a front, a Service proxy, an ingress):
    #: health checks go there as well as to each instance. Docker's managed front is used when unset.
    health_url: str | None = None
    #: Docker-only settings (front, healthcheck_test, publish_bind, stop_timeout).
    docker: DockerServiceSpec = Field(default_factory=DockerServiceSpec)
    #: A service without health check counts as healthy once running this long.
    min_ready_seconds: float = 0.5
    #: Odoo processes per instance and connections per process (scale-for-peak headroom).
    workers: int | None = None
    db_maxconn: int | None = None
    #: Free values for templates (``env.runtime.services.<name>.vars.x``); erpops reads none of them.
    vars: dict[str, Any] = Field(default_factory=dict)
    #: Keys given in their old place (set by the parser, for the deprecation notice).
    moved: list[tuple[str, str]] = Field(default_factory=list, alias="__moved__", exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _docker_keys_moved(cls, data: Any) -> Any:
        """The old spelling (``front``, ``publish_bind``, ``stop_timeout``, ``healthcheck.test`` at
        the service level) still works; :func:`service_specs` says where it moved."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        docker = dict(data.get("docker") or {})
        moved = []
        for key in _DOCKER_KEYS:
            if key in data:
                docker.setdefault(key, data.pop(key))
                moved.append((key, f"docker.{key}"))
        hc = data.get("healthcheck")
        if isinstance(hc, dict) and "test" in hc:
            hc = dict(hc)
            docker.setdefault("healthcheck_test", hc.pop("test"))
            data["healthcheck"] = hc
            moved.append(("healthcheck.test", "docker.healthcheck_test"))
        if moved:
            data["docker"] = docker
            data["__moved__"] = moved
        return data

    @field_validator("volumes")
    @classmethod
    def _mount_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for source, target in value.items():
            path, _, mode = target.partition(":")
            if not path.startswith("/") or mode not in ("", "ro", "rw"):
                raise ValueError(f"volume {source!r}: give an absolute path in the instance, optionally :ro or :rw")
        return value
