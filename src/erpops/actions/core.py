"""Core actions usable in any runbook: log, assert, wait, http.check, exec, approve, runbook.call."""

import socket
import time
import urllib.error
import urllib.request
from typing import Any, Literal

from pydantic import Field, field_validator

from erpops.actions.base import Action, ActionContext, ActionParams, Change, PlanResult
from erpops.errors import PermanentError, TargetUnreachable, TemporaryError
from erpops.runbook.durations import Duration
from erpops.runbook.templating import truthy


class Log(Action):
    """Write a message to the run's output and journal.

    ```yaml
    - id: hello
      action: log
      with: {message: "backing up {{ env.database.name }}", level: info}
    ```
    """

    name = "log"
    read_only = True

    class Params(ActionParams):
        message: str
        level: Literal["debug", "info", "warning", "error"] = "info"

    outputs = {"message": "the message as written"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"log: {params.message}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        ctx.log(params.message, level=params.level)
        return {"message": params.message}


class Assert(Action):
    """Fail the step unless a templated condition holds.

    ```yaml
    - id: enough-rows
      action: assert
      with:
        that: "{{ steps.count.outputs.rows[0].n > 0 }}"
        message: "no sale orders in the restored copy"
    ```
    """

    name = "assert"
    read_only = True

    class Params(ActionParams):
        that: Any = Field(description="a template evaluating to true or false")
        message: str = Field("assertion failed", description="the error when it does not hold")

    outputs = {"value": "the evaluated condition"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        if not truthy(params.that):  # known now (a template known only at run time is not planned here)
            return PlanResult(Change.FAILS, params.message)
        return PlanResult(Change.NONE, f"check: {params.message}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        if not truthy(params.that):
            raise PermanentError(params.message)
        return {"value": True}


class _Until(ActionParams):
    http: str | None = Field(None, description="URL that must answer 2xx/3xx")
    tcp: str | None = Field(None, description="host:port that must accept a connection")


def _check_once(until: _Until, timeout: float) -> str | None:
    """None when the check passes, else why not."""
    if until.http:
        try:
            with urllib.request.urlopen(until.http, timeout=timeout) as resp:
                return None if resp.status < 400 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return str(getattr(exc, "reason", exc))
    if until.tcp:
        host, _, port = until.tcp.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return None
        except OSError as exc:
            return str(exc)
    return None


class Wait(Action):
    """Wait a fixed time, or until an HTTP URL or TCP port answers (within ``timeout``).

    ```yaml
    - id: settle
      action: wait
      with: {duration: 5s}
    - id: web-up
      action: wait
      with: {until: {http: "http://127.0.0.1:8069/web/health"}, timeout: 2m, interval: 1s}
    ```
    """

    name = "wait"
    read_only = True

    class Params(ActionParams):
        duration: Duration | None = None
        until: _Until | None = None
        timeout: Duration = 60.0
        interval: Duration = 1.0

    outputs = {"waited": "seconds waited", "checks": "number of checks made (until)"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        what = f"{params.duration:g}s" if params.until is None else f"until {params.until.http or params.until.tcp}"
        return PlanResult(Change.NONE, f"wait {what}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        start = time.monotonic()
        if params.until is None or not (params.until.http or params.until.tcp):
            end = start + (params.duration or 0.0)
            while (left := end - time.monotonic()) > 0:
                ctx.check_cancelled()
                time.sleep(min(left, 0.05))
            return {"waited": round(time.monotonic() - start, 3), "checks": 0}
        checks = 0
        deadline = start + params.timeout
        while True:
            ctx.check_cancelled()
            checks += 1
            why = _check_once(params.until, min(params.interval * 2, 10.0) or 1.0)
            if why is None:
                return {"waited": round(time.monotonic() - start, 3), "checks": checks}
            if time.monotonic() + params.interval > deadline:
                target = params.until.http or params.until.tcp
                raise TemporaryError(f"{target} still not ready after {params.timeout:g}s ({checks} checks): {why}")
            time.sleep(params.interval)


class HttpCheck(Action):
    """Request a URL and check the status and, optionally, a substring of the body.

    ```yaml
    - id: health
      action: http.check
      with: {url: "http://127.0.0.1:8069/web/health", status: 200, contains: '"pass"', timeout: 5s}
      retry: {attempts: 10, backoff: 1s, exponential: false}
    ```
    """

    name = "http.check"
    read_only = True

    class Params(ActionParams):
        url: str
        method: Literal["GET", "HEAD", "POST"] = "GET"
        status: int | list[int] = 200
        contains: str | None = None
        timeout: Duration = 10.0
        headers: dict[str, str] = Field(default_factory=dict)

        @field_validator("url")
        @classmethod
        def _scheme(cls, v: str) -> str:
            if not v.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
            return v

    outputs = {"status": "HTTP status", "body": "first 2 KiB of the body", "elapsed": "seconds"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.NONE, f"{params.method} {params.url} expecting {params.status}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        wanted = params.status if isinstance(params.status, list) else [params.status]
        req = urllib.request.Request(params.url, method=params.method, headers=params.headers)
        start = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=params.timeout) as resp:
                status, body = resp.status, resp.read(65536)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read(65536) if exc.fp else b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TargetUnreachable(f"{params.url} did not answer: {reason}") from None
        elapsed = round(time.monotonic() - start, 4)
        text = body.decode(errors="replace")
        if status not in wanted:
            raise TemporaryError(f"{params.url} answered HTTP {status}, expected {', '.join(map(str, wanted))}")
        if params.contains is not None and params.contains not in text:
            raise TemporaryError(f"{params.url} answered HTTP {status} without {params.contains!r} in the body")
        return {"status": status, "body": text[:2048], "elapsed": elapsed}


class Exec(Action):
    """Run a command: an argv list, never a shell string. Secrets reach it through ``secret_env``
    (references like ``env:VAR`` resolved at run time), never its command line.

    ```yaml
    - id: vacuum
      action: exec
      with:
        argv: [vacuumdb, --analyze-only, odoo]
        env: {PGHOST: /run/postgresql}
        secret_env: {PGPASSWORD: env:ODOO_DB_PASSWORD}
        timeout: 10m
    ```
    """

    name = "exec"

    class Params(ActionParams):
        argv: list[str] = Field(min_length=1, description="program and arguments")
        env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")
        secret_env: dict[str, str] = Field(default_factory=dict, description="variables from secret references")
        cwd: str | None = None
        timeout: Duration | None = Field(None, description="kill the command (and its children) after this long")
        check: bool = Field(True, description="fail the step when the exit code is not 0")
        temporary_exit_codes: list[int] = Field(default_factory=list, description="exit codes worth a retry")
        tail_lines: int = Field(20, ge=1, le=1000)

        @field_validator("argv", mode="before")
        @classmethod
        def _no_shell(cls, v: Any) -> Any:
            if isinstance(v, str):
                raise ValueError("argv must be a list of arguments, not a shell string")
            return [str(a) for a in v] if isinstance(v, list) else v

    outputs = {
        "exit_code": "the command's exit code",
        "stdout_tail": "last lines of standard output",
        "stderr_tail": "last lines of standard error",
        "duration": "seconds",
    }

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, "run " + " ".join(params.argv))

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        env = dict(params.env)
        for key, ref in params.secret_env.items():
            env[key] = ctx.resolve_secret(ref)
            ctx.register_secret(env[key])
        res = ctx.run_process(
            params.argv, env=env, cwd=params.cwd, timeout=params.timeout, tail_lines=params.tail_lines
        )
        out = {
            "exit_code": res.returncode,
            "stdout_tail": res.stdout_tail,
            "stderr_tail": res.stderr_tail,
            "duration": round(res.duration, 3),
        }
        if params.check and res.returncode != 0:
            last = (res.stderr_tail or res.stdout_tail).strip().splitlines()[-1:] or [""]
            msg = f"{params.argv[0]} exited with code {res.returncode}" + (f": {last[0]}" if last[0] else "")
            if res.returncode in params.temporary_exit_codes:
                raise TemporaryError(msg)
            raise PermanentError(msg)
        return out


class Approve(Action):
    """Stop until an operator approves (on a terminal) or ``--yes`` was given.

    ```yaml
    - id: approve-prune
      when: "{{ env.tier == 'production' }}"
      action: approve
      with: {message: "Prune backups older than the retention policy?"}
    ```
    """

    name = "approve"
    read_only = True

    class Params(ActionParams):
        message: str

    outputs = {"approved": "true once approved"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        how = "--yes given" if ctx.run.assume_yes else "asks on the terminal"
        return PlanResult(Change.NONE, f"approval: {params.message} ({how})")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        ctx.approve(params.message)
        return {"approved": True}


class RunbookCall(Action):
    """Run another runbook as this step, with its own parameters; its outputs become this step's.

    ```yaml
    - id: pre-deploy-backup
      action: runbook.call
      with: {runbook: backup, params: {verify: true}}
    ```
    """

    name = "runbook.call"

    class Params(ActionParams):
        runbook: str = Field(description="a runbook name, or a path relative to the calling runbook")
        params: dict[str, Any] = Field(default_factory=dict)

    outputs = {"run_id": "the child run's id", "state": "its final state", "*": "the child runbook's outputs"}

    def plan(self, params: Params, ctx: ActionContext) -> PlanResult:
        return PlanResult(Change.MAY, f"run runbook {params.runbook}")

    def apply(self, params: Params, ctx: ActionContext) -> dict[str, Any]:
        return ctx.call_runbook(params.runbook, params.params)
