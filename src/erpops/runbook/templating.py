"""Jinja2 in a sandbox, strict about undefined names.

A string that is a single expression (``"{{ params.jobs }}"``) renders to the expression's native
value (an int stays an int); any other string with template syntax renders to a string.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

ROOTS = frozenset({"params", "env", "steps", "run"})
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)

#: Largest result of ``**`` and longest repeated sequence (``"x" * n``) a template may make: a
#: template computes a parameter, never something that takes minutes or gigabytes.
MAX_POWER_BITS = 4096
MAX_REPEAT = 100_000


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, with ``**`` and sequence repetition bounded (Jinja's sandbox bounds ``range``)."""

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        huge_power = (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and abs(left).bit_length() * right > MAX_POWER_BITS
        )
        if huge_power:
            raise SecurityError(f"{left} ** {right} is too large for a template (over {MAX_POWER_BITS} bits)")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise SecurityError(f"repeating a sequence {n} times is too long for a template")
        return super().call_binop(context, operator, left, right)


_env = _Env(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class RenderError(Exception):
    """A template failed to render (undefined name, bad operation); message is user-facing."""


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    m = _SINGLE.match(text)
    if m:
        return ("expr", _env.compile_expression(m.group("expr"), undefined_to_none=False))
    return ("tmpl", _env.from_string(text))


def render_string(text: str, context: dict[str, Any]) -> Any:
    try:
        kind, compiled = _compiled(text)
        if kind == "expr":
            value = compiled(**context)
            if isinstance(value, StrictUndefined):
                str(value)  # raises UndefinedError with the name
            return value
        return compiled.render(context)
    except UndefinedError as exc:
        raise RenderError(f"template {text.strip()!r}: {exc.message}") from None
    except TemplateError as exc:
        raise RenderError(f"template {text.strip()!r}: {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        raise RenderError(f"template {text.strip()!r}: {exc}") from None


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render every template inside a JSON-like value."""
    if isinstance(value, str):
        return render_string(value, context) if is_template(value) else value
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "none")
    return bool(value)


# --- static analysis for validation ----------------------------------------------------------


def check_syntax(text: str) -> str | None:
    """None if ``text`` parses, else the syntax error message."""
    try:
        _env.parse(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None


def unsafe_access(text: str) -> str | None:
    """Why ``text`` would be refused by the sandbox when it runs, found before anything runs: an
    attribute or key starting with ``_`` (``''.__class__``, ``cycler.__init__.__globals__``)."""
    for node in _walk(_env.parse(text)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            name = node.arg.value
        if name is not None and name.startswith("_"):
            return f"template uses {name!r}: names starting with _ are not available in templates"
    return None


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def references(text: str) -> tuple[set[str], set[str], set[str]]:
    """(root names, step ids, param names) a template refers to. Loop/set variables excluded."""
    tree = _env.parse(text)
    assigned = {n.name for n in _walk(tree) if isinstance(n, nodes.Name) and n.ctx in ("store", "param")}
    roots: set[str] = set()
    steps: set[str] = set()
    params: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in assigned:
            roots.add(node.name)
        target, owner = None, None
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            target, owner = node.attr, node.node.name
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.node, nodes.Name)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            target, owner = node.arg.value, node.node.name
        if target is not None and owner == "steps":
            steps.add(target)
        elif target is not None and owner == "params":
            params.add(target)
    return roots, steps, params


def iter_strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_strings(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_strings(v, (*path, i))
