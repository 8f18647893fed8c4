"""Events: the only way the engine tells the outside world what happens.

Each event is a JSON-ready dict with ``event`` (its type) and ``ts``. Sinks receive them already
redacted. Types: run.started, run.planned, step.started, step.log, step.progress, step.retry,
step.finished, approval, run.finished.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from erpops.secrets import redact_obj


class EventSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...


#: Asked for approvals: (message, text the operator must type or None for yes/no) -> approved?
#: Returns None when nobody can be asked (no terminal).
Approver = Callable[[str, str | None], bool | None]


def make_event(kind: str, **fields: Any) -> dict[str, Any]:
    return redact_obj({"event": kind, "ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields})


class NullSink:
    def emit(self, event: dict[str, Any]) -> None:
        pass


class ListSink:
    """Keeps events in memory (tests, runbook.call)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class JsonLinesSink:
    """One JSON object per line, flushed per event (``--json``)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, default=str, separators=(",", ":")) + "\n")
        self.stream.flush()


class MultiSink:
    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, event: dict[str, Any]) -> None:
        for s in self.sinks:
            s.emit(event)
