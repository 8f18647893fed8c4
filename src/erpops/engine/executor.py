"""Run one attempt of one step and return an :class:`Outcome`; never re-raise (kopf's habit).

The action runs in a worker thread so the engine can stop it: on timeout or interrupt the step's
cancel event is set (child processes started through the context are killed with their process
group), and the thread is given a short grace period before the attempt is abandoned.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from erpops.errors import ErpopsError, PermanentError, StepTimeout, TemporaryError

GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | timeout | cancelled
    outputs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    temporary: bool = False
    delay: float | None = None
    duration: float = 0.0


def execute_once(fn: Any, cancel: threading.Event, timeout: float | None, interrupted: threading.Event) -> Outcome:
    """Call ``fn()`` (the action's apply bound to its params and context) under ``timeout``."""
    box: dict[str, Any] = {}
    start = time.monotonic()

    def target() -> None:
        try:
            box["outputs"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="erpops-step", daemon=True)
    worker.start()
    deadline = start + timeout if timeout else None
    reason = None
    while worker.is_alive():
        worker.join(0.05)
        if not worker.is_alive():
            break
        if interrupted.is_set():
            reason = "cancelled"
        elif deadline is not None and time.monotonic() >= deadline:
            reason = "timeout"
        if reason:
            cancel.set()
            worker.join(GRACE_SECONDS)
            break
    duration = time.monotonic() - start
    if reason == "timeout" or isinstance(box.get("error"), StepTimeout):
        err = box.get("error") if isinstance(box.get("error"), StepTimeout) else None
        return Outcome(
            "timeout",
            error=err or StepTimeout(f"step ran past its timeout of {timeout:g}s and was stopped"),
            duration=duration,
        )
    if reason == "cancelled":
        return Outcome("cancelled", error=box.get("error") or PermanentError("interrupted"), duration=duration)
    if "error" in box:
        err = box["error"]
        if isinstance(err, TemporaryError):
            return Outcome("failed", error=err, temporary=True, delay=err.delay, duration=duration)
        if isinstance(err, ErpopsError | Exception):
            return Outcome("failed", error=err, duration=duration)
        return Outcome("failed", error=err, duration=duration)
    outputs = box.get("outputs") or {}
    if not isinstance(outputs, dict):
        return Outcome(
            "failed",
            error=TypeError(f"action returned {type(outputs).__name__}, not a dict of outputs"),
            duration=duration,
        )
    return Outcome("succeeded", outputs=outputs, duration=duration)
