"""Plan and run a runbook: when, retry with backoff, timeouts, outputs, undo, finally, journal.

The engine never prints; it emits events to a sink and writes the journal (the state store)
before the next step starts. It returns a :class:`RunResult`; the CLI maps it to an exit code.
"""

from __future__ import annotations

import getpass
import os
import secrets as _random
import socket
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from erpops import process
from erpops.actions.base import Action, Change, PlanResult, RunInfo, get_action
from erpops.engine.context import StepContext
from erpops.engine.events import Approver, EventSink, NullSink, make_event
from erpops.engine.executor import Outcome, execute_once
from erpops.engine.run_state import RunOptions, RunResult, RunState, StepResult
from erpops.environments import Environment
from erpops.errors import (
    ActionError,
    ApprovalRefused,
    ErpopsError,
    ExitCode,
    Interrupted,
    InvalidInput,
    Issue,
    Locked,
    ValidationFailed,
    validation_message,
)
from erpops.files import save_traceback
from erpops.runbook import params as params_mod
from erpops.runbook import templating
from erpops.runbook.loader import Runbook
from erpops.runbook.schema import StepSpec
from erpops.secrets import redact, redact_obj
from erpops.state import MemoryStateStore, RunRecord, StateStore, StepRecord, utcnow


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


class StepFailed(ActionError):
    """A runbook called with runbook.call did not succeed."""


