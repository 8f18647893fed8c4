"""Child processes that really stop: own process group, killed as a group on cancel or timeout."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from erpops.errors import PermanentError, StepTimeout


def kill_group(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def _drain(stream: IO[bytes], tail: collections.deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        tail.append(raw.decode(errors="replace").rstrip("\n"))
    stream.close()


def run_process(
    argv: Sequence[str],
    *,
    cancel: threading.Event,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    stdin: Any = None,
    stdout: Any = None,
    tail_lines: int = 20,
) -> tuple[int, str, str, float]:
    """Run ``argv`` (never a shell string). Returns (returncode, stdout tail, stderr tail, seconds).

    ``stdout`` may be a file object to stream to; otherwise the last ``tail_lines`` lines are kept.
    Raises StepTimeout when ``timeout`` passes and PermanentError when ``cancel`` is set; in both
    cases the whole process group has been killed first.
    """
    if isinstance(argv, str):
        raise PermanentError("a command must be an argv list, never a shell string")
    start = time.monotonic()
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise PermanentError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise PermanentError(f"command not executable: {argv[0]}") from None
    out_tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    err_tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    readers = []
    if stdout is None and proc.stdout is not None:
        readers.append(threading.Thread(target=_drain, args=(proc.stdout, out_tail), daemon=True))
    if proc.stderr is not None:
        readers.append(threading.Thread(target=_drain, args=(proc.stderr, err_tail), daemon=True))
    for t in readers:
        t.start()
    deadline = start + timeout if timeout else None
    while True:
        try:
            proc.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancel.is_set():
            kill_group(proc)
            raise PermanentError(f"{argv[0]} stopped: the step was cancelled")
        if deadline is not None and time.monotonic() > deadline:
            kill_group(proc)
            raise StepTimeout(f"{argv[0]} ran past its timeout of {timeout:g}s and was killed")
    # The direct child is gone; anything it left in its group goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for t in readers:
        t.join(timeout=2)
    return proc.returncode, "\n".join(out_tail), "\n".join(err_tail), time.monotonic() - start
