"""Fleet runs: one runbook over several environments (``--env tenants``, ``--env a,b``, a glob).

Each environment's run is its own journaled run with its own environment lock, as if started
alone; the fleet only decides when each starts:

- at most ``parallel`` at a time (default 1);
- after ``max_errors`` failures (a count, or a percentage of the environments — SSM Automation's
  MaxErrors) no new environment starts; those running finish; ``fail_fast`` is ``max_errors`` 1;
- an environment locked by another run is reported ``locked`` (with who holds it) and the others
  go on.

The members are linked by the fleet id (a ``fleet`` record in the state store naming them), so
``erpops runs show FLEET`` shows them together.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from erpops.errors import ExitCode, InvalidInput

FLEET_RECORD = "fleet"
FLEET_SCOPE = "*"  # fleet records are not one environment's


@dataclass
class Member:
    environment: str
    outcome: str = "not started"  # succeeded | failed | locked | interrupted | planned | not started
    run_id: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "outcome": self.outcome, "run_id": self.run_id,
                "exit_code": self.exit_code, "seconds": self.seconds, "error": self.error,
                "outputs": self.outputs}  # fmt: skip


def error_budget(spec: str | None, total: int, fail_fast: bool) -> int | None:
    """How many failures stop new starts: ``3``, ``25%`` (of ``total``, at least 1), None: no limit."""
    if fail_fast:
        return 1
    if spec is None or spec == "":
        return None
    text = spec.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, math.ceil(total * share / 100))
        count = int(text)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise InvalidInput(f"--max-errors {spec!r}: give a count (3) or a percentage (25%) above 0") from None


def new_fleet_id() -> str:
    import secrets

    return "fleet-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def exit_code(members: list[Member]) -> ExitCode:
    """0 when every environment succeeded (or was planned), 4 only when every one was locked, else 1."""
    if all(m.outcome in ("succeeded", "planned") for m in members):
        return ExitCode.SUCCEEDED
    if all(m.outcome == "locked" for m in members):
        return ExitCode.LOCKED
    if any(m.outcome == "interrupted" for m in members):
        return ExitCode.INTERRUPTED
    return ExitCode.STEP_FAILED


def run(
    environments: list[str],
    start: Callable[[str], Any],
    *,
    parallel: int = 1,
    max_errors: int | None = None,
    stop: threading.Event | None = None,
    on_done: Callable[[Member], None] | None = None,
) -> list[Member]:
    """Run ``start(environment)`` (returns a RunResult) for each environment as the limits allow."""
    if parallel < 1:
        raise InvalidInput("--parallel must be 1 or more")
    members = {name: Member(name) for name in environments}
    pending = list(environments)
    lock = threading.Lock()
    failures = 0
    stop = stop or threading.Event()

    def next_one() -> str | None:
        with lock:
            if not pending or stop.is_set() or (max_errors is not None and failures >= max_errors):
                return None
            return pending.pop(0)

    def worker() -> None:
        nonlocal failures
        while (name := next_one()) is not None:
            member = members[name]
            t0 = time.monotonic()
            try:
                result = start(name)
            except Exception as exc:  # a member that cannot start: locked by another run, or misconfigured
                code = getattr(exc, "exit_code", ExitCode.STEP_FAILED)
                member.outcome = "locked" if code == ExitCode.LOCKED else "failed"
                member.error, member.exit_code = str(exc), int(code)
            else:
                member.run_id, member.exit_code, member.error = result.run_id, int(result.exit_code), result.error
                member.outputs = dict(result.outputs or {})
                member.outcome = {
                    ExitCode.SUCCEEDED: "planned" if result.state == "planned" else "succeeded",
                    ExitCode.LOCKED: "locked",
                    ExitCode.INTERRUPTED: "interrupted",
                }.get(result.exit_code, "failed")
            member.seconds = round(time.monotonic() - t0, 3)
            with lock:
                if member.outcome not in ("succeeded", "planned", "locked"):
                    failures += 1
            if on_done is not None:
                on_done(member)

    threads = [threading.Thread(target=worker, daemon=True, name=f"erpops-fleet-{i}") for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # the main thread stays free for signals
    return [members[name] for name in environments]
