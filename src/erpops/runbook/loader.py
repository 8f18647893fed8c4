"""Load and validate runbooks: every problem named by file, line and path, all reported at once."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from erpops import yamlfile
from erpops.errors import Issue, ValidationFailed, validation_message
from erpops.runbook import templating
from erpops.runbook.schema import API_VERSION, PARAM_NAME, RunbookSpec, StepSpec
from erpops.yamlfile import Located, PathT

#: The action registry a runbook is checked against: YAML name -> action class (a class with
#: ``name`` and a pydantic ``Params`` model). The caller passes it (``load_actions()``): the
#: runbook layer does not import the actions.
Actions = Mapping[str, Any]


@dataclass
class Runbook:
    spec: RunbookSpec
    path: Path
    sha256: str
    doc: Located

    @property
    def name(self) -> str:
        return self.spec.metadata.name

    @property
    def version(self) -> str:
        return self.spec.metadata.version

    def step_line(self, phase: str, index: int) -> int | None:
        return self.doc.line(("finally" if phase == "finally" else "steps", index))


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_runbook(path: str | Path, actions: Actions) -> Runbook:
    """Parse and fully validate a runbook file against ``actions`` (the registry,
    ``erpops.actions.base.load_actions()``); raises ValidationFailed with every issue found."""
    doc = yamlfile.load(path)
    spec, issues = validate_document(doc, actions)
    if issues or spec is None:
        raise ValidationFailed(issues)
    return Runbook(spec=spec, path=Path(path), sha256=sha256_of(doc.text), doc=doc)


def validate_document(doc: Located, actions: Actions) -> tuple[RunbookSpec | None, list[Issue]]:
    data = doc.data
    if not isinstance(data, dict):
        return None, [doc.issue((), "a runbook is a mapping with apiVersion, kind, metadata and steps")]
    api = data.get("apiVersion")
    if api != API_VERSION:
        msg = "apiVersion is missing" if api is None else f"unknown apiVersion {api!r}"
        return None, [doc.issue(("apiVersion",), f"{msg}; this erpops reads {API_VERSION}")]
    try:
        spec = RunbookSpec.model_validate(data)
    except ValidationError as exc:
        return None, yamlfile.pydantic_issues(doc, exc)
    return spec, _semantic_issues(spec, doc, actions)


def _semantic_issues(spec: RunbookSpec, doc: Located, actions: Actions) -> list[Issue]:
    issues: list[Issue] = []
    param_names = set(spec.params)
    for name in spec.params:
        if not PARAM_NAME.match(name):
            issues.append(doc.issue(("params", name), "parameter names are lowercase letters, digits and _"))
    for name, p in spec.params.items():
        if p.type == "enum" and not p.choices:
            issues.append(doc.issue(("params", name, "type"), "type enum needs 'choices'"))
        if p.default is not None and not templating.is_template(p.default):
            from erpops.runbook.params import coerce

            try:
                coerce(name, p, p.default, resolve_secrets=False)
            except ValueError as exc:
                issues.append(doc.issue(("params", name, "default"), str(exc)))
        for path, text in templating.iter_strings(p.default, ("params", name, "default")):
            issues += _template_issues(doc, path, text, allowed_steps=set(), all_steps=set(), params=set())

    seen: dict[str, PathT] = {}
    all_ids = {s.id for s in [*spec.steps, *spec.finally_]}
    main_ids = [s.id for s in spec.steps]
    for phase, steps in (("steps", spec.steps), ("finally", spec.finally_)):
        # the steps a step may refer to: the main steps before it (in finally: every main step and
        # the finally steps before it), grown as we go — never rebuilt per step (quadratic)
        before: set[str] = set() if phase == "steps" else set(main_ids)
        for i, step in enumerate(steps):
            base: PathT = (phase, i)
            if step.id in seen:
                first = doc.line((*seen[step.id], "id"))
                issues.append(doc.issue((*base, "id"), f"duplicate step id {step.id!r} (first at line {first})"))
            else:
                seen[step.id] = base
            issues += _step_issues(doc, step, base, actions, before, all_ids, param_names)
            before.add(step.id)
    for path, text in templating.iter_strings(spec.outputs, ("outputs",)):
        issues += _template_issues(doc, path, text, set(main_ids) | {s.id for s in spec.finally_}, all_ids, param_names)
    return issues


def _step_issues(
    doc: Located,
    step: StepSpec,
    base: PathT,
    actions: Actions,
    before: set[str],
    all_ids: set[str],
    params: set[str],
) -> list[Issue]:
    issues: list[Issue] = []
    issues += _action_issues(doc, step.action, step.with_, base, actions)
    for path, text in templating.iter_strings(step.with_, (*base, "with")):
        issues += _template_issues(doc, path, text, before, all_ids, params)
    if isinstance(step.when, str):
        issues += _template_issues(doc, (*base, "when"), step.when, before, all_ids, params)
    if isinstance(step.timeout, str):
        issues += _template_issues(doc, (*base, "timeout"), step.timeout, before, all_ids, params)
    if step.undo is not None:
        issues += _action_issues(doc, step.undo.action, step.undo.with_, (*base, "undo"), actions)
        for path, text in templating.iter_strings(step.undo.with_, (*base, "undo", "with")):
            itself = {step.id}  # an undo may read its own step's outputs (no copy of `before`: quadratic)
            issues += _template_issues(doc, path, text, _Either(before, itself), all_ids, params)
    return issues


def _action_issues(doc: Located, name: str, with_: dict[str, Any], base: PathT, actions: Actions) -> list[Issue]:
    cls = actions.get(name)
    if cls is None:
        close = sorted(a for a in actions if a.split(".")[0] == name.split(".")[0]) or sorted(actions)
        return [doc.issue((*base, "action"), f"unknown action {name!r}; known: {', '.join(close)}")]
    return check_with(doc, cls, with_, (*base, "with"))


def check_with(doc: Located, cls: Any, with_: dict[str, Any], base: PathT) -> list[Issue]:
    """Unknown fields, missing required fields, and literal values the action's model rejects
    (field validators included). Templated values are checked after rendering, at run time."""
    issues: list[Issue] = []
    fields = cls.Params.model_fields
    by_name = {(f.alias or n): n for n, f in fields.items()}
    literal: dict[str, Any] = {}
    for key, value in with_.items():
        if key not in by_name:
            known = ", ".join(sorted(by_name)) or "(none)"
            issues.append(doc.issue((*base, key), f"unknown field for action {cls.name} (fields: {known})"))
        elif not _has_template(value):
            literal[key] = value
    for alias, fname in by_name.items():
        if fields[fname].is_required() and alias not in with_:
            issues.append(doc.issue(base, f"action {cls.name} needs field '{alias}'"))
    try:
        cls.Params.model_validate(literal)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if not loc or loc[0] not in literal:
                continue  # missing or templated: reported above, or checked at run time
            path = (*base, *(p for p in loc if isinstance(p, str | int)))
            issues.append(doc.issue(path, f"{cls.name} field '{loc[0]}': {validation_message(err)}"))
    return issues


def _has_template(value: Any) -> bool:
    return any(templating.is_template(s) for _, s in templating.iter_strings(value))


class _Either(Container[str]):
    """Membership in either of two sets, without building their union."""

    def __init__(self, a: Container[str], b: Container[str]) -> None:
        self.a, self.b = a, b

    def __contains__(self, item: object) -> bool:
        return item in self.a or item in self.b


def _template_issues(
    doc: Located, path: PathT, text: str, allowed_steps: Container[str], all_steps: set[str], params: set[str]
) -> list[Issue]:
    if not templating.is_template(text):
        return []
    err = templating.check_syntax(text) or templating.unsafe_access(text)
    if err:
        return [doc.issue(path, err)]
    roots, steps, used_params = templating.references(text)
    issues = []
    for root in sorted(roots - templating.ROOTS - _GLOBALS):
        issues.append(doc.issue(path, f"unknown name {root!r} in template (known: params, env, steps, run)"))
    for sid in sorted(steps):
        if sid not in all_steps:
            issues.append(doc.issue(path, f"template refers to unknown step {sid!r}"))
        elif sid not in allowed_steps:
            issues.append(doc.issue(path, f"template refers to step {sid!r}, which has not run yet at this point"))
    for p in sorted(used_params - params):
        issues.append(doc.issue(path, f"template refers to unknown parameter {p!r}"))
    return issues


# Jinja globals usable in templates.
_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none"})
