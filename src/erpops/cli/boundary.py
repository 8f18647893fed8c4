"""The one error boundary: user errors become one line and an exit code; bugs a saved traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from erpops.errors import ErpopsError, ExitCode, ValidationFailed


class ReaderGone:
    """``sys.stdout`` (and ``sys.stderr``) for a command whose reader may go away (``erpops backup
    --json | head -3``, a ``jq`` that crashed, the terminal of a dropped SSH session): once the pipe
    is closed or the terminal hung up, what follows goes to /dev/null instead of raising
    ``BrokenPipeError`` (or ``EIO``) in the middle of a run. A run is not stopped half-way, nor left
    out of its journal, because nobody reads its output any more; it ends as it would have, with
    its own exit code (``erpops runs show`` has what was not read)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._gone_or_raise(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._gone_or_raise(exc)

    def _gone_or_raise(self, exc: OSError) -> None:
        import errno

        if exc.errno not in (errno.EPIPE, errno.EIO):  # EIO: a terminal that hung up
            raise exc
        self._to_devnull()

    def _to_devnull(self) -> None:
        import os

        self.gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:  # the descriptor itself, for what writes to it directly (child processes, a last flush)
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()  # what was buffered goes to /dev/null now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def abort(message: str, code: ExitCode = ExitCode.INVALID_INPUT) -> NoReturn:
    """The one way to fail on purpose from a command."""
    raise _Abort(message, code)


class _Abort(Exception):
    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def _err(line: str) -> None:
    from erpops.secrets import redact

    sys.stderr.write(redact(line) + "\n")
    sys.stderr.flush()


def save_traceback(exc: BaseException) -> str | None:
    from erpops import files

    path = files.save_traceback(exc, datetime.now(UTC).strftime("crash-%Y%m%dT%H%M%S%fZ"))
    return str(path) if path else None


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body: map every error to its exit code."""
    import functools

    import typer

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, BrokenPipeError):
            raise
        except _Abort as exc:
            _err(f"erpops: error: {exc}")
            raise typer.Exit(int(exc.code)) from None
        except ValidationFailed as exc:
            for issue in exc.issues:
                _err(f"erpops: error: {issue}")
            raise typer.Exit(int(exc.exit_code)) from None
        except ErpopsError as exc:
            _err(f"erpops: error: {exc}")
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            _err("erpops: interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:
            path = save_traceback(exc)
            where = f"; traceback saved to {path}" if path else ""
            _err(f"erpops: internal error (a bug in erpops): {type(exc).__name__}: {exc}{where}")
            raise typer.Exit(int(ExitCode.STEP_FAILED)) from None

    return wrapper
