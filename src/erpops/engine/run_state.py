"""What a run carries and returns: options, the state between steps, step and run results.

Kept apart from :mod:`erpops.engine.runner` so that the step context (and anything else that needs
these shapes) does not import the engine itself; :class:`EngineHandle` is what a step context
asks of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from erpops.actions.base import PlanResult, RunInfo
from erpops.engine.events import EventSink
from erpops.environments import Environment
from erpops.errors import ExitCode
from erpops.runbook.loader import Runbook
from erpops.state import StateStore


@dataclass
class RunOptions:
    dry_run: bool = False
    assume_yes: bool = False
    interactive: bool = False
    lock_wait: float | None = None
    #: Resume: the run id to continue and the outputs of the steps that already succeeded.
    resume_run_id: str | None = None
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class StepResult:
    id: str
    action: str
    phase: str
    status: str  # succeeded | failed | skipped | timeout | cancelled | done-earlier | planned
    duration: float = 0.0
    attempts: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    plan: PlanResult | None = None


@dataclass
class RunResult:
    run_id: str
    runbook: str
    version: str
    environment: str
    state: str  # succeeded | failed | rolled-back | interrupted | refused (locked) | planned
    exit_code: ExitCode
    duration: float
    steps: list[StepResult]
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None


@dataclass
class RunState:
    """Everything a run carries between steps."""

    runbook: Runbook
    env: Environment
    info: RunInfo
    options: RunOptions
    params: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    depth: int = 0
    #: step id -> what the step's plan left for its apply (this process only: a resumed run plans anew)
    memos: dict[str, dict[str, Any]] = field(default_factory=dict)

    def template_context(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "env": self.env.as_template(),
            "run": self.info.as_template(),
            "steps": {sid: {"outputs": out} for sid, out in self.outputs.items()},
        }


class EngineHandle(Protocol):
    """What a step's context needs of the engine that runs it."""

    state: StateStore
    sink: EventSink

    def request_approval(
        self, rs: RunState, step_id: str | None, message: str, *, require_text: str | None
    ) -> None: ...

    def call_child(self, rs: RunState, step_id: str, name_or_path: str, params: dict[str, Any]) -> dict[str, Any]: ...
