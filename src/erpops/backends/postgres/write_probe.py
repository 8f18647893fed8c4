"""The write probe: measured write availability during a failover.

A background thread inserts one row every ``interval`` seconds (200 ms by default) into the table
``erpops_failover_probe`` through the application's database endpoint, on a fixed schedule (a slow
attempt does not cause a burst afterwards). :meth:`WriteProbe.set_endpoint` points it at another
server — the repoint step calls it, so the probe writes wherever the application's endpoint is at
that moment. After a failed write it reconnects for the next one, as an application would.

What it reports (:class:`ProbeReport`):

- ``write_unavailable_seconds``: after a repoint, the time between the last successful write to
  the old endpoint and the first successful write to the new one — measured even when the switch
  was quicker than the probe's interval and no write failed, so its resolution is the interval.
  Without a repoint: the longest outage (consecutive failed writes, last success before -> first
  after). An outage already under way when the probe started counts from the probe's start
  (``outage_began_before_probe``); one still under way when it stopped counts until the stop
  (``recovered`` false). ``outage_windows`` lists every run of failed writes.
- ``lost_rows``: probe rows whose commit was acknowledged (on any server) but that are missing on
  the server the endpoint points to at the end — writes the failover lost. Also, when the first
  server still answers, ``old_primary_only_rows``: rows there but not on the new primary
  (acknowledged or not).

```python
probe = WriteProbe(dsn, "odoo", run_id)
probe.prepare()            # creates the table (TargetUnreachable when the server does not answer)
probe.start(); ...; probe.set_endpoint(new_dsn); ...
report = probe.stop(settle=3.0)
```
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from erpops.backends.postgres import client as pg
from erpops.backends.postgres.replication import with_options
from erpops.errors import ErpopsError

TABLE = "erpops_failover_probe"
DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " run_id text NOT NULL, seq integer NOT NULL, generation integer NOT NULL,"
    " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run_id, seq))"
)
INSERT = f"INSERT INTO {TABLE} (run_id, seq, generation) VALUES (%s, %s, %s)"


@dataclass
class Attempt:
    seq: int
    generation: int
    started: float  # time.monotonic()
    ended: float
    ok: bool
    error: str | None = None


@dataclass
class Outage:
    last_ok_before: float | None  # monotonic, None when it began before the probe's first write
    first_ok_after: float | None  # None when not over when the probe stopped
    failed_writes: int
    first_error: str | None
    seconds: float
    began_before_probe: bool
    recovered: bool


@dataclass
class ProbeReport:
    interval: float
    attempts: int
    ok: int
    failed: int
    outages: int
    write_unavailable_seconds: float
    write_unavailable_total_seconds: float
    outage_began_before_probe: bool
    recovered: bool
    first_error: str | None
    acknowledged_rows: int
    lost_rows: int | None  # None: the final server could not be read
    lost_seqs: list[int] = field(default_factory=list)
    old_primary_only_rows: int | None = None
    endpoints: int = 1
    duration_seconds: float = 0.0
    outage_windows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WriteProbe:
    def __init__(self, dsn: str, dbname: str | None, run_id: str, interval: float = 0.2) -> None:
        self.run_id = run_id
        self.dbname = dbname
        self.interval = interval
        self._endpoints: list[str] = [dsn]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        self.attempts: list[Attempt] = []
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_generation = -1
        self.started_at = 0.0
        self.stopped_at = 0.0

    # -- control -------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return len(self._endpoints) - 1

    @property
    def endpoint(self) -> str:
        return self._endpoints[-1]

    def prepare(self) -> None:
        """Create the probe table on the current endpoint (TargetUnreachable when it is down)."""
        with pg.connect(self.endpoint, dbname=self.dbname, connect_timeout=3, application_name="erpops-probe") as c:
            c.execute(DDL)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"erpops-probe-{self.run_id}", daemon=True)
        self._thread.start()

    def set_endpoint(self, dsn: str) -> None:
        """Write to ``dsn`` from the next attempt on (the application was repointed)."""
        with self._lock:
            if dsn != self._endpoints[-1]:
                self._endpoints.append(dsn)

    def wait_first_success(self, timeout: float) -> bool:
        return self._wait(lambda: any(a.ok for a in self.attempts), timeout)

    def wait_recovered(self, timeout: float) -> bool:
        """Wait until the last attempt succeeded (no outage in progress)."""
        return self._wait(lambda: bool(self.attempts) and self.attempts[-1].ok, timeout)

    def _wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or not (self._thread and self._thread.is_alive()):
                    return predicate()
                self._changed.wait(min(left, 0.05))
            return True

    def stop(self, settle: float = 3.0) -> ProbeReport:
        """Stop and report. After a repoint, first wait up to ``settle`` seconds for a successful
        write to the new endpoint (without a repoint nothing is expected to end an outage)."""
        if settle > 0 and self.generation > 0:
            latest = self.generation
            self._wait(lambda: any(a.ok and a.generation == latest for a in self.attempts), settle)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.stopped_at = time.monotonic()
        self._close()
        return self.report()

    def switch_outage(self) -> Outage | None:
        """The outage around the repoint: last successful write to an earlier endpoint -> first
        successful write to the latest one (measured even when no probe write happened to fail,
        at the probe's resolution: up to one interval each side). None without a repoint."""
        if self.generation == 0:
            return None
        attempts = list(self.attempts)
        latest = self.generation
        first_new = next((a for a in attempts if a.ok and a.generation == latest), None)
        cut = first_new.seq if first_new else (attempts[-1].seq + 1 if attempts else 0)
        last_old = next((a for a in reversed(attempts) if a.ok and a.seq < cut and a.generation < latest), None)
        failed = [a for a in attempts if not a.ok and (last_old is None or a.seq > last_old.seq) and a.seq < cut]
        begin = last_old.ended if last_old else self.started_at
        end = first_new.ended if first_new else (self.stopped_at or time.monotonic())
        return Outage(
            last_old.ended if last_old else None,
            first_new.ended if first_new else None,
            len(failed),
            failed[0].error if failed else None,
            end - begin,
            last_old is None,
            first_new is not None,
        )

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        seq = 0
        next_tick = time.monotonic()
        while not self._stop.is_set():
            seq += 1
            attempt = self._attempt(seq)
            with self._changed:
                self.attempts.append(attempt)
                self._changed.notify_all()
            next_tick += self.interval
            now = time.monotonic()
            if next_tick < now:  # an attempt took longer than the interval: no burst afterwards
                next_tick = now
            self._stop.wait(next_tick - now)

    def _attempt(self, seq: int) -> Attempt:
        with self._lock:
            generation, dsn = self.generation, self.endpoint
        start = time.monotonic()
        try:
            if self._conn is None or self._conn_generation != generation or self._conn.closed:
                self._close()
                self._conn = pg.connect(
                    with_options(dsn, options="-c statement_timeout=2000"),
                    dbname=self.dbname,
                    connect_timeout=1,
                    application_name="erpops-probe",
                )
                self._conn_generation = generation
            try:
                self._conn.execute(INSERT, (self.run_id, seq, generation))
            except pgerrors.UndefinedTable:
                # the table was not created on this server (its primary was down at the start)
                self._conn.execute(DDL)
                self._conn.execute(INSERT, (self.run_id, seq, generation))
            return Attempt(seq, generation, start, time.monotonic(), True)
        except (psycopg.Error, ErpopsError, OSError) as exc:
            self._close()
            first = str(exc).strip().splitlines()
            return Attempt(seq, generation, start, time.monotonic(), False, first[0] if first else type(exc).__name__)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # -- the report ----------------------------------------------------------------------------
    def outages(self) -> list[Outage]:
        out: list[Outage] = []
        last_ok: float | None = None
        failed: list[Attempt] = []
        end = self.stopped_at or time.monotonic()
        for a in list(self.attempts):
            if a.ok:
                if failed:
                    begin = last_ok if last_ok is not None else self.started_at
                    out.append(Outage(last_ok, a.ended, len(failed), failed[0].error, a.ended - begin,
                                      last_ok is None, True))  # fmt: skip
                    failed = []
                last_ok = a.ended
            else:
                failed.append(a)
        if failed:
            begin = last_ok if last_ok is not None else self.started_at
            out.append(Outage(last_ok, None, len(failed), failed[0].error, end - begin, last_ok is None, False))
        return out

    def report(self) -> ProbeReport:
        attempts = list(self.attempts)
        outages = self.outages()
        longest = self.switch_outage() or max(outages, key=lambda o: o.seconds, default=None)
        acked = {a.seq for a in attempts if a.ok}
        present = _seqs(self.endpoint, self.dbname, self.run_id)
        lost = sorted(acked - present) if present is not None else []
        old_only = None
        if len(self._endpoints) > 1 and present is not None:
            on_old = _seqs(self._endpoints[0], self.dbname, self.run_id)
            old_only = len(on_old - present) if on_old is not None else None
        windows = [
            {
                "seconds": round(o.seconds, 3),
                "failed_writes": o.failed_writes,
                "first_error": o.first_error,
                "began_before_probe": o.began_before_probe,
                "recovered": o.recovered,
                "starts_after_probe_start": round((o.last_ok_before or self.started_at) - self.started_at, 3),
            }
            for o in outages
        ]
        return ProbeReport(
            interval=self.interval,
            attempts=len(attempts),
            ok=len(acked),
            failed=len(attempts) - len(acked),
            outages=len(outages),
            write_unavailable_seconds=round(longest.seconds, 3) if longest else 0.0,
            write_unavailable_total_seconds=round(sum(o.seconds for o in outages), 3),
            outage_began_before_probe=bool(longest and longest.began_before_probe),
            recovered=all(o.recovered for o in outages) and (longest is None or longest.recovered),
            first_error=longest.first_error if longest else None,
            acknowledged_rows=len(acked),
            lost_rows=len(lost) if present is not None else None,
            lost_seqs=lost[:50],
            old_primary_only_rows=old_only,
            endpoints=len(self._endpoints),
            duration_seconds=round((self.stopped_at or time.monotonic()) - self.started_at, 3),
            outage_windows=windows,
        )

    def cleanup(self) -> None:
        """Delete this run's rows on the current endpoint (best effort)."""
        try:
            with pg.connect(self.endpoint, dbname=self.dbname, connect_timeout=2, application_name="erpops-probe") as c:
                c.execute(f"DELETE FROM {TABLE} WHERE run_id = %s", (self.run_id,))
        except (psycopg.Error, ErpopsError):
            pass


def _seqs(dsn: str, dbname: str | None, run_id: str) -> set[int] | None:
    try:
        with pg.connect(dsn, dbname=dbname, connect_timeout=2, application_name="erpops-probe") as conn:
            rows = conn.execute(f"SELECT seq FROM {TABLE} WHERE run_id = %s", (run_id,)).fetchall()
            return {int(r[0]) for r in rows}
    except pgerrors.UndefinedTable:
        return set()
    except (psycopg.Error, ErpopsError):
        return None
