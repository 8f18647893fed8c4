"""Where runbooks are found: a user's directories first, then those shipped with erpops."""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path

from erpops.errors import InvalidInput
from erpops.files import xdg_base


def packaged_dir(kind: str = "runbooks") -> Path:
    """The shipped runbooks (or templates): inside the installed package, or the source checkout."""
    installed = Path(str(resources.files("erpops"))) / kind
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[3] / kind


def search_path() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get("ERPOPS_RUNBOOK_PATH", "").split(os.pathsep) if p]
    with contextlib.suppress(InvalidInput):  # no home directory: no user runbooks there
        dirs.append(xdg_base("XDG_CONFIG_HOME", ".config") / "erpops" / "runbooks")
    dirs.append(packaged_dir())
    return dirs


def available() -> dict[str, Path]:
    """name -> file, the first found on the search path winning."""
    found: dict[str, Path] = {}
    for d in search_path():
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def find(name_or_path: str) -> Path:
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        p = Path(name_or_path)
        if not p.exists():
            raise InvalidInput(f"runbook file not found: {name_or_path}")
        return p
    books = available()
    if name_or_path not in books:
        raise InvalidInput(f"no runbook named {name_or_path!r}; available: {', '.join(sorted(books)) or '(none)'}")
    return books[name_or_path]
