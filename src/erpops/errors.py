"""The exception tree and the one exit-code enum.

Everything a user can cause is an :class:`ErpopsError` subclass carrying the exit code it maps to;
the CLI turns it into one clear line. Anything else is a bug and gets a saved traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, stable for cron jobs and scripts (documented in the README)."""

    SUCCEEDED = 0
    STEP_FAILED = 1
    INVALID_INPUT = 2
    UNREACHABLE = 3
    LOCKED = 4
    APPROVAL_REFUSED = 5
    ROLLED_BACK = 6
    #: ``wal fetch`` found the archived file corrupt: above 125, so PostgreSQL stops its recovery
    #: instead of taking it for the end of the archive.
    ARCHIVE_CORRUPT = 126
    INTERRUPTED = 130


class ErpopsError(Exception):
    """An error the user can cause and fix: shown as one line, mapped to an exit code."""

    exit_code: ExitCode = ExitCode.STEP_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class Issue:
    """One validation problem: where it is (file, line, path inside the document) and what."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InvalidInput(ErpopsError):
    """Bad runbook, config or parameters: nothing runs, exit 2."""

    exit_code = ExitCode.INVALID_INPUT


class ValidationFailed(InvalidInput):
    """One or more :class:`Issue` found while validating a document."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        first = str(self.issues[0]) if self.issues else "validation failed"
        more = f" (+{len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(first + more)


def validation_message(error: Any) -> str:
    """A pydantic error's message for a user: without pydantic's ``Value error, `` /
    ``Assertion failed, `` prefix (the validator's own sentence is the message)."""
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


class Unreachable(ErpopsError):
    """A target (database, storage, engine, API) cannot be reached or is misconfigured: exit 3."""

    exit_code = ExitCode.UNREACHABLE


class Locked(ErpopsError):
    """Another run holds the environment lock: exit 4."""

    exit_code = ExitCode.LOCKED


class ApprovalRefused(ErpopsError):
    """An approval was refused, or could not be asked (no terminal, no --yes): exit 5."""

    exit_code = ExitCode.APPROVAL_REFUSED


class Interrupted(ErpopsError):
    """SIGINT/SIGTERM during a run: exit 130."""

    exit_code = ExitCode.INTERRUPTED


# --- errors raised by actions: the retry decision is in the type (kopf's habit) -----------------


class ActionError(ErpopsError):
    """A step failed for good; the engine does not retry it."""


class PermanentError(ActionError):
    """Explicitly permanent: retrying cannot help."""


class TemporaryError(ActionError):
    """A step failed in a way that may pass: the engine retries it if the step has ``retry``.

    ``delay`` (seconds) overrides the step's backoff for the next attempt when given.
    """

    def __init__(self, message: str, *, delay: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.delay = delay


class StepTimeout(ActionError):
    """The step ran past its ``timeout``; its work (child processes included) was stopped."""


class TargetUnreachable(Unreachable, TemporaryError):
    """Raised by an action when its target cannot be reached: retried if the step retries,
    and exits 3 when it finally fails."""

    def __init__(self, message: str, *, delay: float | None = None, hint: str | None = None) -> None:
        TemporaryError.__init__(self, message, delay=delay, hint=hint)
