"""Lists in the terminal, in the style of ``kubectl get`` and ``gh``: no borders, two spaces between
columns, bold headers, ages instead of timestamps where the id already carries the time.

Ids, names, states, times and sizes are never wrapped nor cut (an on-call engineer copies them into
the next command); only free text (notes, errors, images, paths, URLs) wraps. Piped into another
program (no terminal, no COLUMNS), a list is as wide as its rows: nothing is wrapped for grep/awk.
Rich is imported when a list is drawn, not at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# Wide enough that no list row is ever wrapped when the output goes to a program.
_PIPE_WIDTH = 4096


def list_console(stderr: bool = False) -> Console:
    """The console lists are printed on: the terminal's width, or unbounded when piped."""
    from rich.console import Console

    console = Console(highlight=False, stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(highlight=False, stderr=stderr, width=_PIPE_WIDTH)
    return console


def print_list(table: Table | str, console: Console | None = None) -> None:
    """Print a list; whole columns are never cut, even when they alone are wider than the terminal
    (the terminal then wraps the line, as it does for ``kubectl get``, rather than lose an id)."""
    console = console or list_console()
    if isinstance(table, str):
        console.print(table)
        return
    need = _kept_width(console, table)
    if need > console.width:
        # this one table wider than the terminal, on the same stream with the same colours
        from rich.console import Console

        console = Console(
            file=console.file, width=need, highlight=False, force_terminal=console.is_terminal,
            color_system=console.color_system, no_color=console.no_color,  # type: ignore[arg-type]
        )  # fmt: skip
    console.print(table)


def fits(table: Table, console: Console) -> bool:
    """Whether ``table`` fits ``console`` with every whole column whole."""
    return _kept_width(console, table) <= console.width


def _kept_width(console: Console, table: Table) -> int:
    """The narrowest width at which every whole column is whole: their cells at full width, the
    wrapping columns at their header's width (their text wraps, folding a long URL if need be)."""
    from rich.measure import Measurement

    options = console.options.update(max_width=_PIPE_WIDTH)
    width = 0
    for column in table.columns:
        cells = [column.header, *column.cells] if column.no_wrap else [column.header]
        width += max(Measurement.get(console, options, cell).maximum for cell in cells)
    return width + 2 * (len(table.columns) - 1)


def listing(*columns: str, wrap: Iterable[str] = (), right: Iterable[str] = (), title: str | None = None) -> Table:
    """A table with ``columns``. Only those in ``wrap`` (free text: notes, errors, images, paths,
    URLs) may wrap; every other column (ids, names, states, times, sizes) stays whole on its line.
    Those in ``right`` are right-aligned (numbers)."""
    from rich.table import Table

    wrapping, right_aligned = set(wrap), set(right)
    unknown = (wrapping | right_aligned) - set(columns)
    if unknown:
        raise ValueError(f"no such column: {sorted(unknown)}")
    table = Table(
        box=None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
    )
    for name in columns:
        table.add_column(
            name,
            no_wrap=name not in wrapping,
            overflow="fold",
            justify="right" if name in right_aligned else "left",
        )
    return table


def age(then: datetime | str | None, now: datetime | None = None) -> str:
    """How long ago, as ``kubectl get`` prints AGE: 45s, 5m3s, 95m, 5h12m, 30h, 3d4h, 40d, 2y10d."""
    if then is None or then == "":
        return "-"
    if isinstance(then, str):
        then = datetime.fromisoformat(then)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < -1:
        return "in the future"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"
