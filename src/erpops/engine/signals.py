"""SIGINT/SIGTERM during a run: stop the current step, then undo and finally run, exit 130."""

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

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
