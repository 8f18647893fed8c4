"""Terminal output: the plan view, live step progress and the final summary (Rich)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.markup import escape as _e
from rich.status import Status

from erpops.cli.tables import list_console, listing, print_list

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timeout": "red",
    "cancelled": "yellow",
    "skipped": "dim",
    "done-earlier": "cyan",
    "rolled-back": "yellow",
    "interrupted": "yellow",
    "planned": "cyan",
}
_CHANGE_STYLE = {"will change": "yellow", "may change": "magenta", "no change": "dim", "will fail": "bold red"}


def progress_text(e: dict[str, Any], rate: float) -> str:
    """One progress line: done (of the total, with the percentage and the time left when the
    total is known) and the rate."""
    total = e.get("total")
    if e.get("unit") == "B":
        text = f"{e['description']}: {human_bytes(e['done'])}" + (f" / {human_bytes(total)}" if total else "")
        text += f" at {human_bytes(rate)}/s"
    else:
        text = f"{e['description']}: {e['done']:g}" + (f"/{total:g}" if total else "") + f" {e.get('unit', '')}"
    if total:
        share = min(100.0, 100.0 * e["done"] / total)
        left = (total - e["done"]) / rate if rate > 0 else None
        text += f" — {share:.0f}%" + (f", about {_duration(left)} left" if left is not None else "")
    return text


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class ConsoleSink:
    """Renders engine events for a person. Works without a terminal too (plain lines, no colour)."""

    def __init__(self, console: Console | None = None, *, show_plan: bool = True) -> None:
        self.console = console or list_console()
        self.show_plan = show_plan
        self._status: Status | None = None
        self._finished: dict[str, list[dict[str, Any]]] = {}
        self._progress_start: dict[str, tuple[float, float]] = {}
        self._live = self.console.is_terminal

    # -- helpers --------------------------------------------------------------------------------
    def pause(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _indent(self, event: dict[str, Any]) -> str:
        return "  " * int(event.get("depth") or 0)

    # -- events ---------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        handler = getattr(self, "_on_" + event["event"].replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def _on_run_started(self, e: dict[str, Any]) -> None:
        kind = "resuming" if e.get("resumed") else ("planning" if e.get("dry_run") else "running")
        prefix = "↳ " if e.get("parent") else ""
        self.console.print(
            f"{prefix}[bold]{kind} {_e(e['runbook'])}[/bold] {_e(e['version'])} on [bold]{_e(e['environment'])}[/bold] "
            f"[dim](run {_e(e['run_id'])}, {_e(e['user'])}@{_e(e['host'])})[/dim]"
        )
        self._finished[e["run_id"]] = []

    def _on_run_planned(self, e: dict[str, Any]) -> None:
        if not self.show_plan:
            return
        table = listing("step", "action", "change", "what", wrap=("what",), title="plan")
        for row in e["plan"]:
            change = row.get("change") or ""
            label = row["step"] if row["phase"] == "main" else f"{row['step']} ({row['phase']})"
            table.add_row(
                _e(label),
                f"[cyan]{_e(row['action'])}[/]",
                f"[{_CHANGE_STYLE.get(change, '')}]{_e(change)}[/]",
                _e(row.get("summary") or ""),
            )
        print_list(table, self.console)

    def _on_step_started(self, e: dict[str, Any]) -> None:
        self.pause()
        attempt = f" (attempt {e['attempt']})" if e.get("attempt", 1) > 1 else ""
        label = f"{self._indent(e)}{_e(e['step'])} [dim]{_e(e['action'])}[/dim]{attempt}"
        if self._live:
            self._status = self.console.status(label)
            self._status.start()
        else:
            self.console.print(f"{self._indent(e)}▶ {_e(e['step'])} ({_e(e['action'])}){attempt}")

    def _on_step_log(self, e: dict[str, Any]) -> None:
        style = {"warning": "yellow", "error": "red", "debug": "dim"}.get(e.get("level", "info"), "")
        message = _e(e["message"])
        self.console.print(f"{self._indent(e)}  [{style}]{message}[/]" if style else f"  {message}")

    def _on_step_progress(self, e: dict[str, Any]) -> None:
        key = f"{e['run_id']}:{e['step']}:{e['description']}"
        now = time.monotonic()
        start, _ = self._progress_start.setdefault(key, (now, e["done"]))
        rate = e["done"] / (now - start) if now > start else 0.0
        text = progress_text(e, rate)
        if self._status is not None:
            self._status.update(f"{_e(e['step'])}: {_e(text)}")

    def _on_step_retry(self, e: dict[str, Any]) -> None:
        self.pause()
        self.console.print(
            f"  [yellow]↻ {_e(e['step'])}: retry in {e['delay']:g}s[/] [dim]({_e(str(e.get('error')))})[/dim]"
        )

    def _on_step_finished(self, e: dict[str, Any]) -> None:
        self.pause()
        self._finished.setdefault(e["run_id"], []).append(e)
        status = e["status"]
        mark = {"succeeded": "✓", "skipped": "-", "failed": "✗", "timeout": "✗", "cancelled": "✗"}.get(status, "•")
        style = _STATUS_STYLE.get(status, "")
        phase = f" [dim]({e['phase']})[/dim]" if e.get("phase") not in (None, "main") else ""
        line = f"{self._indent(e)}[{style}]{mark} {_e(e['step'])}[/]{phase} [dim]{e['duration']:.2f}s[/dim]"
        if status == "skipped":
            line += " [dim]skipped[/dim]"
        if e.get("error"):
            line += f" [red]{_e(e['error'])}[/red]"
        self.console.print(line)

    def _on_approval(self, e: dict[str, Any]) -> None:
        self.console.print(f"  [green]approved[/green] by {_e(e['who'])} ({_e(e['how'])}): {_e(e['message'])}")

    def _on_run_finished(self, e: dict[str, Any]) -> None:
        self.pause()
        steps = self._finished.pop(e["run_id"], [])
        if e.get("depth") or e.get("state") == "planned":
            if e.get("state") == "planned":
                self.console.print("[cyan]dry run: nothing was changed[/cyan]")
                if e.get("error"):
                    self.console.print(f"[red]{_e(e['error'])}[/red]")
            return
        if steps:
            table = listing("step", "phase", "status", "time", "attempts",
                            right=("time", "attempts"), title="summary")  # fmt: skip
            for s in steps:
                st = s["status"]
                table.add_row(
                    _e(s["step"]),
                    s.get("phase", ""),
                    f"[{_STATUS_STYLE.get(st, '')}]{st}[/]",
                    f"{s['duration']:.2f}s",
                    str(s.get("attempt", 1)),
                )
            print_list(table, self.console)
        state = e["state"]
        self.console.print(
            f"[bold {_STATUS_STYLE.get(state, '')}]{state}[/] in {e['duration']:.2f}s "
            f"[dim](run {_e(e['run_id'])}, exit {e['exit_code']})[/dim]"
        )
        if e.get("error"):
            self.console.print(f"[red]{_e(e['error'])}[/red]")


class _Answer:
    """Standard input for a prompt that a Ctrl-C must end at once: the run's interruption is
    looked at every 0.1 s while nothing is typed (a blocking read would hold the step until the
    engine's grace period gives up on it, 5 s later)."""

    def __init__(self, stream: Any, cancelled: threading.Event) -> None:
        self.stream, self.cancelled = stream, cancelled

    def readline(self) -> str:
        import select

        while not self.cancelled.is_set():
            ready, _, _ = select.select([self.stream], [], [], 0.1)
            if ready:
                line: str = self.stream.readline()
                if not line:
                    raise EOFError
                return line
        raise EOFError  # interrupted: nobody answered


def make_approver(sink: ConsoleSink, cancelled: threading.Event | None = None) -> Any:
    """Ask on the terminal. ``require_text`` (the environment name) must be typed to approve.
    ``cancelled`` (the engine's interruption) ends a prompt at once."""

    def approver(message: str, require_text: str | None) -> bool | None:
        from rich.prompt import Confirm, Prompt

        sink.pause()
        console = sink.console
        if not console.is_terminal:
            return None
        stream = _Answer(sys.stdin, cancelled) if cancelled is not None else None
        try:
            if require_text:
                console.print(f"[bold yellow]approval needed:[/] {_e(message)}")
                typed = Prompt.ask(f"type the environment name [bold]{require_text}[/bold] to approve",
                                   console=console, stream=stream)  # type: ignore[arg-type]  # fmt: skip
                return typed.strip() == require_text
            return Confirm.ask(f"[bold yellow]approve?[/] {_e(message)}", console=console, default=False,
                               stream=stream)  # type: ignore[arg-type]  # fmt: skip
        except EOFError:
            return None

    return approver
