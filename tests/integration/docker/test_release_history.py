"""Release history and peak records through the engine, with the in-memory state store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from erpops.actions.base import load_actions
from erpops.actions.peak import parse_until
from erpops.engine.runner import Engine, RunOptions
from erpops.environments import Environment
from erpops.errors import ExitCode, InvalidInput
from erpops.runbook.loader import load_runbook
from erpops.state import MemoryStateStore
from tests.fixtures.docker import ImageSet

pytestmark = pytest.mark.docker


def _run(tmp: Path, state: MemoryStateStore, env: Environment, steps: str, params: dict[str, Any] | None = None) -> Any:
    path = tmp / f"rb{len(list(tmp.glob('rb*.yaml')))}.yaml"
    path.write_text(
        "apiVersion: erpops/v1\nkind: Runbook\nmetadata: {name: t, version: 1.0.0}\n"
        "params: {to: {type: string}}\nsteps:\n" + steps
    )
    return Engine(state=state).run(load_runbook(path, load_actions()), env, params or {}, RunOptions())


def _put(state: MemoryStateStore, env: str, key: str, images: dict[str, str], status: str, **extra: Any) -> None:
    state.put_record("release", env, key, {"images": images, "status": status, "time": key, **extra})


def test_resolve_release_skips_the_running_and_the_rolled_back_from(
    docker_env: Any, docker_images: ImageSet, tmp_path: Path
) -> None:
    from erpops.backends.runtime import open_runtime

    e = docker_env(front=False)
    env = e.env
    with open_runtime(env) as rt:
        rt.deploy("web", docker_images.healthy_v2, release="r3", timeout=30)
    state = MemoryStateStore()
    v1, v2 = {"web": docker_images.healthy}, {"web": docker_images.healthy_v2}
    _put(state, e.name, "r1", v1, "good")
    _put(state, e.name, "r2", {"web": "other:tag"}, "good")
    _put(state, e.name, "r2b", {"web": "broken:tag"}, "failed")
    _put(state, e.name, "r3", v2, "good")
    step = "  - id: target\n    action: runtime.resolve_release\n    with: {to: '{{ params.to }}'}\n"
    res = _run(tmp_path, state, env, step)
    assert res.state == "succeeded", res.error
    out = res.steps[0].outputs
    assert (out["release"], out["current"], out["images"]) == ("r2", "r3", {"web": "other:tag"})
    # r2 was abandoned by a rollback from it: the next "last good" is r1
    _put(state, e.name, "r4", v2, "good", rolled_back_from="r2", rollback_to="r3")
    assert _run(tmp_path, state, env, step).steps[0].outputs["release"] == "r1"
    assert _run(tmp_path, state, env, step, {"to": "r2b"}).steps[0].outputs["release"] == "r2b"
    missing = _run(tmp_path, state, env, step, {"to": "nope"})
    assert missing.exit_code == ExitCode.INVALID_INPUT and "'nope' is not in the history" in (missing.error or "")


def test_record_release_keeps_the_first_data_and_lists_newest_first(docker_env: Any, tmp_path: Path) -> None:
    e = docker_env(front=False)
    state = MemoryStateStore()
    steps = (
        "  - id: pending\n    action: runtime.record_release\n"
        "    with: {status: pending, image: 'a:1', backup_id: b-1}\n"
        "  - id: good\n    action: runtime.record_release\n    with: {status: good}\n"
        "  - id: list\n    action: runtime.releases\n"
    )
    res = _run(tmp_path, state, e.env, steps)
    assert res.state == "succeeded", res.error
    (rel,) = res.steps[2].outputs["releases"]
    assert rel["id"] == res.run_id == res.steps[2].outputs["last_good"]
    assert rel["images"] == {"web": "a:1", "worker": "a:1"} and rel["backup_id"] == "b-1"
    assert rel["status"] == "good" and rel["pending_at"] <= rel["good_at"]


def test_parse_until() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_until("4h", now) == now + timedelta(hours=4)
    assert parse_until("2026-11-23T18:00+01:00", now) == datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        parse_until("tomorrow-ish", now)
