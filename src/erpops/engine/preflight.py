"""Preflight: can every target of an environment be reached? (``erpops env check --env E``)

Each part of the environment is checked at the same time, each with a short timeout: the
database and the standby (connect, server version, in recovery or not), the object store, the
runtime (Docker engine or Kubernetes API), the Odoo URL when one is given, and the state store.
Secret references are resolved here, because a check needs them, and registered for redaction.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from erpops import secrets
from erpops.environments import Config, Database, Environment
from erpops.errors import ErpopsError

TIMEOUT = 5.0


@dataclass
class Check:
    target: str
    ok: bool | None  # None: nothing to check
    detail: str
    seconds: float = 0.0
    #: Reached, but not as it should be (the WAL archive is behind): said, not a failure.
    warning: bool = False

    @property
    def status(self) -> str:
        if self.ok and self.warning:
            return "warning"
        return "ok" if self.ok else ("skipped" if self.ok is None else "failed")

    def as_dict(self) -> dict[str, Any]:
        status = self.status
        return {"target": self.target, "status": status, "detail": self.detail, "seconds": round(self.seconds, 3)}


def _resolve(value: str) -> str:
    return secrets.resolve(value) if secrets.is_reference(value) else value


def _database(db: Database, expect_standby: bool) -> str:
    from erpops.backends.postgres import client as pg

    conn = pg.connect(_resolve(db.dsn), connect_timeout=TIMEOUT)
    try:
        version = pg.server_version(conn)
        recovery = pg.in_recovery(conn)
    finally:
        conn.close()
    role = "in recovery (standby)" if recovery else "primary"
    if expect_standby and not recovery:
        raise ErpopsError(f"PostgreSQL {version} answers but is not in recovery: the standby is not a standby")
    return f"PostgreSQL {version}, {role}"


def _storage(env: Environment) -> str:
    from erpops.backends.storage import open_store

    assert env.storage is not None
    store = open_store(env.storage, _resolve)
    store.check()
    return f"{env.storage.url} answers"


class _Behind(Exception):
    """A target that answers but is behind (reported as a warning)."""


def _wal(env: Environment) -> str:
    """backup.method physical: the newest archived WAL segment is younger than backup.wal_max_age."""
    from erpops.backends.postgres import wal
    from erpops.backends.storage import open_store
    from erpops.runbook.durations import parse_duration

    assert env.storage is not None
    found = wal.status(open_store(env.storage, _resolve), env.name)
    limit = parse_duration(env.backup.wal_max_age)
    if found.newest is None:
        raise _Behind("nothing is archived: archive_command is not 'erpops wal push ...' or is failing")
    age = found.age_seconds or 0.0
    said = f"newest archived WAL {found.newest.name}, {age:.0f}s old"
    if age > limit:
        raise _Behind(f"{said}: more than backup.wal_max_age ({env.backup.wal_max_age}); archiving is behind")
    return said


def _runtime(env: Environment) -> str:
    from erpops.backends.runtime import open_runtime

    with open_runtime(env) as runtime:
        return f"{runtime.describe()} answers"


def _odoo(env: Environment) -> str:
    import urllib.error
    import urllib.request

    assert env.odoo.url is not None
    url = env.odoo.url.rstrip("/") + env.odoo.health_path
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return f"{url} answered HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        raise ErpopsError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ErpopsError(f"{url} did not answer: {getattr(exc, 'reason', exc)}") from None


def _state(config: Config) -> str:
    from erpops.engine.store import open_state_store

    store = open_state_store(config)
    try:
        kind = {"SqliteStateStore": "SQLite", "PostgresStateStore": "PostgreSQL"}.get(type(store).__name__, "memory")
        return f"{kind} at {getattr(store, 'where', '') or 'memory'}"
    finally:
        store.close()


def preflight(config: Config, env: Environment) -> list[Check]:
    """Check every target of ``env`` concurrently; never raises for a failing target."""
    jobs: list[tuple[str, Callable[[], str] | None, str]] = [("state store", lambda: _state(config), "")]
    jobs.append(
        (
            "database",
            functools.partial(_database, env.database, False) if env.database else None,
            "no database configured",
        )
    )
    jobs.append(
        ("standby", functools.partial(_database, env.standby, True) if env.standby else None, "no standby configured")
    )
    jobs.append(("storage", (lambda: _storage(env)) if env.storage else None, "no storage configured"))
    jobs.append(("runtime", (lambda: _runtime(env)) if env.runtime.kind != "none" else None, "runtime.kind is none"))
    jobs.append(("odoo", (lambda: _odoo(env)) if env.odoo.url else None, "no odoo.url configured"))
    archiving = env.backup.method == "physical" and env.storage is not None
    jobs.append(("wal archive", (lambda: _wal(env)) if archiving else None, "backup.method is not physical"))

    def run(target: str, fn: Callable[[], str] | None, why_not: str) -> Check:
        if fn is None:
            return Check(target, None, why_not)
        start = time.monotonic()
        warning = False
        try:
            detail = fn()
            ok = True
        except _Behind as exc:
            detail, ok, warning = str(exc), True, True
        except (ErpopsError, secrets.SecretReferenceError) as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # an unexpected failure of a client library is still a failed check
            detail, ok = f"{type(exc).__name__}: {exc}", False
        return Check(target, ok, secrets.redact(detail), time.monotonic() - start, warning)

    # daemon threads: a target that hangs past its timeout must not keep erpops from exiting
    results: dict[int, Check] = {}
    threads = []
    for i, job in enumerate(jobs):
        t = threading.Thread(target=lambda i=i, job=job: results.__setitem__(i, run(*job)), daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + 3 * TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [
        results.get(i) or Check(job[0], False, f"no answer within {3 * TIMEOUT:g}s", 3 * TIMEOUT)
        for i, job in enumerate(jobs)
    ]