class Engine:
    def __init__(
        self,
        *,
        state: StateStore | None = None,
        sink: EventSink | None = None,
        approver: Approver | None = None,
    ) -> None:
        self.state: StateStore = state if state is not None else MemoryStateStore()
        self.sink: EventSink = sink or NullSink()
        self.approver = approver
        self.interrupted = threading.Event()
        #: The terminal hung up (SIGHUP) during a run, which went on (see :mod:`erpops.engine.signals`).
        self.hung_up = False
        self._held_locks: set[str] = set()

    # ------------------------------------------------------------------------------------------
    def run(
        self,
        runbook: Runbook,
        env: Environment,
        given: Mapping[str, Any] | None = None,
        options: RunOptions | None = None,
        *,
        parent: RunState | None = None,
    ) -> RunResult:
        options = options or RunOptions()
        given = dict(given or {})
        _check_pin(runbook, env)
        if env.runtime.kind == "kubernetes":  # k8s-secret: references resolve through its cluster
            from erpops.backends.runtime import install_secret_resolvers

            install_secret_resolvers(env)
        run_id = options.resume_run_id or new_run_id()
        info = RunInfo(
            id=run_id,
            started_at=utcnow(),
            user=_user(),
            host=socket.gethostname(),
            runbook=runbook.name,
            runbook_version=runbook.version,
            environment=env.name,
            dry_run=options.dry_run,
            assume_yes=options.assume_yes,
            interactive=options.interactive,
        )
        base_ctx = {"env": env.as_template(), "run": info.as_template()}
        bound = params_mod.bind(runbook, given, base_ctx)
        rs = RunState(runbook, env, info, options, bound, depth=(parent.depth + 1) if parent else 0)
        rs.outputs.update(options.completed)
        start = time.monotonic()
        journal_params = params_mod.journal_params(runbook, given, bound)
        self.sink.emit(
            make_event(
                "run.started",
                run_id=run_id,
                runbook=runbook.name,
                version=runbook.version,
                sha256=runbook.sha256,
                environment=env.name,
                params=journal_params,
                user=info.user,
                host=info.host,
                dry_run=options.dry_run,
                depth=rs.depth,
                parent=parent.info.id if parent else None,
                resumed=bool(options.resume_run_id),
            )
        )
        plan = self.plan(rs)
        plan_json = [
            {
                "step": s.id,
                "phase": s.phase,
                "action": s.action,
                "change": str(s.plan.change) if s.plan else None,
                "summary": s.plan.summary if s.plan else None,
                "status": s.status,
            }
            for s in plan
        ]
        self.sink.emit(make_event("run.planned", run_id=run_id, plan=plan_json, depth=rs.depth))
        if options.dry_run:
            # a step whose plan knows it fails: the dry run exits as the run would, naming it
            aborting = {s.id for s in runbook.spec.steps if s.on_failure == "abort"}
            doomed = next(
                (
                    s
                    for s in plan
                    if s.phase == "main" and s.id in aborting and s.plan is not None and s.plan.change == Change.FAILS
                ),
                None,
            )
            error = f"step {doomed.id} will fail: {doomed.plan.summary}" if doomed and doomed.plan else None
            result = RunResult(
                run_id,
                runbook.name,
                runbook.version,
                env.name,
                "planned",
                ExitCode.STEP_FAILED if doomed else ExitCode.SUCCEEDED,
                time.monotonic() - start,
                plan,
                error=error,
                failed_step=doomed.id if doomed else None,
            )
            self.sink.emit(
                make_event(
                    "run.finished",
                    run_id=run_id,
                    state="planned",
                    exit_code=int(result.exit_code),
                    error=error,
                    duration=round(result.duration, 3),
                    depth=rs.depth,
                )
            )
            return result

        record = RunRecord(
            id=run_id,
            runbook=runbook.name,
            version=runbook.version,
            sha256=runbook.sha256,
            environment=env.name,
            params=journal_params,
            user=info.user,
            host=info.host,
            started_at=info.started_at,
            runbook_path=str(runbook.path),
            parent_id=parent.info.id if parent else None,
            plan=plan_json,
        )
        with ExitStack() as stack:
            # a resumed run is reopened once it holds the lock: a resume refused for the lock
            # leaves the journal of the run as it was
            resuming = bool(options.resume_run_id) and self.state.get_run(run_id) is not None
            if not resuming:
                self.state.start_run(record)
                self.state.record_plan(run_id, plan_json)
            try:
                if runbook.spec.lock == "environment" and env.name not in self._held_locks:
                    stack.enter_context(
                        self.state.environment_lock(env.name, record, wait=options.lock_wait, cancel=self.interrupted)
                    )
                    if env.runtime.kind == "kubernetes" and not getattr(self.state, "shared", False):
                        # a local journal cannot keep two machines apart: the cluster's Lease does
                        from erpops.backends.runtime import environment_lease

                        stack.enter_context(
                            environment_lease(env, run_id=run_id, runbook=runbook.name, wait=options.lock_wait,
                                              cancel=self.interrupted)
                        )  # fmt: skip
                    self._held_locks.add(env.name)
                    stack.callback(self._held_locks.discard, env.name)
                if resuming:
                    # what the killed attempt started may still be running (a shell's children,
                    # pg_restore's workers): end it before any step runs again
                    for left in process.reap_run(run_id):
                        self.sink.emit(
                            make_event(
                                "step.log",
                                run_id=run_id,
                                step=None,
                                level="warning",
                                message=f"killed process {left}, left running by the earlier attempt of this run",
                            )
                        )
                    self.state.reopen_run(run_id)
                    self.state.record_plan(run_id, plan_json)
                    resuming = False
                if runbook.spec.metadata.destructive and env.production and parent is None:
                    self.request_approval(
                        rs, None, f"{runbook.name} is destructive and {env.name} is production", require_text=env.name
                    )
            except ErpopsError as exc:
                # refused: it never started (the environment is locked by another run); the journal
                # keeps the attempt, apart from the runs that failed
                ended = (
                    "interrupted"
                    if isinstance(exc, Interrupted)
                    else "refused"
                    if isinstance(exc, Locked)
                    else "failed"
                )
                if not resuming:
                    self.state.finish_run(run_id, ended, utcnow(), redact(str(exc)))
                self.sink.emit(
                    make_event(
                        "run.finished",
                        run_id=run_id,
                        state=ended,
                        exit_code=int(exc.exit_code),
                        error=str(exc),
                        duration=round(time.monotonic() - start, 3),
                        depth=rs.depth,
                    )
                )
                raise
            stack.enter_context(process.marking_children(run_id))
            result = self._execute(rs, start)
        return result

    # ------------------------------------------------------------------------------------------
    def plan(self, rs: RunState) -> list[StepResult]:
        """Ask every step's action what it would change; nothing changes."""
        out: list[StepResult] = []
        for phase, steps in (("main", rs.runbook.spec.steps), ("finally", rs.runbook.spec.finally_)):
            for i, step in enumerate(steps):
                if step.id in rs.options.completed:
                    out.append(
                        StepResult(
                            step.id,
                            step.action,
                            phase,
                            "done-earlier",
                            plan=PlanResult(Change.NONE, "succeeded in the earlier attempt of this run"),
                        )
                    )
                    continue
                out.append(self._plan_step(rs, step, phase, i))
        return out

    def _plan_step(self, rs: RunState, step: StepSpec, phase: str, index: int) -> StepResult:
        cls = _action(step.action)
        ctx = StepContext(self, rs, step.id, threading.Event())
        when_note = ""
        if step.when is not None:
            try:
                if not templating.truthy(templating.render(step.when, rs.template_context())):
                    return StepResult(
                        step.id, step.action, phase, "planned", plan=PlanResult(Change.NONE, "skipped: 'when' is false")
                    )
            except templating.RenderError:
                when_note = " (if 'when' holds at run time)"
        try:
            params = self._params(rs, cls, step.with_, step.id, phase, index)
        except _DeferredRender:
            return StepResult(
                step.id,
                step.action,
                phase,
                "planned",
                plan=PlanResult(Change.MAY, f"{step.action}: inputs known at run time{when_note}"),
            )
        try:
            result = cls().plan(params, ctx)
        except ErpopsError as exc:
            result = PlanResult(Change.MAY, f"cannot plan: {exc}")
        if when_note:
            result = PlanResult(result.change, result.summary + when_note)
        return StepResult(step.id, step.action, phase, "planned", plan=result)

    def _params(
        self,
        rs: RunState,
        cls: type[Action],
        with_: dict[str, Any],
        step_id: str,
        phase: str,
        index: int,
        *,
        at_run: bool = False,
    ) -> Any:
        try:
            rendered = templating.render(with_, rs.template_context())
        except templating.RenderError as exc:
            if not at_run:
                raise _DeferredRender() from None
            raise InvalidInput(f"{self._where(rs, phase, index)} with: {exc}") from None
        try:
            return cls.Params.model_validate(rendered)
        except ValidationError as exc:
            err = exc.errors()[0]
            field_path = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(
                f"{self._where(rs, phase, index)} with.{field_path}: {validation_message(err)}"
            ) from None

    def _where(self, rs: RunState, phase: str, index: int) -> str:
        return f"{rs.runbook.path}:{rs.runbook.step_line(phase, index)}"

    # ------------------------------------------------------------------------------------------
    def _execute(self, rs: RunState, start: float) -> RunResult:
        results: list[StepResult] = []
        completed: list[tuple[StepSpec, int]] = []
        failure: StepResult | None = None
        failure_exc: BaseException | None = None
        for i, step in enumerate(rs.runbook.spec.steps):
            if step.id in rs.options.completed:
                results.append(
                    StepResult(step.id, step.action, "main", "done-earlier", outputs=rs.options.completed[step.id])
                )
                completed.append((step, i))
                continue
            if self.interrupted.is_set():
                failure = StepResult(step.id, step.action, "main", "cancelled", error="interrupted")
                break
            res, exc = self._run_step(rs, step, "main", i)
            results.append(res)
            if res.status in ("succeeded", "skipped"):
                if res.status == "succeeded":
                    completed.append((step, i))
                continue
            if step.on_failure == "continue" and res.status != "cancelled":
                continue
            failure, failure_exc = res, exc
            break

        undo_ran = undo_failed = False
        if failure is not None:
            for step, i in reversed(completed):
                if step.undo is None:
                    continue
                undo_ran = True
                res, _ = self._run_undo(rs, step, i)
                results.append(res)
                undo_failed |= res.status != "succeeded"

        for i, step in enumerate(rs.runbook.spec.finally_):
            if step.id in rs.options.completed:
                continue
            res, exc = self._run_step(rs, step, "finally", i, in_finally=True)
            results.append(res)
            if res.status not in ("succeeded", "skipped") and failure is None and step.on_failure == "abort":
                failure, failure_exc = res, exc

        outputs: dict[str, Any] = {}
        if failure is None and rs.runbook.spec.outputs:
            try:
                outputs = templating.render(rs.runbook.spec.outputs, rs.template_context())
            except templating.RenderError as exc:
                failure = StepResult("outputs", "outputs", "main", "failed", error=str(exc))
                failure_exc = InvalidInput(str(exc))

        if self.interrupted.is_set():
            state, code = "interrupted", ExitCode.INTERRUPTED
        elif failure is None:
            state, code = "succeeded", ExitCode.SUCCEEDED
        elif undo_ran and not undo_failed:
            state, code = "rolled-back", ExitCode.ROLLED_BACK
        else:
            state = "failed"
            code = (
                failure_exc.exit_code
                if isinstance(failure_exc, ErpopsError)
                and failure_exc.exit_code in (ExitCode.UNREACHABLE, ExitCode.APPROVAL_REFUSED, ExitCode.INVALID_INPUT)
                else ExitCode.STEP_FAILED
            )
        error = f"step {failure.id}: {failure.error}" if failure is not None and failure.error else None
        duration = time.monotonic() - start
        self.state.finish_run(rs.info.id, state, utcnow(), error)
        self.sink.emit(
            make_event(
                "run.finished",
                run_id=rs.info.id,
                runbook=rs.runbook.name,
                state=state,
                exit_code=int(code),
                duration=round(duration, 3),
                error=error,
                failed_step=failure.id if failure else None,
                outputs=outputs,
                depth=rs.depth,
            )
        )
        return RunResult(
            rs.info.id,
            rs.runbook.name,
            rs.runbook.version,
            rs.env.name,
            state,
            code,
            duration,
            results,
            outputs,
            error,
            failure.id if failure else None,
        )

    def _run_step(
        self, rs: RunState, step: StepSpec, phase: str, index: int, in_finally: bool = False
    ) -> tuple[StepResult, BaseException | None]:
        cls = _action(step.action)
        if step.when is not None:
            try:
                run_it = templating.truthy(templating.render(step.when, rs.template_context()))
            except templating.RenderError as exc:
                return self._finish_without_attempt(rs, step, phase, "failed", f"when: {exc}", InvalidInput(str(exc)))
            if not run_it:
                return self._finish_without_attempt(rs, step, phase, "skipped", None, None)
        try:
            params = self._params(rs, cls, step.with_, step.id, phase, index, at_run=True)
            timeout = _timeout(rs, step.timeout)
        except ErpopsError as exc:
            return self._finish_without_attempt(rs, step, phase, "failed", str(exc), exc)
        return self._attempts(rs, step.id, step.action, cls, params, phase, timeout, step.retry, in_finally)

    def _run_undo(self, rs: RunState, step: StepSpec, index: int) -> tuple[StepResult, BaseException | None]:
        undo = step.undo
        if undo is None:
            raise RuntimeError(f"step {step.id} has no undo to run")  # callers run only steps that have one
        cls = _action(undo.action)
        try:
            params = self._params(rs, cls, undo.with_, step.id, "main", index, at_run=True)
            timeout = _timeout(rs, undo.timeout)
        except ErpopsError as exc:
            return self._finish_without_attempt(rs, step, "undo", "failed", str(exc), exc)
        return self._attempts(rs, step.id, undo.action, cls, params, "undo", timeout, None, True)

    def _finish_without_attempt(
        self, rs: RunState, step: StepSpec, phase: str, status: str, error: str | None, exc: BaseException | None
    ) -> tuple[StepResult, BaseException | None]:
        now = utcnow()
        rec = StepRecord(rs.info.id, step.id, 0, phase, now, now, status, {}, redact(error) if error else None)
        self.state.start_step(rec)
        self.state.finish_step(rec)
        self.sink.emit(
            make_event(
                "step.finished",
                run_id=rs.info.id,
                step=step.id,
                action=step.action,
                phase=phase,
                status=status,
                duration=0.0,
                attempt=0,
                outputs={},
                error=error,
            )
        )
        return StepResult(step.id, step.action, phase, status, error=error), exc

    def _attempts(
        self,
        rs: RunState,
        step_id: str,
        action: str,
        cls: type[Action],
        params: Any,
        phase: str,
        timeout: float | None,
        retry: Any,
        in_finally: bool,
    ) -> tuple[StepResult, BaseException | None]:
        attempts = retry.attempts if retry else 1
        total = 0.0
        outcome: Outcome | None = None
        for attempt in range(1, attempts + 1):
            cancel = threading.Event()
            ctx = StepContext(self, rs, step_id, cancel)
            rec = StepRecord(rs.info.id, step_id, attempt, phase, utcnow())
            self.state.start_step(rec)
            self.sink.emit(
                make_event(
                    "step.started",
                    run_id=rs.info.id,
                    step=step_id,
                    action=action,
                    phase=phase,
                    attempt=attempt,
                    depth=rs.depth,
                )
            )
            # finally/undo steps run even after an interrupt: give them their own interrupt flag
            interrupt = threading.Event() if in_finally else self.interrupted
            instance = cls()
            outcome = execute_once(lambda inst=instance, c=ctx: inst.apply(params, c), cancel, timeout, interrupt)
            total += outcome.duration
            error_text = _describe(outcome.error) if outcome.error is not None else None
            rec.ended_at = utcnow()
            rec.outcome = outcome.status
            rec.outputs = redact_obj(outcome.outputs)
            rec.error = error_text
            self.state.finish_step(rec)
            if outcome.error is not None and not isinstance(outcome.error, ErpopsError):
                save_traceback(outcome.error, f"{rs.info.id}-{step_id}")
            retrying = (
                outcome.status == "failed"
                and outcome.temporary
                and attempt < attempts
                and not self.interrupted.is_set()
            )
            self.sink.emit(
                make_event(
                    "step.finished",
                    run_id=rs.info.id,
                    step=step_id,
                    action=action,
                    phase=phase,
                    status=outcome.status,
                    duration=round(outcome.duration, 4),
                    attempt=attempt,
                    outputs=outcome.outputs,
                    error=error_text,
                    will_retry=retrying,
                    depth=rs.depth,
                )
            )
            if outcome.status == "succeeded":
                if phase != "undo":
                    rs.outputs[step_id] = outcome.outputs
                return StepResult(step_id, action, phase, "succeeded", total, attempt, outcome.outputs), None
            if not retrying:
                break
            delay = outcome.delay if outcome.delay is not None else retry.delay(attempt)
            delay = min(delay, retry.max_backoff)
            self.sink.emit(
                make_event(
                    "step.retry",
                    run_id=rs.info.id,
                    step=step_id,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=error_text,
                )
            )
            if self.interrupted.wait(delay):
                break
        assert outcome is not None
        return (
            StepResult(
                step_id,
                action,
                phase,
                outcome.status,
                total,
                attempt,
                {},
                _describe(outcome.error) if outcome.error else None,
            ),
            outcome.error,
        )

    # ------------------------------------------------------------------------------------------
    def request_approval(self, rs: RunState, step_id: str | None, message: str, *, require_text: str | None) -> None:
        how = None
        if rs.options.assume_yes:
            how = "--yes"
        elif rs.options.interactive and self.approver is not None:
            answer = self.approver(message, require_text)
            if answer is None:
                raise ApprovalRefused(f"approval needed ({message}) but nobody can be asked; re-run with --yes")
            if not answer:
                raise ApprovalRefused(f"approval refused: {message}")
            how = "terminal"
        else:
            raise ApprovalRefused(
                f"approval needed ({message}) and there is no terminal to ask; re-run with --yes to approve"
            )
        self.state.record_approval(rs.info.id, step_id or "-", f"{rs.info.user}@{rs.info.host}", how, message)
        self.sink.emit(
            make_event(
                "approval",
                run_id=rs.info.id,
                step=step_id,
                who=f"{rs.info.user}@{rs.info.host}",
                how=how,
                message=message,
            )
        )

    def call_child(self, rs: RunState, step_id: str, name_or_path: str, params: dict[str, Any]) -> dict[str, Any]:
        from erpops.actions.base import load_actions
        from erpops.runbook.library import find
        from erpops.runbook.loader import load_runbook

        if name_or_path.endswith((".yaml", ".yml")) and not os.path.isabs(name_or_path):
            path = rs.runbook.path.parent / name_or_path  # relative to the calling runbook
        else:
            path = find(name_or_path)
        child = load_runbook(path, load_actions())
        opts = RunOptions(
            dry_run=False,
            assume_yes=rs.options.assume_yes,
            interactive=rs.options.interactive,
            lock_wait=rs.options.lock_wait,
        )
        result = self.run(child, rs.env, params, opts, parent=rs)
        if result.state != "succeeded":
            raise StepFailed(f"runbook {child.name} (run {result.run_id}) ended {result.state}: {result.error}")
        return {"run_id": result.run_id, "state": result.state, **result.outputs}


