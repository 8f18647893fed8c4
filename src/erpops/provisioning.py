"""What ``erpops provision`` reports per object: create, update, remove or no change, and why.

The backends that converge an object (a database role, a bucket, a file, a container) return one
:class:`ObjectChange` per object they looked at, whether they were asked to apply or only to plan
(``--dry-run``): the same list, so a dry run says exactly what a run does.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Action = Literal["create", "update", "remove", "no change"]


@dataclass(frozen=True)
class ObjectChange:
    kind: str  # "network", "volume", "file", "container", "database role", "database", "bucket"...
    name: str
    action: Action
    #: Why (what differs), or for a configuration file a unified diff with secrets masked.
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.action != "no change"

    def line(self) -> str:
        first = self.detail.splitlines()[0] if self.detail else ""
        if first.startswith("--- "):
            first = "differs (the diff follows)"
        return f"{self.action:<9} {self.kind} {self.name}" + (f": {first}" if first else "")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "detail": self.detail}


def summary(changes: list[ObjectChange]) -> str:
    """``3 to create, 1 to update, 12 unchanged`` (or ``nothing to change``)."""
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    if not any(c.changed for c in changes):
        n = len(changes)
        return f"nothing to change ({n} object{'' if n == 1 else 's'} as rendered)"
    parts = [f"{counts[a]} to {a}" for a in ("create", "update", "remove") if counts.get(a)]
    return ", ".join(parts) + f", {counts.get('no change', 0)} unchanged"


def db_endpoint(env: Any, resolve: Callable[[str], str]) -> dict[str, Any]:
    """How Odoo's instances reach PostgreSQL: ``odoo.db_host``/``db_port``, else the host and port
    of ``database.dsn`` (resolved through ``resolve`` when it is a reference)."""
    from erpops import secrets

    assert env.database is not None
    host, port = env.odoo.db_host, env.odoo.db_port
    if host is None or port is None:
        dsn = resolve(env.database.dsn) if secrets.is_reference(env.database.dsn) else env.database.dsn
        if dsn.startswith(("postgresql://", "postgres://")):
            parts = urllib.parse.urlsplit(dsn)
            query = dict(urllib.parse.parse_qsl(parts.query))
            first = parts.netloc.rpartition("@")[2].split(",")[0]
            bracketed = first.endswith("]")
            dsn_host = first.rpartition(":")[0] if ":" in first and not bracketed else first
            dsn_port = first.rpartition(":")[2] if ":" in first and not bracketed else ""
            host = host or query.get("host") or dsn_host or "localhost"
            port = port or int(query.get("port") or dsn_port or 5432)
        else:
            pairs = dict(p.split("=", 1) for p in dsn.split() if "=" in p)
            host = host or pairs.get("host", "localhost").strip("'")
            port = port or int(pairs.get("port", "5432").strip("'"))
    return {"host": host, "port": port}
