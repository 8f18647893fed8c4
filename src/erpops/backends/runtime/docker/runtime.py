"""Docker runtime: an environment's services as labelled containers on one engine.

erpops keeps no local state about containers: it finds them again by their labels.

- **Containers** are named ``<project>-<service>-<6 hex>`` (``project`` is ``runtime.project``,
  default ``erpops-<env>``) and labelled ``erpops.environment``, ``erpops.service``,
  ``erpops.release``, ``erpops.image``, ``erpops.role`` (``service``, ``run-once`` or ``front``) and
  ``erpops.env-keys`` (the environment variables erpops set, so a replacement carries them over
  without taking the old image's own variables along). They run with an init process, restart
  policy ``unless-stopped``, on the user-defined bridge network ``<project>``.
- **Ports.** Every instance of a service with a ``port`` publishes it on an ephemeral host port of
  ``publish_bind`` (default 127.0.0.1): that is where erpops checks ``health_path`` on each new
  container before it takes traffic, and old and new containers can coexist during a replacement.
- **Front.** With an ``ingress:`` section, the ingress service (``web``) is served through one
  Traefik container, ``<project>-traefik`` (:mod:`.front`): new instances join the rotation only
  once healthy, old ones leave it before they are stopped; clients of the front see no failed
  request during a deploy, a scale or a restart.
- **Health.** Instances of a service with a ``port`` get a Docker health check (``healthcheck``;
  default: ``wget``/``curl`` of ``http://127.0.0.1:<port><health_path>`` inside the container); a new
  instance is ready when Docker says healthy *and* erpops's own GET of ``health_path`` answers 200.
  It has failed as soon as Docker says unhealthy, it exits or restarts, or it answers 5xx three
  times in a row.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from erpops.backends.runtime.base import (
    DeployFailed,
    DeployResult,
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
    http_check,
    wait_until,
)
from erpops.backends.runtime.docker.front import RESTART_UNLESS_STOPPED, TraefikFront, container_id, container_name
from erpops.environments import Environment
from erpops.errors import ActionError, StepTimeout, TargetUnreachable

LABEL_ENV = "erpops.environment"
LABEL_SERVICE = "erpops.service"
LABEL_RELEASE = "erpops.release"
LABEL_IMAGE = "erpops.image"
LABEL_ROLE = "erpops.role"
LABEL_ENV_KEYS = "erpops.env-keys"
POLL = 0.1
FAILING_5XX = 3  # consecutive 5xx answers that fail a new instance

F = TypeVar("F", bound=Callable[..., Any])


def _engine_errors(fn: F) -> F:
    """Turn the SDK's connection and API errors into erpops errors naming the engine."""

    @functools.wraps(fn)
    def wrapper(self: DockerRuntime, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise self.unreachable(exc) from None
        except docker.errors.APIError as exc:
            raise ActionError(f"Docker engine at {self.base_url} refused: {exc.explanation or exc}") from None

    return cast(F, wrapper)  # functools.wraps keeps fn's signature: the wrapper is an F


def _mounts(spec: ServiceSpec) -> dict[str, dict[str, str]]:
    """The service's ``volumes`` in the docker SDK's form."""
    out = {}
    for source, target in spec.volumes.items():
        path, _, mode = target.partition(":")
        out[source] = {"bind": path, "mode": mode or "rw"}
    return out


class DockerRuntime(TraefikFront, Runtime):
    kind = "docker"

    def __init__(self, env: Environment, *, client: docker.DockerClient | None = None) -> None:
        super().__init__(env)
        self.base_url = env.runtime.host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.project = env.runtime.project or f"erpops-{env.name}"
        parsed = urllib.parse.urlparse(self.base_url)
        remote = parsed.hostname if parsed.scheme in ("tcp", "http", "https") else None
        self.public_host = remote or "127.0.0.1"
        try:
            self.client = client or docker.DockerClient(base_url=self.base_url, version="auto", timeout=120)
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self.unreachable(exc) from None
        self._failing: dict[str, int] = {}

    def unreachable(self, exc: BaseException) -> TargetUnreachable:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return TargetUnreachable(
            f"Docker engine not reachable at {self.base_url}: {reason}",
            hint="start dockerd, or set DOCKER_HOST / runtime.host to the engine",
        )

    def describe(self) -> str:
        return f"Docker engine at {self.base_url} (project {self.project})"

    def _front_labels(self, service: str) -> dict[str, str]:
        return {LABEL_ENV: self.env.name, LABEL_SERVICE: service, LABEL_ROLE: "front"}

    def close(self) -> None:
        self.client.close()

    # --- finding containers ----------------------------------------------------------------------
    def _containers(self, role: str = "service", service: str | None = None) -> list[Container]:
        labels = [f"{LABEL_ENV}={self.env.name}", f"{LABEL_ROLE}={role}"]
        if service is not None:
            labels.append(f"{LABEL_SERVICE}={service}")
        found = self.client.containers.list(all=True, filters={"label": labels})
        return sorted(found, key=lambda c: c.attrs.get("Created", ""))

    def _instance(self, c: Container) -> Instance:
        state = c.attrs.get("State", {})
        health = (state.get("Health") or {}).get("Status", "none")
        spec = self.specs.get(c.labels.get(LABEL_SERVICE, ""))
        return Instance(
            id=container_id(c),
            name=container_name(c),
            image=c.labels.get(LABEL_IMAGE, ""),
            release=c.labels.get(LABEL_RELEASE, ""),
            state="restarting" if state.get("Restarting") else state.get("Status", "unknown"),
            health=health,
            endpoint=self._endpoint(c, spec.port) if spec and spec.port else None,
        )

    def _endpoint(self, c: Container, port: int) -> str | None:
        bindings = (c.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for b in bindings:
            host = b.get("HostIp") or ""
            if host in ("", "0.0.0.0", "::"):
                host = self.public_host
            if ":" not in host:
                return f"http://{host}:{b['HostPort']}"
        return None

    @_engine_errors
    def current(self) -> Release:
        groups: dict[str, list[Instance]] = {name: [] for name in self.specs}
        for c in self._containers():
            groups.setdefault(c.labels.get(LABEL_SERVICE, ""), []).append(self._instance(c))
        return Release(self.env.name, {n: ServiceState.of_instances(n, i) for n, i in groups.items()})

    def _running(self, service: str) -> list[Container]:
        return [c for c in self._containers(service=service) if c.status == "running"]

    def _env_of(self, c: Container) -> dict[str, str]:
        keys = [k for k in c.labels.get(LABEL_ENV_KEYS, "").split(",") if k]
        values = dict(item.split("=", 1) for item in c.attrs["Config"].get("Env") or [] if "=" in item)
        return {k: values[k] for k in keys if k in values}

    def health_url(self, service: str) -> str | None:
        """The service's ``health_url``, else its managed front's ``health_path``."""
        spec = self.spec(service)
        front_url = self._front_url(service)
        return spec.health_url or (front_url + spec.health_path if front_url else None)

    # --- images and network ----------------------------------------------------------------------
    def check_image(self, image: str, *, pull: bool = False) -> ImageCheck:
        """An engine knows its images: present, or pulled when ``pull``, or :class:`ImageNotFound`."""
        found = self._local_image(image)
        if found is not None:
            return ImageCheck(image, "present", found, f"on {self.base_url}")
        return ImageCheck(image, "pulled", self._pull_missing(image, pull), f"pulled by {self.base_url}")

    def ensure_image(self, image: str, *, pull: bool = False) -> str:
        """The image's id on the engine; pulled when missing and ``pull``; :class:`ImageNotFound` otherwise."""
        found = self._local_image(image)
        return found if found is not None else self._pull_missing(image, pull)

    @_engine_errors
    def _local_image(self, image: str) -> str | None:
        try:
            return str(self.client.images.get(image).id)
        except docker.errors.ImageNotFound:
            return None

    @_engine_errors
    def _pull_missing(self, image: str, pull: bool) -> str:
        if not pull:
            raise ImageNotFound(
                f"image {image!r} not found on the Docker engine at {self.base_url}",
                hint="load or build it on that engine, or allow pulling it",
            )
        try:
            return str(self.client.images.pull(image).id)
        except docker.errors.APIError as exc:
            raise ImageNotFound(
                f"image {image!r} not found on the Docker engine at {self.base_url} and not pullable: "
                f"{exc.explanation or exc}"
            ) from None

    def _network(self) -> str:
        if not self.client.networks.list(names=[self.project]):
            self.client.networks.create(self.project, driver="bridge", labels={LABEL_ENV: self.env.name})
        return self.project

    # --- starting, waiting, stopping ---------------------------------------------------------------
    def _start(self, service: str, spec: ServiceSpec, image: str, release: str, env: dict[str, str]) -> Container:
        labels = {
            **spec.labels,
            LABEL_ENV: self.env.name,
            LABEL_SERVICE: service,
            LABEL_RELEASE: release,
            LABEL_IMAGE: image,
            LABEL_ROLE: "service",
            LABEL_ENV_KEYS: ",".join(sorted(env)),
        }
        kwargs: dict[str, Any] = {}
        if spec.port:
            kwargs["ports"] = {f"{spec.port}/tcp": (spec.docker.publish_bind, None)}
        healthcheck = self._healthcheck(spec)
        if healthcheck:
            kwargs["healthcheck"] = healthcheck
        if spec.volumes:
            kwargs["volumes"] = _mounts(spec)
        return self.client.containers.run(
            image,
            command=spec.command,
            name=f"{self.project}-{service}-{secrets.token_hex(3)}",
            environment=env,
            labels=labels,
            detach=True,
            init=True,
            network=self._network(),
            restart_policy=RESTART_UNLESS_STOPPED,
            **kwargs,
        )

    def _start_many(
        self,
        into: list[Container],
        n: int,
        service: str,
        spec: ServiceSpec,
        image: str,
        release: str,
        env: dict[str, str],
    ) -> None:
        """Start ``n`` instances in parallel, appending each to ``into`` as soon as it exists."""
        self._network()
        if n <= 1:
            into.extend(self._start(service, spec, image, release, env) for _ in range(n))
            return
        with ThreadPoolExecutor(max_workers=min(8, n)) as pool:
            futures = [pool.submit(self._start, service, spec, image, release, env) for _ in range(n)]
            errors = []
            for f in futures:
                try:
                    into.append(f.result())
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    @staticmethod
    def _healthcheck(spec: ServiceSpec) -> dict[str, Any] | None:
        hc = spec.healthcheck
        test = spec.docker.healthcheck_test
        if test is None:
            if not spec.port:
                return None  # the image's own HEALTHCHECK, if any
            url = f"http://127.0.0.1:{spec.port}{spec.health_path}"
            test = ["CMD-SHELL", f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"]
        ns = 1_000_000_000
        return {
            "test": test,
            "interval": int(hc.interval * ns),
            "timeout": int(hc.timeout * ns),
            "retries": hc.retries,
            "start_period": int(hc.start_period * ns),
        }

    def _verdict(self, c: Container, spec: ServiceSpec) -> str | None:
        """None while starting; "" when ready; a reason when the instance has failed."""
        c.reload()
        state = c.attrs["State"]
        if state["Status"] in ("exited", "dead") or state.get("Restarting") or c.attrs.get("RestartCount"):
            logs = c.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
            return f"container {c.name} exited with code {state.get('ExitCode')}: {logs[-300:]}"
        health = state.get("Health") or {}
        status = health.get("Status")
        if status == "unhealthy":
            last = (health.get("Log") or [{}])[-1].get("Output", "").strip()[:200]
            return f"container {c.name} is unhealthy: {last or 'health check failed'}"
        if spec.port:
            endpoint = self._endpoint(c, spec.port)
            if endpoint is None:
                return None
            code, detail = http_check(endpoint + spec.health_path, timeout=2.0)
            if code is not None and code >= 500:
                cid = container_id(c)
                self._failing[cid] = self._failing.get(cid, 0) + 1
                if self._failing[cid] >= FAILING_5XX:
                    return f"container {c.name}: {detail}"
            else:
                self._failing.pop(container_id(c), None)
            if code != 200:
                return None
        if status is None:
            started = state.get("StartedAt", "")
            return "" if self._running_for(started) >= spec.min_ready_seconds else None
        return "" if status == "healthy" else None

    @staticmethod
    def _running_for(started_at: str) -> float:
        from datetime import datetime

        try:
            started = datetime.fromisoformat(started_at[:26].rstrip("Z") + "+00:00")
        except ValueError:
            return 0.0
        return time.time() - started.timestamp()

    def _wait_ready(self, containers: list[Container], spec: ServiceSpec, timeout: float) -> tuple[str, float] | None:
        """Wait for every container ready. Returns (reason, verdict instant) on failure."""
        pending = list(containers)
        deadline = time.monotonic() + timeout
        while pending:
            for c in list(pending):
                verdict = self._verdict(c, spec)
                if verdict == "":
                    pending.remove(c)
                elif verdict:
                    return verdict, time.monotonic()
            if not pending:
                break
            if time.monotonic() >= deadline:
                names = ", ".join(container_name(c) for c in pending)
                return f"not healthy within {timeout:g}s: {names}", time.monotonic()
            time.sleep(POLL)
        return None

    def _remove(self, containers: Sequence[Container], *, graceful: bool, stop_timeout: int = 10) -> None:
        def one(c: Container) -> None:
            try:
                if graceful:
                    c.stop(timeout=stop_timeout)
                c.remove(force=True)
            except docker.errors.NotFound:
                pass

        if len(containers) <= 1:
            for c in containers:
                one(c)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
            list(pool.map(one, containers))

    # --- operations --------------------------------------------------------------------------------
    def _replace(
        self,
        service: str,
        image: str,
        release: str,
        env: Mapping[str, str | None],
        timeout: float,
        replicas: int | None = None,
    ) -> DeployResult:
        spec = self.spec(service)
        self.ensure_image(image)
        started = time.monotonic()
        old = self._containers(service=service)
        running = [c for c in old if c.status == "running"]
        images = {c.labels.get(LABEL_IMAGE) for c in running}
        previous = images.pop() if len(images) == 1 else None
        template = running[-1] if running else (old[-1] if old else None)  # stopped ones count too
        values = self._env_of(template) if template else dict(spec.env)
        for key, value in env.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        if replicas is None:
            replicas = len(running) or len(old) or spec.replicas
        new: list[Container] = []
        try:
            self._start_many(new, replicas, service, spec, image, release, values)
            failure = self._wait_ready(new, spec, timeout)
        except BaseException:
            self._remove(new, graceful=False)
            raise
        if failure:
            reason, verdict_at = failure
            self._remove(new, graceful=False)
            raise DeployFailed(
                f"{service}: image {image} failed its health gate ({reason}); "
                f"the new containers were removed and the previous ones kept serving",
                service=service,
                image=image,
                verdict_at=verdict_at,
                restored_at=time.monotonic(),
            )
        if self._fronted(service):
            self._front_set(service, spec, new)
            self._front_drain()
        self._remove(old, graceful=True, stop_timeout=spec.docker.stop_timeout)
        return DeployResult(service, image, previous, release, replicas, time.monotonic() - started)

    @_engine_errors
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
        if replicas is not None and replicas < 1:
            raise RuntimeMisconfigured(f"cannot deploy {service!r} with {replicas} replicas (stop it instead)")
        return self._replace(service, image, release, env or {}, timeout, replicas)

    @_engine_errors
    def stop(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        spec = self.spec(service)
        running = self._running(service)
        if self._fronted(service):
            self._front_set(service, spec, [])  # out of rotation first: the front answers 503, not resets
            self._front_drain()

        def one(c: Container) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                c.stop(timeout=spec.docker.stop_timeout)

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(running)))) as pool:
            list(pool.map(one, running))
        return self.service_state(service)

    def _current_image(self, service: str) -> tuple[str, str]:
        running = self._running(service)
        images = {(c.labels.get(LABEL_IMAGE, ""), c.labels.get(LABEL_RELEASE, "")) for c in running}
        if len(images) != 1:
            what = "no running container" if not images else "containers of several images"
            raise ActionError(f"service {service!r} of {self.env.name!r} has {what}; deploy an image first")
        return images.pop()

    @_engine_errors
    def restart(self, service: str, *, timeout: float = 300.0) -> ServiceState:
        image, release = self._current_image(service)
        self._replace(service, image, release, {}, timeout)
        return self.service_state(service)

    @_engine_errors
    def set_env(self, service: str, values: Mapping[str, str | None], *, timeout: float = 300.0) -> ServiceState:
        image, release = self._current_image(service)
        self._replace(service, image, release, values, timeout)
        return self.service_state(service)

    @_engine_errors
    def scale(self, service: str, replicas: int, *, timeout: float = 300.0) -> ServiceState:
        spec = self.spec(service)
        if replicas < 0:
            raise RuntimeMisconfigured(f"cannot scale {service!r} to {replicas} replicas")
        every = self._containers(service=service)
        running = [c for c in every if c.status == "running"]
        self._remove([c for c in every if c.status != "running"], graceful=False)
        if replicas > len(running):
            template = running[-1] if running else None
            image = template.labels.get(LABEL_IMAGE) if template else self.default_image(service)
            if not image:
                raise RuntimeMisconfigured(
                    f"service {service!r} has no running container and no image (runtime.services.{service}.image "
                    "or odoo.image): deploy it first"
                )
            release = template.labels.get(LABEL_RELEASE, "") if template else "initial"
            values = self._env_of(template) if template else dict(spec.env)
            self.ensure_image(image)
            new: list[Container] = []
            try:
                self._start_many(new, replicas - len(running), service, spec, image, release, values)
                failure = self._wait_ready(new, spec, timeout)
            except BaseException:
                self._remove(new, graceful=False)
                raise
            if failure:
                self._remove(new, graceful=False)
                raise DeployFailed(
                    f"{service}: scaling up to {replicas} failed ({failure[0]}); new containers removed",
                    service=service,
                    image=image,
                    verdict_at=failure[1],
                    restored_at=time.monotonic(),
                )
            if self._fronted(service):
                self._front_set(service, spec, running + new)
        elif replicas < len(running):
            by_health = sorted(running, key=lambda c: (c.attrs["State"].get("Health") or {}).get("Status") == "healthy")
            victims = by_health[: len(running) - replicas]
            keep = [c for c in running if c not in victims]
            if self._fronted(service):
                self._front_set(service, spec, keep)
                self._front_drain()
            self._remove(victims, graceful=True, stop_timeout=spec.docker.stop_timeout)
        return self.service_state(service)

    @_engine_errors
    def health(self, service: str, timeout: float = 60.0, *, url: str | None = None) -> HealthReport:
        spec = self.spec(service)
        started = time.monotonic()
        url = url or self.health_url(service)
        last: dict[str, Any] = {"status": None, "detail": "no running container", "n": 0, "ok": 0}

        def check() -> bool:
            state = self.service_state(service)
            last["n"], last["ok"] = state.replicas, state.healthy
            if not state.replicas or state.healthy < state.replicas:
                bad = [f"{i.name}: {i.health}" for i in state.running if i.health not in ("healthy", "none")]
                last["detail"] = "; ".join(bad) or "no running container"
                return False
            targets = [url] if url else [i.endpoint + spec.health_path for i in state.running if i.endpoint]
            for target in targets:
                last["status"], last["detail"] = http_check(target, timeout=2.0, **self._front_check_tls(target))
                if last["status"] != 200:
                    return False
            last["detail"] = f"{state.healthy}/{state.replicas} healthy" + (f", {url} answered 200" if url else "")
            return True

        ok = wait_until(check, timeout, 0.2)
        return HealthReport(
            service, ok, last["n"], last["ok"], url, last["status"], last["detail"], time.monotonic() - started
        )

    @_engine_errors
    def run_once(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 3600.0,
        service: str | None = None,
    ) -> RunResult:
        values: dict[str, str] = {}
        mounts: dict[str, dict[str, str]] = {}
        if service is not None:
            spec = self.spec(service)
            running = self._running(service)
            values = self._env_of(running[-1]) if running else dict(spec.env)
            mounts = _mounts(spec)
        values.update(env or {})
        self.ensure_image(image)
        started = time.monotonic()
        c = self.client.containers.run(
            image,
            command=list(command),
            name=f"{self.project}-run-{secrets.token_hex(3)}",
            environment=values,
            labels={LABEL_ENV: self.env.name, LABEL_ROLE: "run-once", LABEL_SERVICE: service or "", LABEL_IMAGE: image},
            detach=True,
            init=True,
            network=self._network(),
            volumes=mounts or None,
        )
        try:
            try:
                result = c.wait(timeout=timeout)
            except requests.exceptions.RequestException:
                tail = c.logs(tail=20).decode(errors="replace")
                c.kill()
                raise StepTimeout(
                    f"one-off command {list(command)} in {image} still running after {timeout:g}s; killed. "
                    f"Last output: {tail.strip()[-300:]}"
                ) from None
            tail = c.logs(tail=40).decode(errors="replace")
        finally:
            c.remove(force=True)
        return RunResult(int(result.get("StatusCode", -1)), tail, time.monotonic() - started)
