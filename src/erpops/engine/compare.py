"""Two runs side by side (``erpops runs compare A B``): a cutover rehearsal against the real
cutover, or one drill against the last. Per step (in the order the runs ran them): duration of
its last attempt and of all attempts, attempts, outcome; then what differs and the totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class _Side:
    outcome: str
    attempts: int
    seconds: float | None  # the last attempt
    total_seconds: float | None  # every attempt

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "attempts": self.attempts, "seconds": self.seconds,
                "total_seconds": self.total_seconds}  # fmt: skip


def _seconds(step: Any) -> float | None:
    if step.started_at is None or step.ended_at is None:
        return None
    return round((step.ended_at - step.started_at).total_seconds(), 3)


def _sides(steps: list[Any]) -> dict[tuple[str, str], _Side]:
    out: dict[tuple[str, str], _Side] = {}
    for s in steps:
        key = (s.phase, s.step_id)
        took = _seconds(s)
        old = out.get(key)
        total = (old.total_seconds or 0.0) + (took or 0.0) if old else took
        out[key] = _Side(s.outcome, s.attempt if old is None else max(old.attempts, s.attempt), took,
                         round(total, 3) if total is not None else None)  # fmt: skip
    return out


def _run_seconds(run: Any) -> float | None:
    if run.started_at is None or run.ended_at is None:
        return None
    return round((run.ended_at - run.started_at).total_seconds(), 3)


def compare(run_a: Any, steps_a: list[Any], run_b: Any, steps_b: list[Any]) -> dict[str, Any]:
    """The comparison as a document (what ``--json`` prints and the table shows)."""
    a, b = _sides(steps_a), _sides(steps_b)
    order = list(dict.fromkeys([*a, *b]))
    rows, differences = [], []
    for phase, step in order:
        left, right = a.get((phase, step)), b.get((phase, step))
        delta = (
            round(right.seconds - left.seconds, 3)
            if left and right and left.seconds is not None and right.seconds is not None
            else None
        )
        rows.append({"step": step, "phase": phase, "a": left.as_dict() if left else None,
                     "b": right.as_dict() if right else None, "delta_seconds": delta})  # fmt: skip
        name = step if phase == "main" else f"{step} ({phase})"
        if left is None or right is None:
            differences.append(f"{name}: only in {'B' if left is None else 'A'}")
            continue
        if left.outcome != right.outcome:
            differences.append(f"{name}: {left.outcome} in A, {right.outcome} in B")
        if left.attempts != right.attempts:
            differences.append(f"{name}: {left.attempts} attempt(s) in A, {right.attempts} in B")
    for field, what in (("runbook", "runbook"), ("version", "runbook version"), ("environment", "environment"),
                        ("state", "outcome")):  # fmt: skip
        va, vb = getattr(run_a, field), getattr(run_b, field)
        if va != vb:
            differences.insert(0, f"{what}: {va} in A, {vb} in B")
    total_a, total_b = _run_seconds(run_a), _run_seconds(run_b)
    steps_total = {
        "a": round(sum(s.total_seconds or 0.0 for s in a.values()), 3),
        "b": round(sum(s.total_seconds or 0.0 for s in b.values()), 3),
    }
    return {
        "a": {"run_id": run_a.id, "runbook": run_a.runbook, "version": run_a.version,
              "environment": run_a.environment, "state": run_a.state, "seconds": total_a},
        "b": {"run_id": run_b.id, "runbook": run_b.runbook, "version": run_b.version,
              "environment": run_b.environment, "state": run_b.state, "seconds": total_b},
        "steps": rows,
        "differences": differences,
        "totals": {
            "a_seconds": total_a,
            "b_seconds": total_b,
            "delta_seconds": round(total_b - total_a, 3) if total_a is not None and total_b is not None else None,
            "steps_seconds": steps_total,
        },
    }  # fmt: skip
