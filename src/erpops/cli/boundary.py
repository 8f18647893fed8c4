"""The one error boundary: user errors become one line and an exit code; bugs a saved traceback."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from erpops.errors import ErpopsError, ExitCode, ValidationFailed


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
    from erpops.secrets import redact

    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    d = os.path.join(base, "erpops", "tracebacks")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, datetime.now(UTC).strftime("crash-%Y%m%dT%H%M%S%fZ.txt"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(redact("".join(traceback.format_exception(exc))))
        return path
    except OSError:
        return None


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
