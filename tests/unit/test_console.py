"""What the terminal shows is what happened: text from runbooks, steps and errors is shown as it is."""

from __future__ import annotations

import io

from rich.console import Console

from erpops.backends.runtime import service_specs
from erpops.backends.runtime.base import RuntimeMisconfigured
from erpops.cli.console import ConsoleSink
from erpops.environments import Environment


def test_messages_are_not_read_as_rich_markup() -> None:
    """Regression: ``[link=...]`` and ``[params.tok]`` in a message vanished (Rich markup)."""
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, force_terminal=False, width=200, highlight=False))
    run = {"run_id": "r1", "depth": 0}
    sink.emit({"event": "run.started", "runbook": "t[bold]", "version": "1.0.0", "environment": "e",
               "user": "u", "host": "h", **run})  # fmt: skip
    sink.emit({"event": "step.started", "step": "s[x]", "action": "log", "attempt": 1, **run})
    message = "see [link=http://x]here[/link] [params.tok]"
    sink.emit({"event": "step.log", "step": "s[x]", "level": "warning", "message": message, **run})
    sink.emit({"event": "step.finished", "step": "s[x]", "status": "failed", "duration": 0.1, "phase": "main",
               "error": "bad [red]value[/red] in [params.tok]", **run})  # fmt: skip
    sink.emit({"event": "run.finished", "state": "failed", "duration": 0.2, "exit_code": 1,
               "error": "step s: [params.tok] missing", **run})  # fmt: skip
    text = out.getvalue()
    for literal in ("t[bold]", "[link=http://x]here[/link] [params.tok]", "bad [red]value[/red] in [params.tok]",
                    "step s: [params.tok] missing", "s[x]"):  # fmt: skip
        assert literal in text, (literal, text)


def test_validator_messages_carry_no_pydantic_prefix() -> None:
    """Regression: pydantic's "Value error, " prefix leaked into messages."""
    env = Environment.model_validate(
        {"name": "e", "runtime": {"kind": "docker", "services": {"web": {"volumes": {"/srv": "relative/path"}}}}}
    )
    try:
        service_specs(env)
    except RuntimeMisconfigured as exc:
        message = str(exc)
    else:
        raise AssertionError("a relative mount target was accepted")
    assert "runtime.services.web.volumes: volume '/srv': give an absolute path" in message, message
    assert "Value error" not in message


def test_progress_shows_the_share_and_the_time_left_when_the_total_is_known() -> None:
    """Issue 17 item 8 (regression): a restore's progress showed bytes only, though the manifest
    knows each artifact's size."""
    from erpops.cli.console import progress_text

    mib = 1024 * 1024
    known = {"description": "fetch db", "done": 50 * mib, "total": 100 * mib, "unit": "B"}
    assert progress_text(known, 10 * mib) == "fetch db: 50.0 MiB / 100.0 MiB at 10.0 MiB/s — 50%, about 5s left"
    assert " — 0%, " in progress_text({**known, "done": 10 * mib, "total": 10000 * mib}, 10 * mib)
    assert progress_text({**known, "done": 10 * mib, "total": 10000 * mib}, 10 * mib).endswith("about 16m39s left")
    assert progress_text({**known, "total": None}, 10 * mib) == "fetch db: 50.0 MiB at 10.0 MiB/s"
