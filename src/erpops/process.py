"""Child processes that really stop: own process group, killed as a group on cancel or timeout,
and never outliving erpops.

Two guards make a child die with the erpops process that started it, even after ``kill -9``:

- every child asks the kernel for ``SIGKILL`` when its parent dies (``PR_SET_PDEATHSIG``, Linux;
  strictly, when the *thread* that started it ends: every caller waits for its child in the thread
  that started it);
- every child carries the run's id in its environment (``ERPOPS_RUN_ID``), inherited by whatever
  it starts in turn (a shell's ``sleep``, ``pg_restore``'s workers), which the death signal does
  not reach. A resumed run, and the sweep of a dead run's leftovers, first kill every process still
  carrying that run's id (:func:`reap_run`): a step is never run again while its first attempt
  is still finishing.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from erpops.errors import PermanentError, StepTimeout

#: the environment variable naming the run a child process belongs to
RUN_ID_VAR = "ERPOPS_RUN_ID"
_PR_SET_PDEATHSIG = 1
_marks: list[str] = []
_marks_lock = threading.Lock()


@contextlib.contextmanager
def marking_children(run_id: str) -> Iterator[None]:
    """Children started inside the block carry ``ERPOPS_RUN_ID=<run_id>`` (the outermost run's id
    when runs nest: a resume is of the outermost run)."""
    with _marks_lock:
        _marks.append(run_id)
    try:
        yield
    finally:
        with _marks_lock:
            _marks.remove(run_id)


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, ``env`` over it, and the run mark."""
    full = dict(os.environ)
    if env:
        full.update(env)
    with _marks_lock:
        if _marks:
            full[RUN_ID_VAR] = _marks[0]
    return full


@functools.cache
def _libc_prctl() -> Any:
    """libc's ``prctl`` (the symbols this process already has loaded: no library search), once;
    None off Linux."""
    if not os.path.exists("/proc/self"):  # not Linux: no parent-death signal
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent() -> Any:
    """A ``preexec_fn`` making the child receive SIGKILL when erpops dies (None where the platform
    has no such thing). Resolved before the fork: the child only makes one system call."""
    prctl = _libc_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # erpops died before the signal was asked for
            os._exit(137)

    return preexec


def run_children(run_id: str) -> list[int]:
    """Processes of this machine (that we may read) whose environment says they belong to run
    ``run_id`` — never this process."""
    needle = f"{RUN_ID_VAR}={run_id}".encode() + b"\0"
    found: list[int] = []
    me = os.getpid()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as fh:
                    environ = b"\0" + fh.read()
            except OSError:  # gone, or not ours to read
                continue
            if b"\0" + needle in environ or environ.endswith(b"\0" + needle[:-1]):
                found.append(int(entry.name))
    return found


def reap_run(run_id: str, wait: float = 5.0) -> list[str]:
    """SIGKILL every process still carrying run ``run_id``'s mark (what a killed erpops left
    running) and wait until they are gone. Returns ``"pid command"`` of each one killed."""
    killed: list[str] = []
    for pid in run_children(run_id):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = "?"
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(f"{pid} {command[:120]}")
    deadline = time.monotonic() + wait
    while killed and time.monotonic() < deadline and run_children(run_id):
        time.sleep(0.05)
    return killed


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
    full_env = child_env(env)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
            preexec_fn=die_with_parent(),
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
