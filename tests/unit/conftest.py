from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from erpops.actions.base import load_actions
from erpops.engine.events import ListSink
from erpops.engine.runner import Engine, RunOptions, RunResult
from erpops.environments import Environment
from erpops.runbook.loader import load_runbook
from erpops.state import MemoryStateStore


@pytest.fixture
def write_runbook(tmp_path: Path) -> Callable[..., Path]:
    counter = {"n": 0}

    def write(body: str, name: str | None = None) -> Path:
        counter["n"] += 1
        path = tmp_path / (name or f"rb{counter['n']}.yaml")
        path.write_text(textwrap.dedent(body).lstrip())
        return path

    return write


class Runner:
    def __init__(self) -> None:
        self.sink = ListSink()
        self.state = MemoryStateStore()
        self.engine = Engine(state=self.state, sink=self.sink)

    def run(
        self, path: Path, params: dict[str, Any] | None = None, env: Environment | None = None, **opts: Any
    ) -> RunResult:
        return self.engine.run(
            load_runbook(path, load_actions()), env or Environment(name="test"), params or {}, RunOptions(**opts)
        )

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sink.events if e["event"] == kind]


@pytest.fixture
def runner() -> Runner:
    return Runner()


HEADER = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: t, version: 1.0.0}
"""
