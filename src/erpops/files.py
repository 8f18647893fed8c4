"""Files erpops keeps on the local machine: its private state directory, atomic writes, and the
saved tracebacks of bugs.

- :func:`state_dir`: ``$XDG_STATE_HOME/erpops`` (``~/.local/state/erpops``): the default SQLite state
  store, the audit trails, the tracebacks.
- :func:`atomic_file` / :func:`write_atomic`: a file appears whole or not at all (a temporary file
  beside it, then a rename), with the mode asked for — as node_exporter's textfile collector and
  a crash in the middle of a write need.
- :func:`save_traceback`: a bug's traceback, redacted, ``0600`` in ``0700`` ``tracebacks/``.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from erpops.errors import InvalidInput


def xdg_base(variable: str, under_home: str) -> Path:
    """``$variable`` (an XDG base directory such as ``XDG_STATE_HOME``), else ``~/<under_home>``.

    A process with neither (no ``HOME`` and a user id with no passwd entry, as some containers
    run) gets :class:`InvalidInput` naming what to set, not a crash."""
    value = os.environ.get(variable)
    if value:
        return Path(value)
    try:
        return Path.home() / under_home
    except RuntimeError:  # HOME unset and no passwd entry for this uid
        raise InvalidInput(
            f"no home directory for user id {os.getuid()} (HOME is not set and the user has no passwd entry): "
            f"nowhere to find ~/{under_home}",
            hint=f"set HOME or {variable}",
        ) from None


def state_dir() -> Path:
    """Where erpops keeps its local state: ``$XDG_STATE_HOME/erpops``, else ``~/.local/state/erpops``."""
    return xdg_base("XDG_STATE_HOME", ".local/state") / "erpops"


@contextmanager
def atomic_file(path: str | Path, mode: int = 0o600, *, prefix: str | None = None) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary file in the same directory (``prefix``, default
    ``.<name>.``), renamed over it with ``mode`` once the block ends without an error; removed
    otherwise. The directory is created when missing."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one beside it
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """``data`` into ``path`` atomically (see :func:`atomic_file`); returns the path written."""
    path = Path(path).expanduser()
    with atomic_file(path, mode) as f:
        f.write(data)
    return path


def save_traceback(exc: BaseException, name: str) -> Path | None:
    """Keep the (redacted) traceback of a bug as ``tracebacks/<name>.txt`` in the state directory,
    readable by its owner only; None when it could not be written (never raises for that)."""
    from erpops.secrets import redact

    try:
        directory = state_dir() / "tracebacks"
    except InvalidInput:
        return None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return write_atomic(directory / f"{name}.txt", redact("".join(traceback.format_exception(exc))).encode(), 0o600)
    except OSError:
        return None
