"""Fleet selection and limits (issue 15): repeated --env joined, groups and globs resolved, the
error budget, the fleet's exit code."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from erpops.cli.app import joined_envs
from erpops.engine import fleet
from erpops.environments import Config
from erpops.errors import ExitCode, InvalidInput


def test_a_repeated_env_is_one_selection() -> None:
    assert joined_envs(["backup", "--env", "a", "-e", "b", "--env=c", "--yes"]) == ["backup", "--env", "a,b,c", "--yes"]
    assert joined_envs(["backup", "--env", "a"]) == ["backup", "--env", "a"]
    assert joined_envs(["run", "x.yaml", "--", "--env", "z"]) == ["run", "x.yaml", "--", "--env", "z"]


def test_groups_globs_and_lists_resolve_in_order_without_repeats() -> None:
    cfg = Config.model_validate({"environments": {n: {} for n in ("t1", "t2", "t10", "prod")},
                                 "groups": {"tenants": ["t*"], "core": ["prod", "t1"]}})  # fmt: skip
    assert cfg.select("tenants") == ["t1", "t10", "t2"]
    assert cfg.select("core,tenants") == ["prod", "t1", "t10", "t2"]
    assert cfg.select("t?") == ["t1", "t2"] and cfg.select("prod") == ["prod"]
    with pytest.raises(InvalidInput, match="'x\\*' matches no environment"):
        cfg.select("t1,x*")
    with pytest.raises(InvalidInput, match="selects 4 environments"):
        cfg.environment("core,tenants")
    assert cfg.environment("t1,t1").name == "t1"
    with pytest.raises(ValueError, match="not an environment"):
        Config.model_validate({"environments": {"a": {}}, "groups": {"g": ["b"]}})


def test_error_budget_and_exit_code() -> None:
    assert fleet.error_budget(None, 20, False) is None and fleet.error_budget("3", 20, False) == 3
    assert fleet.error_budget("25%", 20, False) == 5 and fleet.error_budget("1%", 20, False) == 1
    assert fleet.error_budget(None, 20, True) == 1
    for bad in ("0", "-1", "x", "0%", "150%"):
        with pytest.raises(InvalidInput):
            fleet.error_budget(bad, 20, False)
    m = fleet.Member
    assert fleet.exit_code([m("a", "succeeded"), m("b", "succeeded")]) == ExitCode.SUCCEEDED
    assert fleet.exit_code([m("a", "locked"), m("b", "locked")]) == ExitCode.LOCKED
    assert fleet.exit_code([m("a", "locked"), m("b", "succeeded")]) == ExitCode.STEP_FAILED
    assert fleet.exit_code([m("a", "failed"), m("b", "not started")]) == ExitCode.STEP_FAILED


def test_parallel_is_bounded_and_failures_stop_new_starts() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def start(name: str) -> SimpleNamespace:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        code = ExitCode.STEP_FAILED if name in ("e3", "e4") else ExitCode.SUCCEEDED
        return SimpleNamespace(run_id=f"r-{name}", exit_code=code, error=None, outputs={}, state="x")

    names = [f"e{i}" for i in range(8)]
    members = fleet.run(names, start, parallel=3)
    assert peak == 3 and [m.outcome for m in members].count("failed") == 2
    members = fleet.run(names, start, parallel=1, max_errors=1)
    assert [m.outcome for m in members] == ["succeeded"] * 3 + ["failed"] + ["not started"] * 4