class _DeferredRender(Exception):
    pass


def _action(name: str) -> type[Action]:
    cls = get_action(name)
    if cls is None:  # validation catches this first; kept for runbooks built in code
        raise ValidationFailed([Issue("<runbook>", None, "", f"unknown action {name!r}")])
    return cls


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ErpopsError):
        return redact(str(exc))
    return redact(f"{type(exc).__name__}: {exc}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _check_pin(runbook: Runbook, env: Environment) -> None:
    spec = env.runbooks.get(runbook.name)
    if not spec:
        return
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    if not SpecifierSet(spec).contains(Version(runbook.version), prereleases=True):
        raise InvalidInput(
            f"runbook {runbook.name} is version {runbook.version} ({runbook.path}), but environment {env.name} "
            f"pins it to {spec!r}; use a runbook version inside the pin or change the pin in erpops.yaml"
        )


def _timeout(rs: RunState, value: float | str | None) -> float | None:
    """A step's timeout: a duration, or a template rendered now (``"{{ params.timeout }}"``)."""
    if value is None or isinstance(value, int | float):
        return value
    from erpops.runbook.durations import parse_duration

    try:
        rendered = templating.render(value, rs.template_context())
    except templating.RenderError as exc:
        raise InvalidInput(f"timeout: {exc}") from None
    if rendered in (None, ""):
        return None  # an unset optional parameter: no timeout
    try:
        return parse_duration(rendered)
    except ValueError as exc:
        raise InvalidInput(f"timeout: {exc}") from None
