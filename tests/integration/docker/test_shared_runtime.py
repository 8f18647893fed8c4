"""One open runtime per environment and process, shared by the steps of a run (real engine)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erpops.backends import runtime as runtime_mod
from erpops.backends.runtime import UnknownService, close_shared_runtimes, shared_runtime
from erpops.backends.runtime.docker.runtime import DockerRuntime
from erpops.errors import TargetUnreachable
from tests.fixtures.docker import ImageSet, dead_docker_host

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    close_shared_runtimes()
    yield
    close_shared_runtimes()


def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every runtime actually opened (engine client made and pinged)."""
    calls: list[str] = []
    real = runtime_mod.open_runtime

    def spy(env: Any) -> Any:
        calls.append(env.name)
        return real(env)

    monkeypatch.setattr(runtime_mod, "open_runtime", spy)
    return calls


def test_same_environment_shares_one_runtime_others_get_their_own(
    docker_env: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = opened(monkeypatch)
    a, b = docker_env(front=False), docker_env(front=False)
    with shared_runtime(a.env) as first:
        first.current()
    with shared_runtime(a.env) as again:  # an equal Environment, not the same object
        assert isinstance(first, DockerRuntime) and isinstance(again, DockerRuntime)
        assert again is first and again.client is first.client
        # an error of the operation (not of the engine) keeps it open
        with pytest.raises(UnknownService):
            again.spec("nope")
    with shared_runtime(a.env) as still, shared_runtime(b.env) as other:
        assert still is first and other is not first and other.env.name == b.name
    assert calls == [a.name, b.name]
    # where the engine is comes from the environment too: a dead DOCKER_HOST is checked, not reused
    monkeypatch.setitem(os.environ, "DOCKER_HOST", dead_docker_host(tmp_path))
    with pytest.raises(TargetUnreachable), shared_runtime(a.env):
        pass
    monkeypatch.delitem(os.environ, "DOCKER_HOST")
    with shared_runtime(a.env) as back:
        assert back is first


def test_unreachable_engine_drops_the_runtime_and_evicted_ones_close_when_unused(
    docker_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = opened(monkeypatch)
    e = docker_env(front=False)
    with pytest.raises(TargetUnreachable), shared_runtime(e.env) as first:
        raise TargetUnreachable("engine went away")
    with shared_runtime(e.env) as second:
        assert second is not first  # opened (and the engine checked) again
    assert calls == [e.name, e.name]

    closed: list[str] = []
    envs = [docker_env(front=False) for _ in range(runtime_mod.SHARED_MAX + 1)]
    with shared_runtime(envs[0].env) as oldest:
        oldest.close = lambda: closed.append(envs[0].name)  # type: ignore[method-assign]  # replaced to observe when the runtime is closed
        for other in envs[1:]:  # the oldest is evicted while still in use: not closed yet
            with shared_runtime(other.env):
                pass
        assert closed == []
        oldest.current()
    assert closed == [envs[0].name]  # closed once its user is done
    with shared_runtime(envs[0].env) as reopened:
        assert reopened is not oldest


def test_deploy_runbook_opens_the_runtime_once(
    docker_env: Any, docker_images: ImageSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from erpops.actions.base import load_actions
    from erpops.engine.runner import Engine, RunOptions
    from erpops.runbook.library import find
    from erpops.runbook.loader import load_runbook
    from erpops.state import MemoryStateStore

    calls = opened(monkeypatch)
    e = docker_env(front=False)
    runbook = load_runbook(find("deploy"), load_actions())
    params = {"image": docker_images.healthy, "skip_backup": True, "migrate": False}
    result = Engine(state=MemoryStateStore()).run(runbook, e.env, params, RunOptions(assume_yes=True))
    assert result.state == "succeeded", result.error
    assert e.images("web") == {docker_images.healthy} and len(e.ids("web")) == 2
    # plan, preflight, rollout, health gate: one engine client
    assert calls == [e.name]
