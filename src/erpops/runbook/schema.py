"""The runbook format, apiVersion ``erpops/v1`` (reference generated from these models)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from erpops.runbook.durations import Duration, DurationOrTemplate

API_VERSION = "erpops/v1"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ParamType = Literal["string", "integer", "number", "boolean", "duration", "secret", "enum"]


class ParamSpec(_Model):
    """A runbook parameter: given with ``--param name=value`` or a command option."""

    type: ParamType = Field("string", description="string, integer, number, boolean, duration, secret or enum")
    description: str | None = Field(None, description="shown by `erpops runbook show`")
    default: Any = Field(None, description="value when not given; may be a template over `env`")
    required: bool = Field(False, description="the run refuses to start without it (exit 2)")
    choices: list[Any] | None = Field(None, description="allowed values (type enum, or any type)")
    pattern: str | None = Field(None, description="regular expression a string must match in full")
    minimum: float | None = Field(None, description="smallest allowed number/duration (seconds)")
    maximum: float | None = Field(None, description="largest allowed number/duration (seconds)")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression: {exc}") from None
        return value


class RetrySpec(_Model):
    """Retry a step whose action reports a temporary error."""

    attempts: int = Field(3, ge=1, le=100, description="total attempts, the first included")
    backoff: Duration = Field(1.0, description="wait before the second attempt")
    max_backoff: Duration = Field(60.0, description="upper bound of any wait")
    exponential: bool = Field(True, description="double the wait after each attempt")

    def delay(self, failed_attempts: int) -> float:
        base = self.backoff * (2 ** (failed_attempts - 1) if self.exponential else 1)
        return min(base, self.max_backoff)


class ActionCall(_Model):
    """An action and its inputs (used for `undo`)."""

    action: str = Field(description="action name, e.g. storage.delete")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="action parameters")
    timeout: DurationOrTemplate | None = Field(
        None, description="stop the action after this long (a duration, or a template rendering to one)"
    )


class StepSpec(_Model):
    """One step of a runbook."""

    id: str = Field(description="unique within the runbook: lowercase letters, digits, - and _")
    action: str = Field(description="the step type, e.g. exec, postgres.dump")
    description: str | None = Field(None, description="what the step is for")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="action parameters (templated)")
    when: str | bool | None = Field(None, description="template; the step is skipped when it is false")
    timeout: DurationOrTemplate | None = Field(
        None,
        description="stop the step's work after this long (per attempt): a duration, or a template rendering to one",
    )
    retry: RetrySpec | None = Field(None, description="retry temporary errors")
    on_failure: Literal["abort", "continue"] = Field("abort", description="abort (undo + finally) or continue")
    undo: ActionCall | None = Field(None, description="compensation run in reverse order if a later step fails")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError("step id must be lowercase letters, digits, '-' and '_'")
        return value


class Metadata(_Model):
    name: str = Field(description="runbook name (the playbook it implements)")
    version: str = Field(description="semantic version of this runbook, recorded with every run")
    description: str | None = Field(None, description="what the runbook does, step by step")
    destructive: bool = Field(False, description="needs approval on production tiers")

    @field_validator("version")
    @classmethod
    def _semver(cls, value: Any) -> str:
        value = str(value)
        if not SEMVER.match(value):
            raise ValueError(f"version {value!r} is not semantic versioning (MAJOR.MINOR.PATCH)")
        return value


class RunbookSpec(_Model):
    """A runbook document."""

    apiVersion: Literal["erpops/v1"] = Field(description="always erpops/v1")
    kind: Literal["Runbook"] = Field(description="always Runbook")
    metadata: Metadata
    params: dict[str, ParamSpec] = Field(default_factory=dict, description="typed parameters")
    lock: Literal["environment"] | None = Field(None, description="take the environment lock for the run")
    steps: list[StepSpec] = Field(description="run in order")
    finally_: list[StepSpec] = Field(default_factory=list, alias="finally", description="always run, at the end")
    outputs: dict[str, Any] = Field(
        default_factory=dict, description="templated values returned to a calling runbook (runbook.call)"
    )
