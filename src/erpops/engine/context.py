"""The concrete :class:`erpops.actions.base.ActionContext` handed to each step attempt."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from erpops import process, secrets
from erpops.actions.base import ProcessResult, RunInfo
from erpops.engine.events import make_event
from erpops.engine.run_state import EngineHandle, RunState
from erpops.errors import ApprovalRefused, InvalidInput, PermanentError


class StepContext:
    def __init__(self, engine: EngineHandle, state: RunState, step_id: str, cancel: threading.Event) -> None:
        self._engine = engine
        self._run_state = state
        self.run: RunInfo = state.info
        self.step_id = step_id
        self.env = state.env
        self.state = engine.state
        self._cancel = cancel

    # -- output --------------------------------------------------------------------------------
    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        self._engine.sink.emit(
            make_event("step.log", run_id=self.run.id, step=self.step_id, level=level, message=message, **fields)
        )

    def progress(self, description: str, *, done: float, total: float | None = None, unit: str = "B") -> None:
        self._engine.sink.emit(
            make_event(
                "step.progress",
                run_id=self.run.id,
                step=self.step_id,
                description=description,
                done=done,
                total=total,
                unit=unit,
            )
        )

    @property
    def memo(self) -> dict[str, Any]:
        return self._run_state.memos.setdefault(self.step_id, {})

    # -- cancellation --------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise PermanentError(f"step {self.step_id} was cancelled")

    @property
    def cancel_event(self) -> threading.Event:
        return self._cancel

    # -- secrets -------------------------------------------------------------------------------
    def resolve_secret(self, value: str) -> str:
        try:
            if not secrets.is_reference(value):
                return value
            return secrets.resolve(value)
        except secrets.SecretReferenceError as exc:
            raise InvalidInput(str(exc)) from None

    def register_secret(self, value: str) -> None:
        secrets.REDACTOR.register(value)

    # -- processes -----------------------------------------------------------------------------
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
        if any(secrets.REDACTOR.contains(str(arg)) for arg in argv):
            # a command line is visible to every user of the machine (ps, /proc): never a secret
            raise PermanentError(
                f"the command line of {argv[0]} would contain a secret; "
                "pass it through the environment instead (exec: secret_env)"
            )
        code, out, err, secs = process.run_process(
            argv,
            cancel=self._cancel,
            env=env,
            cwd=cwd,
            timeout=timeout,
            stdin=stdin,
            stdout=stdout,
            tail_lines=tail_lines,
        )
        return ProcessResult(list(argv), code, secrets.redact(out), secrets.redact(err), secs)

    # -- approvals and nested runbooks ---------------------------------------------------------
    def approve(self, message: str) -> None:
        self._engine.request_approval(self._run_state, self.step_id, message, require_text=None)

    def call_runbook(self, name_or_path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._engine.call_child(self._run_state, self.step_id, name_or_path, dict(params))


__all__ = ["ApprovalRefused", "StepContext"]
