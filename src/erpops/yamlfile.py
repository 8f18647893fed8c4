"""YAML loading that remembers where every value came from (file and line), for error messages."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from erpops.errors import Issue, ValidationFailed, validation_message

PathT = tuple[str | int, ...]


def format_path(path: PathT) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Located:
    """A parsed YAML document and the line of each path inside it."""

    data: Any
    file: str
    lines: dict[PathT, int] = field(default_factory=dict)
    text: str = ""

    def line(self, path: PathT) -> int | None:
        """The line of ``path`` or, when it is absent, of its nearest present parent."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def issue(self, path: PathT, message: str) -> Issue:
        return Issue(self.file, self.line(path), format_path(path), message)


#: Values a document may hold once its aliases are expanded: far above any runbook or erpops.yaml,
#: far below what makes a "billion laughs" document exhaust memory.
MAX_VALUES = 100_000


#: libyaml's parser when PyYAML was built with it (ten times faster on a large runbook), else
#: PyYAML's own; both give every node its line
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # the base is chosen at import time (libyaml or not)
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.built = 0
        self.open_nodes: set[int] = set()


def _build(node: yaml.Node, path: PathT, lines: dict[PathT, int], loader: _Loader) -> Any:
    lines[path] = node.start_mark.line + 1
    loader.built += 1
    if loader.built > MAX_VALUES:
        raise yaml.MarkedYAMLError(
            problem=f"the document expands to more than {MAX_VALUES:,} values (aliases of aliases?)",
            problem_mark=node.start_mark,
        )
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in loader.open_nodes:
            raise yaml.MarkedYAMLError(
                problem="an alias refers to a value that contains it", problem_mark=node.start_mark
            )
        loader.open_nodes.add(id(node))
        try:
            return _build_collection(node, path, lines, loader)
        finally:
            loader.open_nodes.discard(id(node))
    return loader.construct_object(node, deep=True)


def _build_collection(node: yaml.Node, path: PathT, lines: dict[PathT, int], loader: _Loader) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.MarkedYAMLError(problem="mapping keys must be scalars", problem_mark=key_node.start_mark)
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            key_path = (*path, str(key))
            out[key] = _build(value_node, key_path, lines, loader)
            lines[key_path] = key_node.start_mark.line + 1
        return out
    return [_build(item, (*path, i), lines, loader) for i, item in enumerate(node.value)]


def loads(text: str, file: str) -> Located:
    """Parse one YAML document; YAML syntax errors become a ValidationFailed with file:line."""
    loader = _Loader(text)
    frozen = gc.isenabled()
    gc.disable()  # a large document is hundreds of thousands of objects, none of them garbage yet:
    # the collector's passes over them made loading quadratic in the document's size
    try:
        node = loader.get_single_node()
        lines: dict[PathT, int] = {}
        data = _build(node, (), lines, loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ValidationFailed([Issue(file, line, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ValidationFailed([Issue(file, None, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
        if frozen:
            gc.enable()
    return Located(data=data, file=file, lines=lines, text=text)


def load(path: str | Path) -> Located:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ValidationFailed([Issue(str(path), None, "", "file not found")]) from None
    except OSError as exc:
        raise ValidationFailed([Issue(str(path), None, "", f"cannot read: {exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValidationFailed(
            [
                Issue(
                    str(path),
                    line,
                    "",
                    f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column}; save it as UTF-8",
                )
            ]
        ) from None
    return loads(text, str(path))


def pydantic_issues(doc: Located, exc: Any, base: PathT = ()) -> list[Issue]:
    """Turn a pydantic ValidationError into issues with file:line and document path."""
    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        path = (*base, *loc)
        msg = validation_message(err)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        issues.append(doc.issue(path, msg))
    return issues
