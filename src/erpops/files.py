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


def state_dir() -> Path:
    """Where erpops keeps its local state: ``$XDG_STATE_HOME/erpops``, else ``~/.local/state/erpops``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "erpops"


@contextmanager
def atomic_file(path: str | Path, mode: int = 0o600, *, prefix: str | None = None) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary file in the same directory (``prefix``, default
    ``.<name>.``), renamed over it with ``mode`` once the block ends without an error; removed
    otherwise. The directory is created when missing."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", dir=path.parent)
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

    directory = state_dir() / "tracebacks"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return write_atomic(directory / f"{name}.txt", redact("".join(traceback.format_exception(exc))).encode(), 0o600)
    except OSError:
        return None
