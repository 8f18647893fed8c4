"""Provision actions: create or converge what an environment needs, from its erpops.yaml and the
templates (``erpops provision``; see docs/configuration.md, "What provision creates").

- ``provision.preflight``: PostgreSQL, the object store and the runtime answer (exit 3 before
  anything changes when one does not);
- ``provision.database``: the Odoo role and its database (:mod:`erpops.backends.postgres.provision`);
- ``provision.bucket``: the bucket or directory store (:mod:`erpops.backends.storage.bucket`);
- ``provision.runtime``: files, network, volumes, the front and the services on Docker
  (:mod:`erpops.backends.runtime.docker.provision`), and the prune.

Each plan reads what exists and reports per object create / update / remove / no change (a
configuration file's diff with secrets masked): a dry run says what the run would do, and a
second run reports "nothing to change" and makes no change.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.errors import InvalidInput
from erpops.provisioning import ObjectChange, summary


def _planned(changes: list[ObjectChange]) -> PlanResult:
    lines = [summary(changes)] + [c.line() for c in changes if c.changed]
    diffs = [c.detail for c in changes if c.changed and c.detail.startswith("---")]
    return PlanResult(Change.WILL if any(c.changed for c in changes) else Change.NONE, "\n".join(lines + diffs))


def _report(ctx: ActionContext, changes: list[ObjectChange]) -> dict[str, Any]:
    for c in changes:
        if c.changed:
            ctx.log(c.line(), object=c.as_dict())
    ctx.log(summary(changes))
    return {"changes": [c.as_dict() for c in changes], "changed": sum(c.changed for c in changes)}


def _database(ctx: ActionContext, apply: bool) -> list[ObjectChange]:
    from erpops.backends.postgres import provision

    env = ctx.env
    if env.database is None:
        raise InvalidInput(f"environment {env.name!r} has no database: section to provision")
    password = ctx.resolve_secret(env.odoo.db_password) if env.odoo.db_password else None
    return provision.converge(
        ctx.resolve_secret(env.database.dsn), role=env.odoo.db_user, password=password,
        database=env.database.name, apply=apply,
    )  # fmt: skip


def _released(ctx: ActionContext) -> dict[str, str]:
    """The images of the environment's current release (the newest good one in the release
    history): provision keeps what deploy rolled out; without a release, ``odoo.image``."""
    if ctx.state is None:
        return {}
    from erpops.records import list_releases

    for release in list_releases(ctx.state, ctx.env.name):
        if release.get("status") in ("good", None) and release.get("images"):
            return {s: i for s, i in release["images"].items() if i}
    return {}


def _bucket(ctx: ActionContext, apply: bool) -> list[ObjectChange]:
    from erpops.backends.storage import bucket

    if ctx.env.storage is None:
        raise InvalidInput(f"environment {ctx.env.name!r} has no storage: section to provision")
    return bucket.converge(ctx.env.storage, ctx.resolve_secret, apply=apply)


class Preflight(Action):
    """Check that everything provision will touch answers, before anything changes: the
    database server (``database.dsn``), the object store (its endpoint; a missing bucket is what
    provision creates) and the runtime (the Docker engine).

    ```yaml
    - id: preflight
      action: provision.preflight
    ```
    """

    name = "provision.preflight"
    read_only = True

    class Params(ActionParams):
        pass

    outputs = {"reached": "what answered (database, store, runtime)"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, "check the database server, the object store and the runtime answer")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        reached = []
        env = ctx.env
        if env.database is not None:
            from erpops.backends.postgres import client as pg

            with pg.connect(ctx.resolve_secret(env.database.dsn)) as conn:
                reached.append(f"PostgreSQL {pg.server_version(conn)}")
        if env.storage is not None:
            from erpops.backends.storage import bucket

            reached.append(bucket.reachable(env.storage, ctx.resolve_secret))
        if env.runtime.kind != "none":
            from erpops.backends.runtime import open_runtime

            with open_runtime(env) as rt:
                reached.append(rt.describe())
                if env.runtime.kind == "docker":
                    from erpops.backends.runtime import RuntimeMisconfigured
                    from erpops.backends.runtime.docker.provision import port_problems

                    taken = port_problems(rt)  # type: ignore[arg-type]  # kind docker: a DockerRuntime
                    if taken:
                        raise RuntimeMisconfigured("; ".join(taken) + ": free them or set other ports in ingress:")
        for what in reached:
            ctx.log(f"reached {what}")
        return {"reached": reached}


class Database(Action):
    """The Odoo role (``odoo.db_user``: login, no superuser / createrole / createdb, connection
    limit = the peak headroom budget, password ``odoo.db_password``) and the database
    (``database.name``) owned by it, created or put back.

    ```yaml
    - id: database
      action: provision.database
    ```
    """

    name = "provision.database"

    class Params(ActionParams):
        pass

    outputs = {"changes": "per object: kind, name, action, detail", "changed": "how many objects changed"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return _planned(_database(ctx, apply=False))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        return _report(ctx, _database(ctx, apply=True))


class Bucket(Action):
    """The environment's object store: the S3 bucket (versioning, Object Lock when asked, the
    lifecycle rule ``erpops``) or the local directory (0700), created or put back.

    ```yaml
    - id: bucket
      action: provision.bucket
    ```
    """

    name = "provision.bucket"

    class Params(ActionParams):
        pass

    outputs = {"changes": "per object: kind, name, action, detail", "changed": "how many objects changed"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return _planned(_bucket(ctx, apply=False))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        return _report(ctx, _bucket(ctx, apply=True))


class Runtime(Action):
    """What the environment runs on, converged: on Docker the rendered files (odoo.conf, Traefik's
    configuration), the network, the named volumes, the Traefik front, each service's instances
    (count and labels), the front's routes; then the prune of erpops-labelled objects of this
    environment nothing renders any more (volumes are kept).

    ```yaml
    - id: runtime
      action: provision.runtime
      with: {prune: true}
    ```
    """

    name = "provision.runtime"

    class Params(ActionParams):
        prune: bool = Field(True, description="remove erpops-labelled objects of this environment no longer rendered")
        force: bool = Field(
            False, description="Kubernetes: take fields another field manager owns (not needed for kubectl hand edits)"
        )
        timeout: float = Field(300.0, gt=0, description="seconds each service may take to converge")

    outputs = {"changes": "per object: kind, name, action, detail", "changed": "how many objects changed"}

    def _converge(self, params: Params, ctx: ActionContext, apply: bool) -> list[ObjectChange]:
        kind = ctx.env.runtime.kind
        if kind == "none":
            return []
        if kind == "kubernetes":
            from erpops.backends.runtime.kubernetes import provision as k8s

            seen, requests = k8s.converge(
                ctx.env, apply=apply, force=params.force, prune=params.prune, images=_released(ctx),
                resolve=ctx.resolve_secret, timeout=params.timeout,
                planned=None if not apply else ctx.memo.pop("kubernetes", None),
            )  # fmt: skip
            if not apply:  # the apply that follows acts on this reading while it is fresh
                ctx.memo["kubernetes"] = seen
            writes = [r for r in requests if not r.startswith("GET ")]
            ctx.log(f"{len(requests)} API requests ({len(writes)} writes)", requests=requests)
            return seen.changes
        from erpops.backends.runtime import open_runtime
        from erpops.backends.runtime.docker import provision

        with open_runtime(ctx.env) as rt:
            return provision.converge(
                rt,  # type: ignore[arg-type]  # kind docker: a DockerRuntime
                resolve=ctx.resolve_secret, apply=apply, prune=params.prune, timeout=params.timeout,
            )  # fmt: skip

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if ctx.env.runtime.kind == "none":
            return PlanResult(Change.NONE, "runtime.kind none: nothing runs here")
        return _planned(self._converge(params, ctx, apply=False))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        return _report(ctx, self._converge(params, ctx, apply=True))
