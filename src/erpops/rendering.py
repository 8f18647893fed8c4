"""Configuration files rendered from ``templates/`` (``odoo/odoo.conf.j2``, ``traefik/*.yml.j2``,
``docker/``...): Jinja2 in a sandbox, undefined names are errors naming the template's file and
line. A user's templates win over the shipped ones file by file, as runbooks do:
``$ERPOPS_TEMPLATE_PATH`` (``:``-separated directories), ``~/.config/erpops/templates``, then the
package's own.

Secrets enter a rendering only through ``secret(reference)``: the value is resolved then (and
registered for redaction), and the result says it holds one, so it is written 0600 and never
shown in a plan or a diff.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from erpops import secrets
from erpops.errors import InvalidInput
from erpops.files import xdg_base
from erpops.runbook.library import packaged_dir


class TemplateFailed(InvalidInput):
    """A template could not be rendered: file:line and what is missing or wrong (exit 2)."""


@dataclass(frozen=True)
class Rendered:
    name: str  # the template's name without .j2, e.g. "odoo/odoo.conf"
    source: Path  # the template file used
    text: str
    secret: bool  # holds a resolved secret: written 0600, never displayed

    def shown(self) -> str:
        """The text as a plan or a diff may show it (every registered secret masked)."""
        return secrets.redact(self.text)


def search_path() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get("ERPOPS_TEMPLATE_PATH", "").split(os.pathsep) if p]
    with contextlib.suppress(InvalidInput):  # no home directory: no user templates there
        dirs.append(xdg_base("XDG_CONFIG_HOME", ".config") / "erpops" / "templates")
    dirs.append(packaged_dir("templates"))
    return dirs


def _conf(value: Any) -> str:
    """A value on one line of an INI file (odoo.conf): never a line break that would add a key."""
    text = "False" if value is None else str(value)
    if "\n" in text or "\r" in text:
        raise ValueError("a value for an INI file spans lines")
    return text


def _yaml(value: Any) -> str:
    """A value as YAML (JSON is YAML): quoted and escaped, whatever it holds."""
    return json.dumps(value)


def _environment() -> SandboxedEnvironment:
    jinja = SandboxedEnvironment(
        loader=FileSystemLoader([str(d) for d in search_path()]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    jinja.filters["conf"] = _conf
    jinja.filters["yaml"] = _yaml
    return jinja


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    """The line of ``filename`` the error was raised at (Jinja rewrites its frames to the template's)."""
    line = None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(name: str, context: Mapping[str, Any]) -> Rendered:
    """Render ``name`` (``odoo/odoo.conf`` renders ``odoo/odoo.conf.j2``) with ``context``."""
    jinja = _environment()
    used: list[bool] = []

    def secret(reference: str) -> str:
        used.append(True)
        return secrets.resolve(reference)

    try:
        template = jinja.get_template(f"{name}.j2")
    except TemplateNotFound:
        where = ", ".join(str(d) for d in search_path())
        raise TemplateFailed(f"template {name}.j2 not found (looked in {where})") from None
    except TemplateSyntaxError as exc:
        raise TemplateFailed(f"{exc.filename}:{exc.lineno}: template syntax error: {exc.message}") from None
    source = Path(template.filename or name)
    try:
        text = template.render({**context, "secret": secret, "template": f"{name}.j2"})
    except (UndefinedError, TemplateError, ValueError, TypeError, KeyError, AttributeError) as exc:
        line = _template_line(exc.__traceback__, template.filename)
        what = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
        if isinstance(exc, UndefinedError):
            what += " (a value the environment does not set: see docs/configuration.md)"
        raise TemplateFailed(f"{source}:{line or '?'}: {secrets.redact(what)}") from None
    return Rendered(name, source, text, bool(used))
