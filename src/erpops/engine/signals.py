"""SIGINT/SIGTERM during a run: stop the current step, then undo and finally run, exit 130.

SIGHUP (the terminal went away: an SSH session dropped) does not stop a run: half a failover or
a deploy stopped mid-rollout is worse than either finished, and nobody is there to decide. The
run goes on, its output to /dev/null (:class:`erpops.cli.boundary.ReaderGone`), its journal whole;
`erpops runs show` has the outcome. Its child processes are in sessions of their own: the
terminal's SIGHUP does not reach them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def interrupt_handlers(engine: Any) -> Iterator[None]:
    """While the block runs, the first SIGINT/SIGTERM sets ``engine.interrupted`` (the engine cancels
    the step in flight, kills its child processes, runs undo and finally); a second SIGINT aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if engine.interrupted.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        engine.interrupted.set()

    def hung_up(signum: int, frame: FrameType | None) -> None:
        engine.hung_up = True  # a Python handler, not SIG_IGN: children do not inherit it

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hung_up)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
