"""What every step type is: a typed parameter model, declared outputs, ``plan()`` and ``apply()``.

An action is one class in one module of its family (``actions/core.py``, ``actions/postgres.py``...),
registered by the YAML name it declares::

    class Ping(Action):
        \"\"\"Check that the database answers.

        ```yaml
        - id: preflight
          action: postgres.ping
          with: {dsn: "{{ env.database.dsn }}"}
        ```
        \"\"\"

        name = "postgres.ping"

        class Params(ActionParams):
            dsn: str | None = None

        outputs = {"server_version": "PostgreSQL server version number"}

        def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
            return PlanResult(Change.NONE, "ping the database")

        def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
            ...

Actions never import another action's module and never import an SDK at module level: SDKs
live in ``erpops.backends`` and are imported inside ``apply``. Errors: raise
:class:`erpops.errors.TemporaryError` for what may pass on retry, any other
:class:`erpops.errors.ActionError` for what will not.
"""

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

# Modules holding action families, imported lazily when the registry is first consulted.
ACTION_MODULES: tuple[str, ...] = (
    "erpops.actions.core",
    "erpops.actions.storage",
    "erpops.actions.postgres",
    "erpops.actions.odoo",
    "erpops.actions.runtime",
    "erpops.actions.peak",
    "erpops.actions.failover",
    "erpops.actions.provision",
)


class Change(StrEnum):
    """What a step would do, reported by ``plan()`` without side effects."""

    WILL = "will change"
    MAY = "may change"
    NONE = "no change"
    #: The step will fail whatever happens (e.g. ``assert`` of a literal false): a dry run says so
    #: and exits as the run would.
    FAILS = "will fail"


@dataclass(frozen=True)
class PlanResult:
    change: Change
    summary: str


class ActionParams(BaseModel):
    """Base of every action's parameter model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@dataclass(frozen=True)
class RunInfo:
    """What a template sees as ``run`` and an action as ``ctx.run``."""

    id: str
    started_at: datetime
    user: str
    host: str
    runbook: str
    runbook_version: str
    environment: str
    dry_run: bool = False
    assume_yes: bool = False
    interactive: bool = False

    def as_template(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "user": self.user,
            "host": self.host,
            "runbook": self.runbook,
            "environment": self.environment,
            "dry_run": self.dry_run,
        }


@dataclass
class ProcessResult:
    argv: list[str]
    returncode: int
    stdout_tail: str
    stderr_tail: str
    duration: float


class ActionContext(Protocol):
    """What the engine gives an action. Implemented by ``erpops.engine.context``."""

    run: RunInfo
    step_id: str
    #: The environment (``erpops.environments.Environment``); secrets stay references until
    #: ``resolve_secret`` is called.
    env: Any
    #: The state store (``erpops.state.StateStore``) or None when the run has no journal.
    state: Any

    @property
    def memo(self) -> dict[str, Any]:
        """What this step's plan left for its apply, in this process (empty when the run resumed,
        or for a step that was not planned): an action may reuse an observation it just made
        instead of reading everything twice. Never the only source of truth: what is missing is
        read again."""

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """Emit a log event for this step (redacted, journaled, shown)."""

    def progress(self, description: str, *, done: float, total: float | None = None, unit: str = "B") -> None:
        """Report progress of a long transfer (bytes by default)."""

    def check_cancelled(self) -> None:
        """Raise if the step was cancelled (timeout or interrupt); call it in long loops."""

    @property
    def cancelled(self) -> bool: ...

    def resolve_secret(self, value: str) -> str:
        """Resolve ``env:VAR`` / ``file:PATH`` / ``k8s-secret:`` references and register the value
        for redaction. Plain strings are returned as they are."""

    def register_secret(self, value: str) -> None:
        """Make sure ``value`` never appears in anything erpops writes."""

    def run_process(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float | None = None,
        stdin: Any = None,
        stdout: Any = None,
        tail_lines: int = 20,
    ) -> ProcessResult:
        """Run a child process in its own process group; killed (group included) when the step
        is cancelled or times out. Never through a shell."""

    def approve(self, message: str) -> None:
        """Ask for approval (terminal) or accept ``--yes``; raise ApprovalRefused otherwise."""

    def call_runbook(self, name_or_path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Run another runbook as part of this step; returns its ``outputs``."""


class Action:
    """Base class of every step type. Subclasses declare ``name``, ``Params`` and ``outputs``."""

    name: ClassVar[str]
    Params: ClassVar[type[ActionParams]] = ActionParams
    outputs: ClassVar[Mapping[str, str]] = {}
    #: True when apply() changes nothing outside erpops (safe in --dry-run plans, never undone).
    read_only: ClassVar[bool] = False

    _registry: ClassVar[dict[str, type["Action"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if not name:
            return  # an intermediate base class
        existing = Action._registry.get(name)
        if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"action {name!r} registered twice: {existing.__module__} and {cls.__module__}")
        Action._registry[name] = cls

    def plan(self, params: Any, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE if self.read_only else Change.MAY, self.name)

    def apply(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__}.apply")


@dataclass
class _Registry:
    loaded: bool = False
    failures: dict[str, str] = field(default_factory=dict)


_state = _Registry()


def load_actions() -> dict[str, type[Action]]:
    """Import every action family that exists (``find_spec`` first, so a real ImportError inside a
    family is raised, not mistaken for a missing family) and return the registry."""
    if not _state.loaded:
        for module in ACTION_MODULES:
            if importlib.util.find_spec(module) is None:
                continue
            importlib.import_module(module)
        _state.loaded = True
    return dict(Action._registry)


def get_action(name: str) -> type[Action] | None:
    return load_actions().get(name)
