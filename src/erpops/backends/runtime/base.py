"""The runtime interface: what erpops needs from Docker or Kubernetes to run Odoo.

A runtime runs an environment's *services* (``web``, ``worker``, ``cron``...), each a set of
identical instances (containers, or a Deployment's pods) of one image. Services are declared in
the environment::

    runtime:
      kind: docker
      services:
        web:
          port: 8069                 # container port answering HTTP; health_path is checked on it
          replicas: 2
          command: [odoo, --workers=4]
          env: {PGHOST: db.internal}
        worker: {replicas: 1, command: [odoo, --max-cron-threads=0]}
        cron: {replicas: 1, command: [odoo, --workers=0, --max-cron-threads=2]}

Every operation below is specified for both implementations:

================  ==========================================  ===========================================
operation         Docker                                      Kubernetes
================  ==========================================  ===========================================
``current``       containers found by their erpops.* labels   Deployments' images, replicas, readyReplicas
``deploy``        start new, wait healthy, switch, stop old   patch the image, wait for the rollout
                                                              (maxUnavailable 0)
``health``        container health + GET ``health_path``      readiness + GET ``health_path``
``scale``         start/stop containers                       patch ``spec.replicas``
``stop``          stop every container (kept, not removed)    scale to 0, replicas kept in an annotation
``run_once``      one-off container, removed afterwards       a Job, deleted afterwards
``restart``       replace every container (rolling)           rollout restart (annotation)
``set_env``       replace containers with the new env         patch the env, wait for the rollout
================  ==========================================  ===========================================

``deploy``, ``restart``, ``set_env`` and ``scale`` up are all-or-nothing: when a new instance does not
become healthy, the new instances are removed and the previous ones, which never stopped serving,
are left as they were; :class:`DeployFailed` says why and when the verdict was reached.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from erpops.environments import Environment
from erpops.errors import ActionError, Unreachable, validation_message

# the settings of a service are part of the configuration schema; re-exported as the interface's
from erpops.service_spec import DockerServiceSpec as DockerServiceSpec
from erpops.service_spec import HealthcheckSpec as HealthcheckSpec
from erpops.service_spec import ServiceSpec as ServiceSpec
from erpops.service_spec import deprecation_notice as deprecation_notice


# --- errors --------------------------------------------------------------------------------------
class ImageNotFound(Unreachable):
    """The image is neither on the engine/registry nor pullable: exit 3, nothing changed."""


class UnknownService(Unreachable):
    """The service is not declared in the environment's ``runtime.services``: exit 3."""


class RuntimeMisconfigured(Unreachable):
    """The environment's runtime section cannot be used (no runtime, bad service settings): exit 3."""


class DeployFailed(ActionError):
    """New instances did not become healthy; they were removed and the previous ones kept serving.

    ``verdict_at`` is the ``time.monotonic()`` instant the failure was decided (for the
    verdict-to-serving measurement), ``restored_at`` when the previous state was whole again.
    """

    def __init__(self, message: str, *, service: str, image: str, verdict_at: float, restored_at: float) -> None:
        super().__init__(message)
        self.service = service
        self.image = image
        self.verdict_at = verdict_at
        self.restored_at = restored_at


# --- service settings ----------------------------------------------------------------------------
# (the settings of a service, ServiceSpec and its parts, live in erpops.service_spec)


