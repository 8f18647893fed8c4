"""The runbook format and action reference, generated from the schemas and action docstrings."""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from erpops.runbook.durations import DurationOrTemplate, parse_duration
from erpops.runbook.schema import ActionCall, Metadata, ParamSpec, RetrySpec, RunbookSpec, StepSpec


def _type_name(annotation: Any) -> str:
    if DurationOrTemplate in get_args(annotation) or annotation == DurationOrTemplate:
        return "duration or template" + (" | null" if type(None) in get_args(annotation) else "")
    if get_origin(annotation) is Annotated:
        args = get_args(annotation)
        if any(getattr(m, "func", None) is parse_duration for m in args[1:]):
            return "duration"
        return _type_name(args[0])
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation)
    for prefix in ("typing.", "erpops.runbook.schema.", "erpops.actions.", "pydantic."):
        text = text.replace(prefix, "")
    return re.sub(r"Annotated\[float, BeforeValidator\([^]]*\)\]", "duration", text).replace("NoneType", "null")


def _fields(model: type[BaseModel]) -> list[str]:
    lines = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, f in model.model_fields.items():
        key = f.alias or name
        default = "required" if f.is_required() else ("" if f.default is None else f"`{f.default!r}`")
        if f.default_factory is not None:
            default = ""
        is_duration = any(getattr(m, "func", None) is parse_duration for m in f.metadata)
        typ = "duration" if is_duration else _type_name(f.annotation).replace("|", "\\|")
        lines.append(f"| `{key}` | {typ} | {default} | {(f.description or '').replace('|', '/')} |")
    return lines


def markdown() -> str:
    from erpops.actions.base import load_actions

    out = ["## Runbook format (apiVersion erpops/v1)", ""]
    for title, model in (
        ("Runbook", RunbookSpec),
        ("metadata", Metadata),
        ("params.<name>", ParamSpec),
        ("steps[] and finally[]", StepSpec),
        ("retry", RetrySpec),
        ("undo", ActionCall),
    ):
        out += [f"### {title}", "", *_fields(model), ""]
    out += ["## Actions", ""]
    for name, cls in sorted(load_actions().items()):
        out += [f"### `{name}`", "", inspect.cleandoc(cls.__doc__ or "").strip(), ""]
        params = cls.Params
        if params.model_fields:
            out += ["Parameters:", "", *_fields(params), ""]
        if cls.outputs:
            out += ["Outputs: " + ", ".join(f"`{k}` ({v})" for k, v in cls.outputs.items()), ""]
    return "\n".join(out)
