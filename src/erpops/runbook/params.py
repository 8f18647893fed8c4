"""Binding runbook parameters: coercion, checks and defaults, before anything runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from erpops import secrets
from erpops.errors import Issue, ValidationFailed
from erpops.runbook import templating
from erpops.runbook.durations import parse_duration
from erpops.runbook.schema import ParamSpec

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(name: str, spec: ParamSpec, value: Any, *, resolve_secrets: bool = True) -> Any:
    """The typed value of parameter ``name``; ValueError with a user-facing message."""
    t = spec.type
    if t in ("string", "secret", "enum"):
        if not isinstance(value, str | int | float) or (isinstance(value, bool) and t != "enum"):
            raise ValueError(f"parameter {name!r} expects a string, got {value!r}")
        out: Any = value if t == "enum" else str(value)
        if t == "secret" and resolve_secrets:
            try:
                out = secrets.resolve(str(value))
            except secrets.SecretReferenceError as exc:
                raise ValueError(f"parameter {name!r}: {exc}") from None
    elif t == "integer":
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name!r} expects an integer, got {value!r}") from None
    elif t == "number":
        try:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name!r} expects a number, got {value!r}") from None
    elif t == "boolean":
        if isinstance(value, bool):
            out = value
        elif str(value).strip().lower() in _TRUE:
            out = True
        elif str(value).strip().lower() in _FALSE:
            out = False
        else:
            raise ValueError(f"parameter {name!r} expects true or false, got {value!r}")
    elif t == "duration":
        try:
            out = parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"parameter {name!r}: {exc}") from None
    else:  # pragma: no cover - the schema restricts types
        raise ValueError(f"parameter {name!r}: unknown type {t}")
    if spec.choices is not None and out not in spec.choices and str(out) not in [str(c) for c in spec.choices]:
        raise ValueError(f"parameter {name!r} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
    if spec.pattern is not None and isinstance(out, str) and t != "secret" and not re.fullmatch(spec.pattern, out):
        raise ValueError(f"parameter {name!r} must match {spec.pattern!r}, got {value!r}")
    if isinstance(out, int | float) and not isinstance(out, bool):
        if spec.minimum is not None and out < spec.minimum:
            raise ValueError(f"parameter {name!r} must be >= {spec.minimum:g}, got {value!r}")
        if spec.maximum is not None and out > spec.maximum:
            raise ValueError(f"parameter {name!r} must be <= {spec.maximum:g}, got {value!r}")
    return out


def bind(runbook: Any, given: Mapping[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Typed parameters for a run of ``runbook``; ValidationFailed (exit 2) lists every problem."""
    spec = runbook.spec
    doc = runbook.doc
    issues: list[Issue] = []
    out: dict[str, Any] = {}
    for key in given:
        if key not in spec.params:
            known = ", ".join(sorted(spec.params)) or "(none)"
            issues.append(
                Issue(
                    str(runbook.path),
                    doc.line(("params",)),
                    f"params.{key}",
                    f"unknown parameter {key!r}; {runbook.name} takes: {known}",
                )
            )
    for name, p in spec.params.items():
        path = ("params", name)
        if name in given and given[name] is not None:
            raw = given[name]
        elif p.default is not None:
            raw = p.default
            if templating.is_template(raw):
                try:
                    raw = templating.render(raw, context)
                except templating.RenderError as exc:
                    issues.append(doc.issue((*path, "default"), str(exc)))
                    continue
        elif p.required:
            issues.append(doc.issue(path, f"missing required parameter {name!r} (give it with --param {name}=...)"))
            continue
        else:
            out[name] = None
            continue
        try:
            out[name] = coerce(name, p, raw)
        except ValueError as exc:
            issues.append(doc.issue(path, str(exc)))
    if issues:
        raise ValidationFailed(issues)
    return out


def journal_params(runbook: Any, given: Mapping[str, Any], bound: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as they may be written down: a secret given as a reference keeps the reference
    (it is not secret), a secret left to a templated default keeps the template, any other secret
    becomes ``***``. ``erpops runs resume`` reads them back."""
    out: dict[str, Any] = {}
    for name, value in bound.items():
        p = runbook.spec.params[name]
        if p.type == "secret":
            raw = given.get(name)
            if raw is None and value is not None:
                raw = p.default
                if templating.is_template(raw):
                    out[name] = raw
                    continue
            out[name] = raw if isinstance(raw, str) and secrets.is_reference(raw) else secrets.MASK
        else:
            out[name] = value
    return secrets.redact_obj(out)