def service_specs(env: Environment) -> dict[str, ServiceSpec]:
    """Parse ``env.runtime.services``; a bad entry is a misconfigured environment (exit 3)."""
    specs: dict[str, ServiceSpec] = {}
    for name, raw in env.runtime.services.items():
        try:
            specs[name] = spec = ServiceSpec.model_validate(raw or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RuntimeMisconfigured(
                f"environment {env.name!r}: runtime.services.{name}.{where}: {validation_message(first)}"
            ) from None
        for old, new in spec.moved:
            deprecation_notice(
                f"environment {env.name!r}: runtime.services.{name}.{old} is now runtime.services.{name}.{new} "
                "(docs/configuration.md)"
            )
    return specs


# --- what a runtime reports ----------------------------------------------------------------------
@dataclass(frozen=True)
class Instance:
    """One container (Docker) or pod (Kubernetes) of a service."""

    id: str
    name: str
    image: str
    release: str
    state: str  # running | created | restarting | exited | ...
    health: str  # healthy | unhealthy | starting | none
    endpoint: str | None = None  # http://host:port erpops can reach, when the service has a port

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class ServiceState:
    """A service as its runtime sees it now.

    ``desired``: instances the runtime is to run (Kubernetes: ``spec.replicas``; Docker: the running
    ones, as erpops's operations leave them). ``revision``: what the service is rolled to (Kubernetes:
    the Deployment's revision; Docker: the release label of its newest instance). ``updated``:
    instances at that revision; ``ready``: instances that pass their health check. A rollout is
    complete when ``updated == ready == desired`` and no older instance runs."""

    name: str
    instances: tuple[Instance, ...] = ()
    desired: int = 0
    updated: int = 0
    ready: int = 0
    revision: str | None = None

    @classmethod
    def of_instances(cls, name: str, instances: Sequence[Instance]) -> ServiceState:
        """The counts of a runtime whose instances are all there is (Docker): desired = running,
        revision = the newest running instance's release (``instances`` oldest first)."""
        running = [i for i in instances if i.running]
        revision = running[-1].release if running else None
        return cls(
            name,
            tuple(instances),
            desired=len(running),
            updated=sum(1 for i in running if i.release == revision),
            ready=sum(1 for i in running if i.health in ("healthy", "none")),
            revision=revision,
        )

    @property
    def rolled_out(self) -> bool:
        """Every desired instance is at the revision and ready, and nothing older runs."""
        return self.updated == self.ready == self.desired == len(self.running)

    @property
    def running(self) -> list[Instance]:
        return [i for i in self.instances if i.running]

    @property
    def replicas(self) -> int:
        return len(self.running)

    @property
    def healthy(self) -> int:
        return sum(1 for i in self.running if i.health in ("healthy", "none"))

    @property
    def images(self) -> list[str]:
        return sorted({i.image for i in self.running})

    @property
    def image(self) -> str | None:
        """The image every running instance runs; None when there is none or a mix."""
        images = self.images
        return images[0] if len(images) == 1 else None

    @property
    def release(self) -> str | None:
        releases = {i.release for i in self.running}
        return releases.pop() if len(releases) == 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "images": self.images,
            "release": self.release,
            "replicas": self.replicas,
            "healthy": self.healthy,
            "desired": self.desired,
            "updated": self.updated,
            "ready": self.ready,
            "revision": self.revision,
            "instances": [asdict(i) for i in self.instances],
        }


@dataclass(frozen=True)
class Release:
    """What runs now: one state per declared service (and any found running)."""

    environment: str
    services: dict[str, ServiceState] = field(default_factory=dict)

    @property
    def images(self) -> dict[str, str | None]:
        return {name: s.image for name, s in self.services.items()}

    @property
    def replicas(self) -> dict[str, int]:
        return {name: s.replicas for name, s in self.services.items()}

    @property
    def release(self) -> str | None:
        """The release label shared by every running instance, if there is one."""
        releases = {i.release for s in self.services.values() for i in s.running}
        return releases.pop() if len(releases) == 1 else None


@dataclass(frozen=True)
class ImageCheck:
    """What a runtime knows of an image before instances run it.

    ``present``: on the engine (``id`` set); ``pulled``: it was missing and was pulled; ``unverified``:
    not known until an instance pulls it (a cluster cannot look into its nodes' image stores: the
    rollout's own progress says). A runtime that knows the image is missing raises
    :class:`ImageNotFound` instead."""

    image: str
    status: Literal["present", "pulled", "unverified"]
    id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class HealthReport:
    service: str
    healthy: bool
    replicas: int
    healthy_replicas: int
    url: str | None
    http_status: int | None
    detail: str
    seconds: float


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    log_tail: str
    seconds: float


@dataclass(frozen=True)
class DeployResult:
    service: str
    image: str
    previous_image: str | None
    release: str
    replicas: int
    seconds: float
    changed: bool = True


# --- HTTP check ----------------------------------------------------------------------------------
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _tls_opener(cafile: str | None, verify: bool) -> urllib.request.OpenerDirector:
    """An opener (no proxies) trusting the system's CAs plus ``cafile`` (a certificate trusted as
    it is, chain or not), or verifying nothing when not ``verify``."""
    if verify:
        context = ssl.create_default_context()
        if cafile:
            context.load_verify_locations(cafile=os.path.expanduser(cafile))
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))


