"""What a run was asked for on the command line: shared by the one-environment path
(:mod:`erpops.cli.common`) and fleet runs (:mod:`erpops.cli.fleet`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Common:
    env: str | None = None
    dry_run: bool = False
    yes: bool = False
    json: bool = False
    runbook: str | None = None
    params: list[str] = field(default_factory=list)
    config: str | None = None
    wait: str | None = None
    parallel: int = 1
    max_errors: str | None = None
    fail_fast: bool = False
