"""Engine overhead per step: a 500-step runbook of `log` steps run by the engine with the journal
on, against the same 500 `log` actions applied directly (no engine) in the same invocation.

Reports per-step overhead in milliseconds (target < 2 ms) and the ratio to the direct run.

    uv run python bench/bench_engine.py [--steps 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def make_runbook(path: Path, steps: int) -> None:
    lines = ["apiVersion: erpops/v1", "kind: Runbook", "metadata: {name: bench, version: 1.0.0}", "steps:"]
    for i in range(steps):
        lines += [f"  - id: s{i}", "    action: log", f"    with: {{message: 'step {i} of {{{{ run.id }}}}'}}"]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from erpops.actions.base import RunInfo, load_actions
    from erpops.actions.core import Log
    from erpops.engine.events import NullSink
    from erpops.engine.runner import Engine, RunOptions
    from erpops.engine.store import open_state_store
    from erpops.environments import Config, Environment
    from erpops.runbook.loader import load_runbook
    from erpops.state import MemoryStateStore, StateStore

    tmp = Path(tempfile.mkdtemp(prefix="erpops-bench-"))
    rb_path = tmp / "bench.yaml"
    make_runbook(rb_path, args.steps)
    env = Environment(name="bench")

    class Ctx:
        run = RunInfo("x", None, "u", "h", "bench", "1", "bench")  # type: ignore[arg-type]  # a bench RunInfo needs no start time
        step_id = "s"

        def log(self, *a: object, **k: object) -> None:
            pass

    def direct() -> float:
        action, ctx = Log(), Ctx()
        start = time.perf_counter()
        for i in range(args.steps):
            action.apply(Log.Params(message=f"step {i}"), ctx)  # type: ignore[arg-type]  # a bench context: enough of ActionContext for log
        return time.perf_counter() - start

    journals: dict[str, Callable[[], StateStore]] = {"memory": lambda: MemoryStateStore()}
    try:
        state_url = f"sqlite:///{tmp / 'state.db'}"
        cfg = Config(state=state_url)
        store = open_state_store(cfg)
        if type(store).__name__ != "MemoryStateStore":
            store.close()
            journals["sqlite"] = lambda: open_state_store(cfg)
    except Exception as exc:
        print(f"(sqlite journal unavailable: {exc})")

    def engine_run(make_store) -> float:
        runbook = load_runbook(rb_path, load_actions())
        store = make_store()
        engine = Engine(state=store, sink=NullSink())
        start = time.perf_counter()
        result = engine.run(runbook, env, {}, RunOptions())
        elapsed = time.perf_counter() - start
        store.close()
        assert result.state == "succeeded", result.error
        return elapsed

    results: dict[str, list[float]] = {"direct": [], **{k: [] for k in journals}}
    engine_run(journals["memory"])  # warm-up
    for _ in range(args.rounds):
        results["direct"].append(direct())
        for name, make in journals.items():
            results[name].append(engine_run(make))
    base = statistics.median(results["direct"])
    print(f"{args.steps} log steps, median of {args.rounds} rounds")
    print(f"{'run':28} {'total':>9} {'per step':>10} {'overhead/step':>14}")
    for name, values in results.items():
        med = statistics.median(values)
        over = (med - base) / args.steps * 1000
        label = "direct apply (reference)" if name == "direct" else f"engine, {name} journal"
        print(f"{label:28} {med * 1000:7.1f}ms {med / args.steps * 1000:8.3f}ms {over:12.3f}ms")
    for name in journals:
        over = (statistics.median(results[name]) - base) / args.steps * 1000
        print(
            f"engine overhead with {name} journal: {over:.3f} ms/step (target < 2 ms): {'OK' if over < 2 else 'OVER'}"
        )


if __name__ == "__main__":
    main()