def http_check(
    url: str, timeout: float = 2.0, *, cafile: str | None = None, verify: bool = True
) -> tuple[int | None, str]:
    """GET ``url`` (redirects followed, proxies ignored). Returns (status or None, short detail).

    Healthy means HTTP 200 and, when the body is JSON with a ``status``, ``"pass"`` (Odoo's
    ``/web/health`` answers ``{"status": "pass"}``). HTTPS trusts the system's CAs and ``cafile``;
    ``verify=False`` checks nothing of the certificate (a front's own self-signed one).
    """
    opener = _NO_PROXY if (cafile is None and verify) else _tls_opener(cafile, verify)
    try:
        with opener.open(url, timeout=timeout) as resp:
            body = resp.read(4096)
            status = resp.status
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} from {url}"
    except (OSError, ValueError) as exc:
        return None, f"no answer from {url}: {getattr(exc, 'reason', exc)}"
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "status" in doc and doc["status"] != "pass":
        return 599, f"{url} answered status {doc['status']!r}"
    return status, f"HTTP {status} from {url}"


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Call ``predicate()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- the interface -------------------------------------------------------------------------------
class Runtime(ABC):
    """One environment's runtime. Open with :func:`open_runtime`; use as a context manager."""

    kind: str = ""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.specs = service_specs(env)
        #: what the runtime changed beside the instances (a Kubernetes autoscaler...), for the log
        self.notes: list[str] = []

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spec(self, service: str) -> ServiceSpec:
        """The service's settings; :class:`UnknownService` (exit 3) when it is not declared."""
        try:
            return self.specs[service]
        except KeyError:
            known = ", ".join(self.specs) or "none"
            raise UnknownService(
                f"service {service!r} is not defined in environment {self.env.name!r} (runtime.services: {known})"
            ) from None

    def default_image(self, service: str) -> str | None:
        return self.spec(service).image or self.env.odoo.image

    @abstractmethod
    def describe(self) -> str:
        """Where the runtime is (engine URL, cluster context/namespace), for messages."""

    @abstractmethod
    def current(self) -> Release:
        """What runs now, found on the runtime itself (no local state)."""

    def service_state(self, service: str) -> ServiceState:
        self.spec(service)
        return self.current().services.get(service, ServiceState(service))

    @abstractmethod
    def check_image(self, image: str, *, pull: bool = False) -> ImageCheck:
        """Whether ``image`` can run: present, pulled (when ``pull``) or not known until pulled;
        :class:`ImageNotFound` (exit 3) when the runtime knows it is missing."""

    @abstractmethod
    def deploy(
        self,
        service: str,
        image: str,
        *,
        release: str,
        timeout: float = 300.0,
        env: Mapping[str, str | None] | None = None,
        replicas: int | None = None,
    ) -> DeployResult:
        """Replace the service's instances with ``image`` (all-or-nothing, never zero healthy).

        ``env`` adds (or, with None, removes) environment variables of the instances. ``replicas``:
        how many instances to run; default as many as run now, else as many as were stopped
        (:meth:`stop`), else the declared ``replicas``.
        """

    @abstractmethod
    def health(self, service: str, timeout: float = 60.0, *, url: str | None = None) -> HealthReport:
        """Wait up to ``timeout`` for every instance healthy and, through ``url`` (default: the
        service's ``health_url``, else the runtime's own way in, such as Docker's front), the
        service answering 200 as its users reach it."""

    def health_url(self, service: str) -> str | None:
        """Where the service is reached as its users reach it, for health checks (``health_url``
        of the service; a runtime may know a better default)."""
        return self.spec(service).health_url

    @abstractmethod
    def scale(self, service: str, replicas: int, *, timeout: float = 300.0) -> ServiceState:
        """Run exactly ``replicas`` instances (new ones healthy before they count)."""

    @abstractmethod
    def stop(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        """Stop every instance of the service (nothing serves); they are kept, so a later
        :meth:`deploy` or :meth:`start` knows their count and environment."""

    def start(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        """Run a stopped service again: its last image, as many instances as were stopped, the same
        environment, healthy before this returns (all-or-nothing like :meth:`deploy`)."""
        state = self.service_state(service)
        image = state.image or (state.instances[-1].image if state.instances else None) or self.default_image(service)
        if image is None:
            raise RuntimeMisconfigured(f"service {service!r} has no image to start (image in runtime.services)")
        release = state.revision or (state.instances[-1].release if state.instances else "") or "start"
        self.deploy(service, image, release=release, timeout=timeout)
        return self.service_state(service)

    @abstractmethod
    def run_once(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 3600.0,
        service: str | None = None,
    ) -> RunResult:
        """Run ``command`` once in a new instance of ``image`` (with ``service``'s env and network)."""

    @abstractmethod
    def restart(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        """Rolling restart: fresh instances of the same image and env, old ones stopped after."""

    @abstractmethod
    def set_env(self, service: str, values: Mapping[str, str | None], *, timeout: float = 300.0) -> ServiceState:
        """Change environment variables of the service's instances (rolling, like deploy)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
