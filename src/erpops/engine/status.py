"""``erpops status``: one screen for on-call — per environment, each line ok / warning / failing
with its reason:

- **app**: the health URL (``odoo.url`` + ``odoo.health_path``) answers 200;
- **database**: reachable; connections used of ``max_connections``; queries running longer than
  ``long_query`` seconds; sessions waiting on a lock; with a standby: it streams, and its replay lag;
- **crons**: active Odoo scheduled jobs overdue by more than an hour;
- **backups**: the newest verified and the newest restore-tested backup and their age (the recovery
  point exposure right now), and with ``backup.method: physical`` the WAL archive's newest segment;
- **drill**: the last restore drill's outcome;
- **tls**: days until the ingress host's certificate expires;
- **release** / **peak**: the release serving, an active peak and when it reverts.

Every environment, and every check of one, runs at the same time; each has a short timeout.
The database is asked one query for its server view and one for the crons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from erpops import secrets
from erpops.environments import Config, Environment
from erpops.errors import ErpopsError

TIMEOUT = 3.0
OK, WARNING, FAILING, SKIPPED = "ok", "warning", "failing", "skipped"
ORDER = {OK: 0, SKIPPED: 0, WARNING: 1, FAILING: 2}


@dataclass
class Limits:
    long_query: float = 300.0
    backup_age: float = 26 * 3600.0
    drill_age: float = 8 * 86400.0
    replication_lag: float = 30.0
    tls_days: int = 14


@dataclass
class Line:
    check: str
    level: str
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "detail": self.detail, **self.values}


@dataclass
class EnvStatus:
    environment: str
    lines: list[Line]
    seconds: float
    queries: int
    unreachable: bool = False

    @property
    def level(self) -> str:
        worst = max((ORDER[ln.level] for ln in self.lines), default=0)
        return {0: OK, 1: WARNING, 2: FAILING}[worst]

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "level": self.level, "seconds": round(self.seconds, 3),
                "queries": self.queries, "unreachable": self.unreachable,
                "checks": [ln.as_dict() for ln in self.lines]}  # fmt: skip


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _resolve(value: str) -> str:
    out = secrets.resolve(value) if secrets.is_reference(value) else value
    if out != value:
        secrets.REDACTOR.register(out)
    return out


class _Env:
    def __init__(self, config: Config, env: Environment, limits: Limits, state: Any) -> None:
        self.config, self.env, self.limits, self.state = config, env, limits, state
        self.queries = 0
        self.unreachable = False

    # --- checks -----------------------------------------------------------------------------
    def app(self) -> Line:
        import urllib.error
        import urllib.request

        if not self.env.odoo.url:
            return Line("app", SKIPPED, "no odoo.url")
        url = self.env.odoo.url.rstrip("/") + self.env.odoo.health_path
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=TIMEOUT) as resp:
                return Line("app", OK, f"{url} answered {resp.status}")
        except urllib.error.HTTPError as exc:
            return Line("app", FAILING, f"{url} answered {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return Line("app", FAILING, f"{url} does not answer: {getattr(exc, 'reason', exc)}")

    def database(self) -> list[Line]:
        from erpops.backends.postgres import client as pg

        if self.env.database is None:
            return [Line("database", SKIPPED, "no database")]
        dsn = _resolve(self.env.database.dsn)
        try:
            with pg.connect(dsn, connect_timeout=TIMEOUT) as conn:
                self.queries += 1
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
                    "current_setting('max_connections')::int, "
                    "(SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                    " AND backend_type = 'client backend' AND now() - query_start > make_interval(secs => %s)), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'), "
                    "pg_is_in_recovery(), "
                    "(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'), "
                    "(SELECT max(extract(epoch FROM coalesce(replay_lag, '0'::interval))) FROM pg_stat_replication)",
                    (self.limits.long_query,),
                ).fetchone()
        except ErpopsError as exc:
            self.unreachable = True
            return [Line("database", FAILING, str(exc))]
        assert row is not None
        used, most, long_running, waiting, recovery, streaming, lag = row
        share = used / most if most else 0.0
        level = FAILING if share > 0.95 else WARNING if share > 0.8 else OK
        lines = [Line("database", level, f"{used} of {most} connections" + (" (in recovery!)" if recovery else ""),
                      {"connections": used, "max_connections": most})]  # fmt: skip
        if recovery:
            lines[0].level = FAILING
        said = f"{long_running} running longer than {self.limits.long_query:.0f}s, {waiting} waiting on a lock"
        lines.append(Line("queries", WARNING if long_running or waiting else OK, said,
                          {"long_running": long_running, "lock_waits": waiting}))  # fmt: skip
        if self.env.standby is not None:
            if not streaming:
                lines.append(Line("replication", WARNING, "the standby is not streaming from the primary"))
            else:
                lag_s = self._standby_lag(float(lag) if lag is not None else None)
                bad = lag_s is not None and lag_s > self.limits.replication_lag
                lines.append(Line("replication", WARNING if bad else OK,
                                  f"replay lag {lag_s or 0:.1f}s" + (f" (more than {self.limits.replication_lag:g}s)"
                                                                     if bad else ""),
                                  {"replication_lag": lag_s}))  # fmt: skip
        return lines

    def _standby_lag(self, reported: float | None) -> float | None:
        """Seconds the standby's replay is behind: since the last transaction it replayed, unless it
        has replayed everything it received (an idle primary is not lag); the primary's view
        (``replay_lag``) when the standby does not answer."""
        from erpops.backends.postgres import client as pg

        assert self.env.standby is not None
        try:
            with pg.connect(_resolve(self.env.standby.dsn), connect_timeout=TIMEOUT) as conn:
                self.queries += 1
                row = conn.execute(
                    "SELECT pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(), "
                    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                ).fetchone()
        except ErpopsError:
            return reported
        assert row is not None
        caught_up, since = row
        return 0.0 if caught_up else (float(since) if since is not None else reported)

    def crons(self) -> Line:
        from erpops.backends.postgres import client as pg

        if self.env.database is None:
            return Line("crons", SKIPPED, "no database")
        try:
            with pg.connect(_resolve(self.env.database.dsn), self.env.database.name, connect_timeout=TIMEOUT) as conn:
                self.queries += 1
                row = conn.execute(
                    "SELECT count(*), min(nextcall) FROM ir_cron WHERE active "
                    "AND nextcall < (now() AT TIME ZONE 'UTC') - interval '1 hour'"
                ).fetchone()
        except ErpopsError as exc:
            return Line("crons", WARNING, f"cannot read ir_cron: {exc}")
        except Exception as exc:  # no ir_cron (not an Odoo database yet)
            return Line("crons", SKIPPED, f"no Odoo scheduled jobs: {type(exc).__name__}")
        assert row is not None
        overdue, oldest = row
        if not overdue:
            return Line("crons", OK, "no scheduled job overdue", {"overdue_crons": 0})
        said = f"{overdue} scheduled jobs overdue (the oldest since {oldest:%Y-%m-%d %H:%M} UTC)"
        return Line("crons", WARNING, said, {"overdue_crons": overdue})

    def backups(self) -> list[Line]:
        from erpops.backends.storage import open_store
        from erpops.backends.storage.catalog import Catalog
        from erpops.manifest import backup_time
        from erpops.retention import RESTORE_TESTED, VERIFIED

        if self.env.storage is None:
            return [Line("backups", SKIPPED, "no storage")]
        now = datetime.now(UTC)
        try:
            store = open_store(self.env.storage, _resolve)
            entries = Catalog(store, self.env.name).list()
        except ErpopsError as exc:
            self.unreachable = True
            return [Line("backups", FAILING, f"cannot list backups: {exc}")]
        verified = [e for e in entries if e.state in (VERIFIED, RESTORE_TESTED)]
        tested = [e for e in entries if e.state == RESTORE_TESTED]
        lines = []
        for name, found, limit, missing in (("backups", verified, self.limits.backup_age, FAILING),
                                            ("restore-tested", tested, self.limits.drill_age, WARNING)):  # fmt: skip
            if not found:
                lines.append(Line(name, missing, f"no {'verified' if name == 'backups' else 'restore-tested'} backup"))
                continue
            newest = found[0]
            age = (now - backup_time(newest.backup_id)).total_seconds()  # when its snapshot began
            lines.append(Line(name, WARNING if age > limit else OK, f"newest {newest.backup_id}, {_age(age)} old",
                              {f"{name.replace('-', '_')}_age_seconds": round(age, 1)}))  # fmt: skip
        if self.env.backup.method == "physical":
            from erpops.backends.postgres import wal
            from erpops.runbook.durations import parse_duration

            found_wal = wal.status(store, self.env.name)
            limit = parse_duration(self.env.backup.wal_max_age)
            if found_wal.newest is None or found_wal.age_seconds is None:
                lines.append(Line("wal", FAILING, "nothing archived"))
            else:
                bad = found_wal.age_seconds > limit
                lines.append(Line("wal", WARNING if bad else OK,
                                  f"newest {found_wal.newest.name}, {_age(found_wal.age_seconds)} old",
                                  {"wal_age_seconds": found_wal.age_seconds}))  # fmt: skip
        return lines

    def drill(self) -> Line:
        if self.state is None:
            return Line("drill", SKIPPED, "no state store")
        runs = [r for r in self.state.list_runs(environment=self.env.name) if r.runbook.startswith("restore-test")]
        if not runs:
            return Line("drill", WARNING, "never drilled (erpops restore-test)")
        last = runs[0]
        when = f"run {last.id}"
        if last.state == "succeeded":
            return Line("drill", OK, f"last drill passed ({when})")
        if last.state == "running":
            return Line("drill", OK, f"a drill is running ({when})")
        return Line("drill", FAILING, f"last drill {last.state} ({when}): {last.error or ''}".rstrip(": "))

    def tls(self) -> Line:
        import socket
        import ssl

        ingress = self.env.ingress
        if ingress is None:
            return Line("tls", SKIPPED, "no ingress")
        context = ssl.create_default_context()
        try:
            with (
                socket.create_connection((ingress.host, ingress.https_port), timeout=TIMEOUT) as raw,
                context.wrap_socket(raw, server_hostname=ingress.host) as tls,
            ):
                cert = tls.getpeercert()
        except ssl.SSLCertVerificationError as exc:
            return Line(
                "tls", WARNING, f"{ingress.host}:{ingress.https_port}: certificate not trusted ({exc.verify_message})"
            )
        except OSError as exc:
            return Line("tls", WARNING, f"{ingress.host}:{ingress.https_port} does not answer: {exc}")
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str((cert or {})["notAfter"])), UTC)
        days = (expires - datetime.now(UTC)).total_seconds() / 86400
        level = FAILING if days < 3 else WARNING if days < self.limits.tls_days else OK
        return Line("tls", level, f"certificate expires in {days:.0f} days ({expires:%Y-%m-%d})",
                    {"tls_days_left": round(days, 1)})  # fmt: skip

    def release_and_peak(self) -> list[Line]:
        if self.state is None:
            return []
        from erpops.records import list_releases

        lines = []
        releases = list_releases(self.state, self.env.name)
        serving = next((r for r in releases if r.get("status") in ("good", None)), None)
        if serving is not None:
            lines.append(Line("release", OK, f"serving {serving['id']}", {"release": serving["id"]}))
        peak = self.state.get_record("peak", self.env.name, "active")
        if peak is not None and peak.data.get("until"):
            until = datetime.fromisoformat(str(peak.data["until"]))
            until = until.replace(tzinfo=UTC) if until.tzinfo is None else until
            late = until < datetime.now(UTC)
            said = f"peak active, reverts {until:%Y-%m-%d %H:%M} UTC" + (" (overdue)" if late else "")
            lines.append(Line("peak", WARNING if late else OK, said))
        return lines


def collect(config: Config, names: list[str], state_factory: Callable[[], Any], limits: Limits) -> list[EnvStatus]:
    """Every environment's status, all at once."""
    results: dict[str, EnvStatus] = {}

    def one(name: str) -> None:
        t0 = time.monotonic()
        env = config.environment(name)
        state = state_factory()
        try:
            if state is not None:
                from erpops.records import apply_topology

                env = apply_topology(env, state)
            probe = _Env(config, env, limits, state)
            parts: dict[str, list[Line]] = {}
            jobs: list[tuple[str, Callable[[], Any]]] = [
                ("app", probe.app), ("database", probe.database), ("crons", probe.crons),
                ("backups", probe.backups), ("drill", probe.drill), ("tls", probe.tls),
                ("release", probe.release_and_peak),
            ]  # fmt: skip

            def run(key: str, fn: Callable[[], Any]) -> None:
                try:
                    got = fn()
                except Exception as exc:  # a check that breaks is a failing line, not a crash
                    got = Line(key, FAILING, f"{type(exc).__name__}: {secrets.redact(str(exc))}")
                parts[key] = got if isinstance(got, list) else [got]

            threads = [threading.Thread(target=run, args=job, daemon=True) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(3 * TIMEOUT)
            lines = [ln for key, _ in jobs for ln in parts.get(key, [Line(key, FAILING, "no answer in time")])]
            for ln in lines:
                ln.detail = secrets.redact(ln.detail)
            results[name] = EnvStatus(name, lines, time.monotonic() - t0, probe.queries, probe.unreachable)
        finally:
            if state is not None:
                state.close()

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[n] for n in names if n in results]
