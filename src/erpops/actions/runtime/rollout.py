"""Runtime actions: what runs (``runtime.current``), roll it to an image, gate on health, scale,
stop, run a one-off command, restart, change its environment. The release history actions are in
:mod:`erpops.actions.runtime.releases`.

Every action dispatches to the environment's runtime (``runtime.kind``: docker or kubernetes,
see :mod:`erpops.backends.runtime`).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.actions.runtime._common import runtime_of
from erpops.errors import PermanentError, Unreachable
from erpops.runbook.durations import Duration

if TYPE_CHECKING:
    from erpops.backends.runtime import Runtime


def _declared(ctx: ActionContext, services: list[str] | None) -> list[str]:
    return list(services) if services is not None else list(ctx.env.runtime.services)


class Check(Action):
    """Preflight: the runtime answers, the services exist, the images are there (or pullable).

    ```yaml
    - id: preflight
      action: runtime.check
      with: {image: "{{ params.image }}", services: [web, worker]}
    ```
    """

    name = "runtime.check"
    read_only = True

    class Params(ActionParams):
        image: str | None = Field(None, description="an image every service will run")
        images: dict[str, str | None] | None = Field(None, description="or an image per service")
        services: list[str] | None = Field(None, description="default: every declared service")
        pull: bool = Field(False, description="pull a missing image instead of failing")
        database: bool = Field(False, description="also check that the environment's database answers")

    outputs = {
        "runtime": "where the runtime is",
        "images": "image per service now (null when nothing runs)",
        "replicas": "running instances per service now",
        "release": "the release label every instance shares, or null",
        "database": "the database checked, when asked",
        "image_checks": "per image asked for: present, pulled, or unverified (not known until pulled)",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"check the {ctx.env.runtime.kind} runtime and images")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        with runtime_of(ctx) as rt:
            services = _declared(ctx, params.services)
            for s in services:
                rt.spec(s)
            wanted = {params.image} if params.image else set()
            wanted |= {i for i in (params.images or {}).values() if i}
            for s in params.images or {}:
                rt.spec(s)
            checked = {image: rt.check_image(image, pull=params.pull) for image in sorted(wanted)}
            for c in checked.values():
                if c.status == "unverified":
                    ctx.log(f"image {c.image}: {c.detail or 'not known until an instance pulls it'}", level="warning")
            now = rt.current()
            described = rt.describe()
        database = None
        if params.database:
            database = _ping_database(ctx)
        return {
            "runtime": described,
            "database": database,
            "images": {s: now.services[s].image if s in now.services else None for s in rt.specs},
            "replicas": {s: now.services[s].replicas if s in now.services else 0 for s in rt.specs},
            "release": now.release,
            "image_checks": {image: c.status for image, c in checked.items()},
        }


def _ping_database(ctx: ActionContext) -> str:
    from erpops.backends.postgres import client as pg

    db = ctx.env.database
    if db is None:
        raise Unreachable(f"environment {ctx.env.name!r} has no database (database.dsn in erpops.yaml)")
    with pg.connect(ctx.resolve_secret(db.dsn), db.name) as conn:
        version = pg.server_version(conn)
    return f"{pg.describe(db.dsn, db.name)} (PostgreSQL {version})"


class Current(Action):
    """What runs now: image, release and running/healthy instances per service.

    ```yaml
    - id: now
      action: runtime.current
    ```
    """

    name = "runtime.current"
    read_only = True

    outputs = {
        "images": "image per service (null when nothing runs or images are mixed)",
        "replicas": "running instances per service",
        "release": "the release every instance shares, or null",
        "services": "per service: image, images, release, replicas, healthy, desired, updated, ready, revision, "
        "instances",
    }

    def plan(self, params: ActionParams, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, "read the current release")

    def apply(self, params: ActionParams, ctx: ActionContext) -> dict[str, Any]:
        with runtime_of(ctx) as rt:
            now = rt.current()
        return {
            "images": now.images,
            "replicas": now.replicas,
            "release": now.release,
            "services": {name: s.as_dict() for name, s in now.services.items()},
        }


class Deploy(Action):
    """Roll services to an image: new instances started, healthy, then the old ones stopped — never
    zero healthy web instances. All-or-nothing: when a service fails its health gate its new
    instances are removed, and the services already rolled by this step go back to their previous
    image before the step fails.

    ```yaml
    - id: roll
      action: runtime.deploy
      with: {image: "{{ params.image }}", release: "{{ run.id }}", services: [web, worker, cron]}
      undo:
        action: runtime.deploy
        with: {images: "{{ steps.preflight.outputs.images }}"}
    ```
    """

    name = "runtime.deploy"

    class Params(ActionParams):
        image: str | None = Field(None, description="image for every service in `services`")
        images: dict[str, str | None] | None = Field(
            None, description="or an image per service (null: leave that service alone)"
        )
        services: list[str] | None = Field(None, description="with `image`; default: every declared service")
        release: str | None = Field(None, description="release label; default: the run id")
        timeout: Duration = Field(300.0, description="per service, for new instances to become healthy")
        force: bool = Field(False, description="replace instances already running the image")
        replicas: dict[str, int] | None = Field(
            None,
            description="instances per service (default: as many as run now, or were stopped, or declared)",
        )

        @model_validator(mode="after")
        def _one(self) -> Deploy.Params:
            if (self.image is None) == (self.images is None):
                raise ValueError("give either 'image' or 'images'")
            return self

    outputs = {
        "images": "image per service after the step",
        "previous": "image per service before the step",
        "release": "the release label",
        "changed": "services whose instances were replaced",
        "seconds": "time per replaced service",
    }

    @staticmethod
    def targets(params: Params, ctx: ActionContext) -> dict[str, str]:
        if params.images is not None:
            return {s: i for s, i in params.images.items() if i}
        return {s: params.image for s in _declared(ctx, params.services) if params.image}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        targets = self.targets(params, ctx)
        with runtime_of(ctx) as rt:
            now = rt.current()
        moves = [
            f"{s} {now.services[s].image if s in now.services else None} -> {i}"
            for s, i in targets.items()
            if params.force or s not in now.services or now.services[s].image != i
        ]
        if not moves:
            return PlanResult(Change.NONE, "every service already runs its image")
        return PlanResult(Change.WILL, "roll " + ", ".join(moves))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        from erpops.backends.runtime import DeployFailed

        release = params.release or ctx.run.id
        targets = self.targets(params, ctx)
        with runtime_of(ctx) as rt:
            for s in targets:
                rt.spec(s)
            now = rt.current()
            previous = {s: now.services[s].image if s in now.services else None for s in rt.specs}
            done: list[str] = []
            seconds: dict[str, float] = {}
            for service, image in targets.items():
                state = now.services.get(service)
                if not params.force and state and state.image == image and state.healthy == state.replicas > 0:
                    ctx.log(f"{service} already runs {image}")
                    continue
                ctx.check_cancelled()
                ctx.log(f"rolling {service} to {image}")
                try:
                    n = (params.replicas or {}).get(service) or None
                    result = rt.deploy(service, image, release=release, timeout=params.timeout, replicas=n)
                except Exception as exc:
                    back = self._restore(rt, ctx, done, previous, now.release or "previous")
                    if isinstance(exc, DeployFailed) and back:
                        raise DeployFailed(
                            f"{exc.message}; {back}",
                            service=exc.service,
                            image=exc.image,
                            verdict_at=exc.verdict_at,
                            restored_at=exc.restored_at,
                        ) from None
                    raise
                done.append(service)
                seconds[service] = round(result.seconds, 3)
                ctx.log(f"{service}: {result.replicas} instance(s) of {image} healthy in {result.seconds:.1f}s")
        return {
            "images": {**previous, **targets},
            "previous": previous,
            "release": release,
            "changed": done,
            "seconds": seconds,
        }

    @staticmethod
    def _restore(rt: Runtime, ctx: ActionContext, done: list[str], previous: dict[str, Any], release: str) -> str:
        restored, emptied, failed = [], [], []
        for service in reversed(done):
            try:
                if previous.get(service):
                    ctx.log(f"restoring {service} to {previous[service]}", level="warning")
                    rt.deploy(service, previous[service], release=release)
                    restored.append(service)
                else:  # nothing ran before this step: nothing runs after it
                    ctx.log(f"stopping {service} again: it ran nothing before this step", level="warning")
                    rt.scale(service, 0)
                    emptied.append(service)
            except Exception as exc:  # keep restoring the others; report it with the first error
                ctx.log(f"could not restore {service} to {previous.get(service) or 'nothing'}: {exc}", level="error")
                failed.append(service)
        parts = [f"restored {', '.join(restored)} to the previous image"] if restored else []
        parts += [f"stopped {', '.join(emptied)} again"] if emptied else []
        parts += [f"COULD NOT restore {', '.join(failed)}"] if failed else []
        return "; ".join(parts)


class Health(Action):
    """Health gate: every instance healthy and ``health_path`` answering 200 (through the front
    port when there is one), within ``timeout``; the step fails otherwise.

    ```yaml
    - id: gate
      action: runtime.health
      with: {service: web, timeout: 2m}
    ```
    """

    name = "runtime.health"
    read_only = True

    class Params(ActionParams):
        service: str = "web"
        timeout: Duration = 60.0
        url: str | None = Field(None, description="check this URL instead of the runtime's own")

    outputs = {
        "healthy": "true",
        "replicas": "running instances",
        "url": "the URL checked",
        "status": "its HTTP status",
        "detail": "what was seen",
        "seconds": "time until healthy",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"health gate on {params.service} (up to {params.timeout:g}s)")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        with runtime_of(ctx) as rt:
            report = rt.health(params.service, params.timeout, url=params.url)
        if not report.healthy:
            raise PermanentError(f"health gate failed for {params.service} after {params.timeout:g}s: {report.detail}")
        return {
            "healthy": True,
            "replicas": report.replicas,
            "url": report.url,
            "status": report.http_status,
            "detail": report.detail,
            "seconds": round(report.seconds, 3),
        }


class Scale(Action):
    """Run exactly N instances per service (new ones healthy before they take traffic).

    ```yaml
    - id: scale
      action: runtime.scale
      with: {replicas: {web: 6, worker: 2}}
      undo:
        action: runtime.scale
        with: {replicas: "{{ steps.scale.outputs.previous }}"}
    ```
    """

    name = "runtime.scale"

    class Params(ActionParams):
        replicas: dict[str, int] = Field(description="service -> instances")
        timeout: Duration = 300.0

        @field_validator("replicas")
        @classmethod
        def _positive(cls, value: dict[str, int]) -> dict[str, int]:
            bad = [s for s, n in value.items() if n < 0]
            if bad:
                raise ValueError(f"replicas must be >= 0 ({', '.join(bad)})")
            return value

    outputs = {"previous": "instances per service before", "replicas": "instances per service after"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        with runtime_of(ctx) as rt:
            now = rt.current().replicas
        moves = [f"{s} {now.get(s, 0)} -> {n}" for s, n in params.replicas.items() if now.get(s, 0) != n]
        return PlanResult(Change.WILL, "scale " + ", ".join(moves)) if moves else PlanResult(Change.NONE, "no change")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        with runtime_of(ctx) as rt:
            for s in params.replicas:
                rt.spec(s)
            before = rt.current().replicas
            previous = {s: before.get(s, 0) for s in params.replicas}
            after: dict[str, int] = {}
            for service, n in params.replicas.items():
                ctx.check_cancelled()
                if previous[service] != n:
                    ctx.log(f"scaling {service} {previous[service]} -> {n}")
                told = len(rt.notes)
                after[service] = rt.scale(service, n, timeout=params.timeout).replicas
                for note in rt.notes[told:]:
                    ctx.log(note)
        return {"previous": previous, "replicas": after}


class RunOnce(Action):
    """Run a command once in a new instance of an image (Docker: a container; Kubernetes: a Job),
    with a service's environment; fails on a non-zero exit unless ``check: false``.

    ```yaml
    - id: migrate
      action: runtime.run_once
      with:
        image: "{{ params.image }}"
        command: [odoo, -u, all, --stop-after-init]
        service: web
        timeout: 1h
    ```
    """

    name = "runtime.run_once"

    class Params(ActionParams):
        image: str
        command: list[str] = Field(description="argv list (a string is split like a shell would)")
        env: dict[str, str] = Field(default_factory=dict, description="extra variables (secret references allowed)")
        service: str | None = Field("web", description="take environment and network from this service")
        timeout: Duration = 3600.0
        check: bool = Field(True, description="fail the step on a non-zero exit code")
        pause: list[str] = Field(
            default_factory=list,
            description=(
                "services scaled to 0 while the command runs and back to their count after, whatever the "
                "outcome (cron during a migration: no scheduled job on a half-migrated database)"
            ),
        )

        @field_validator("command", mode="before")
        @classmethod
        def _split(cls, value: Any) -> Any:
            return shlex.split(value) if isinstance(value, str) else value

    outputs = {"exit_code": "the command's exit code", "log_tail": "last lines of its output", "seconds": "duration"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, f"run {' '.join(params.command)} once in {params.image}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        env = {}
        for key, value in params.env.items():
            env[key] = ctx.resolve_secret(value)
            if env[key] != value:
                ctx.register_secret(env[key])
        with runtime_of(ctx) as rt:
            paused: dict[str, int] = {}
            try:
                for service in params.pause:
                    count = rt.service_state(service).desired
                    if count:
                        ctx.log(f"pausing {service} ({count} -> 0) while the command runs")
                        rt.scale(service, 0, timeout=params.timeout)
                        paused[service] = count
                result = rt.run_once(
                    params.image, params.command, env=env, timeout=params.timeout, service=params.service
                )
            finally:
                for service, count in paused.items():
                    ctx.log(f"resuming {service} (0 -> {count})")
                    rt.scale(service, count, timeout=params.timeout)
        from erpops.secrets import redact

        tail = redact(result.log_tail)
        if params.check and result.exit_code != 0:
            last = tail.strip().splitlines()[-1:] or [""]
            raise PermanentError(
                f"{' '.join(params.command)} in {params.image} exited with code {result.exit_code}"
                + (f": {last[0]}" if last[0] else "")
            )
        return {"exit_code": result.exit_code, "log_tail": tail, "seconds": round(result.seconds, 3)}


class Restart(Action):
    """Rolling restart: fresh instances of the same image and environment replace the old ones.

    ```yaml
    - id: restart
      action: runtime.restart
      with: {services: [web, worker]}
    ```
    """

    name = "runtime.restart"

    class Params(ActionParams):
        services: list[str] | None = Field(None, description="default: every declared service running")
        timeout: Duration = 300.0

    outputs = {"restarted": "services restarted"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.WILL, "restart " + ", ".join(_declared(ctx, params.services)))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        done = []
        with runtime_of(ctx) as rt:
            now = rt.current()
            for service in _declared(ctx, params.services):
                rt.spec(service)
                if params.services is None and (service not in now.services or not now.services[service].replicas):
                    continue
                ctx.log(f"restarting {service}")
                rt.restart(service, timeout=params.timeout)
                done.append(service)
        return {"restarted": done}


class SetEnv(Action):
    """Change environment variables of services' instances (rolling); null removes a variable.
    Values may be secret references (``env:VAR``, ``file:PATH``); they are resolved here.

    ```yaml
    - id: repoint
      action: runtime.set_env
      with: {services: [web, worker, cron], values: {PGHOST: db-standby.internal}}
    ```
    """

    name = "runtime.set_env"

    class Params(ActionParams):
        services: list[str] | None = Field(None, description="default: every declared service running")
        values: dict[str, str | None]
        timeout: Duration = 300.0

    outputs = {"services": "services updated", "keys": "variables changed"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        keys = ", ".join(sorted(params.values))
        return PlanResult(Change.WILL, f"set {keys} on " + ", ".join(_declared(ctx, params.services)))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        values: dict[str, str | None] = {}
        for key, value in params.values.items():
            values[key] = None if value is None else ctx.resolve_secret(value)
            if value is not None and values[key] != value:
                ctx.register_secret(values[key] or "")
        done = []
        with runtime_of(ctx) as rt:
            now = rt.current()
            for service in _declared(ctx, params.services):
                rt.spec(service)
                if params.services is None and (service not in now.services or not now.services[service].replicas):
                    continue
                rt.set_env(service, values, timeout=params.timeout)
                done.append(service)
        return {"services": done, "keys": sorted(values)}


class Stop(Action):
    """Stop services: nothing serves until a ``runtime.deploy`` (or a start by hand) brings them
    back. Used where the application must let go of its database (a database restore). Docker
    keeps the stopped containers, so a later deploy knows their count and environment; Kubernetes
    scales the Deployments to 0. The outputs hold what ran, for the undo.

    ```yaml
    - id: stop
      action: runtime.stop
      undo:
        action: runtime.deploy
        with:
          images: "{{ steps.stop.outputs.images }}"
          replicas: "{{ steps.stop.outputs.replicas }}"
          release: "{{ steps.stop.outputs.release }}"
    ```
    """

    name = "runtime.stop"

    class Params(ActionParams):
        services: list[str] | None = Field(None, description="default: every declared service")
        timeout: Duration = 300.0

    outputs = {
        "images": "image per service before (null when nothing ran)",
        "replicas": "running instances per service before",
        "release": "the release every instance shared, or null",
        "stopped": "services whose instances were stopped",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        services = _declared(ctx, params.services)
        return PlanResult(Change.WILL, f"stop {', '.join(services)}: nothing serves until they are deployed again")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        services = _declared(ctx, params.services)
        with runtime_of(ctx) as rt:
            for s in services:
                rt.spec(s)
            now = rt.current()
            stopped = []
            for service in services:
                state = now.services.get(service)
                if state is None or not state.replicas:
                    continue
                ctx.check_cancelled()
                ctx.log(f"stopping {service} ({state.replicas} instance(s) of {state.image})")
                rt.stop(service, timeout=params.timeout)
                stopped.append(service)
        return {
            "images": {s: now.services[s].image if s in now.services else None for s in services},
            "replicas": {s: now.services[s].replicas if s in now.services else 0 for s in services},
            "release": now.release,
            "stopped": stopped,
        }
