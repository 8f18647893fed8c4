"""Point-in-time recovery into a scratch server: a physical base backup unpacked, WAL replayed from
the archive up to a target, the copy promoted so that it can be checked.

How a drill to a moment works, so it can be checked by hand:

1. the newest base backup consistent before the target (its ``stop_time`` / ``stop_lsn``) is
   fetched (a local store's object is hashed where it lies; S3's downloaded), its SHA-256 checked,
   and unpacked into a new data directory; ``pg_verifybackup`` checks it against PostgreSQL's own
   ``backup_manifest`` before anything starts;
2. the WAL archive is listed once; segments the target certainly needs (archived before it, or all
   of them for ``latest``) must be there without a gap, else the drill stops naming the first
   missing one;
3. the copy is configured as a scratch server — its own port and socket in its own directory, no
   TCP, trust on that socket only, **archiving off** (a drill never writes into the live
   archive), no replication, the live server's preload libraries and SSL files left out — with a
   ``restore_command`` served by :class:`WalFeeder`: a thread fetching (and checking) the segments
   ahead of the replay, at most ``lookahead`` of them on disk, and what PostgreSQL asks for first;
4. PostgreSQL replays to the target (``recovery_target_time`` / ``_lsn``, or to the end of the
   archive for ``latest``, or to the consistency point of the base backup for ``immediate``) and
   promotes; its log says the last transaction replayed, which is the recovery point reached.

The live server and its data directory are never touched: the scratch server has its own port
and data directory, and binaries of the backup's major version (found as for pg_dump).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from erpops.backends.postgres import client as pg
from erpops.backends.postgres import local_server, wal
from erpops.backends.storage.base import ObjectStore
from erpops.errors import ErpopsError, InvalidInput, PermanentError
from erpops.manifest import Manifest

Cancelled = Callable[[], bool]


def _never() -> bool:
    return False


# --- the target -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the replay stops: ``immediate`` (the base backup's consistency point), a ``time``, an
    ``lsn``, or ``latest`` (everything archived)."""

    kind: str
    time: datetime | None = None
    lsn: str | None = None

    def describe(self) -> str:
        if self.kind == "time" and self.time is not None:
            return self.time.isoformat()
        return self.lsn if self.kind == "lsn" and self.lsn else self.kind

    def settings(self) -> dict[str, str]:
        if self.kind == "time" and self.time is not None:
            return {"recovery_target_time": f"'{self.time.isoformat()}'"}
        if self.kind == "lsn":
            return {"recovery_target_lsn": f"'{self.lsn}'"}
        if self.kind == "immediate":
            return {"recovery_target": "'immediate'"}
        return {}


def parse_target(to_time: str | None, to_lsn: str | None) -> Target:
    """``--to-time`` (ISO 8601, a zone or UTC; or ``latest``) / ``--to-lsn``; neither: immediate."""
    if to_time and to_lsn:
        raise InvalidInput("give --to-time or --to-lsn, not both")
    if to_lsn:
        if not re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", to_lsn):
            raise InvalidInput(f"--to-lsn {to_lsn!r} is not an LSN (e.g. 0/3000060)")
        return Target("lsn", lsn=to_lsn.upper())
    if not to_time:
        return Target("immediate")
    if to_time.strip().lower() == "latest":
        return Target("latest")
    try:
        when = datetime.fromisoformat(to_time.strip())
    except ValueError:
        raise InvalidInput(
            f"--to-time {to_time!r} is not a moment: give ISO 8601 (2026-12-07T02:15:00Z, a zone or UTC) or latest"
        ) from None
    return Target("time", time=(when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(UTC))


def lsn_value(lsn: str) -> int:
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    return (hi << 32) | lo


def fits(manifest: Manifest, target: Target) -> bool:
    """Whether a restore from this base backup can reach ``target`` (it is consistent before it)."""
    phys = manifest.physical
    if manifest.method != "physical" or phys is None:
        return False
    if target.kind == "time" and target.time is not None:
        return phys.stop_time <= target.time
    if target.kind == "lsn" and target.lsn:
        return lsn_value(phys.stop_lsn) <= lsn_value(target.lsn)
    return True


# --- the WAL, fed to the replay ---------------------------------------------------------------------

RESTORE_SCRIPT = """#!/bin/sh
# restore_command of an erpops drill: the WAL erpops fetched (and checked) for this replay.
f="$1"; p="$2"; d="$(dirname "$0")"
if ! grep -qx "$f" "$d/archive.list"; then echo "$f" >> "$d/missing.log"; exit 1; fi
: > "$d/want/$f"
i=0
while [ ! -f "$d/ready/$f" ]; do
  if [ -f "$d/error" ]; then cat "$d/error" >&2; exit 126; fi
  i=$((i+1)); if [ "$i" -gt 12000 ]; then echo "erpops: $f not fetched within 10 minutes" >&2; exit 126; fi
  sleep 0.05
done
mv "$d/ready/$f" "$p"
"""


class WalGap(PermanentError):
    """A WAL segment the restore needs is not in the archive."""


def _history_switches(store: ObjectStore, archive: dict[str, wal.Archived]) -> dict[int, int]:
    """timeline -> the segment number it starts at, from the newest timeline's history file."""
    histories = sorted(n for n in archive if n.endswith(".history"))
    if not histories:
        return {}
    import zstandard

    newest = archive[histories[-1]]
    text = zstandard.ZstdDecompressor().decompress(store.get_bytes(newest.key), max_output_size=1 << 20).decode()
    starts: dict[int, int] = {}
    child = int(histories[-1][:8], 16)
    parents = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and "/" in parts[1]:
            parents.append((int(parts[0]), lsn_value(parts[1]) // wal.SEGMENT_SIZE))
    # each line: the parent timeline and where the next one branched off it
    for i, (_parent, switch) in enumerate(parents):
        branched = parents[i + 1][0] if i + 1 < len(parents) else child
        starts[branched] = switch
    return starts


@dataclass
class Plan:
    """The segments (one per position, on the timeline the replay follows) from the base backup on."""

    names: list[str]
    missing: list[str]
    history: list[str]


def plan_wal(store: ObjectStore, archive: dict[str, wal.Archived], manifest: Manifest, target: Target) -> Plan:
    """What the replay will read, in order; ``missing``: positions the target certainly needs that
    the archive lacks (before the target: archived before it; for latest: up to the newest)."""
    assert manifest.physical is not None
    first = wal.lsn_segment(manifest.physical.start_lsn)
    starts = _history_switches(store, archive)
    base_tli = manifest.physical.timeline

    def timeline_at(number: int) -> int:
        tli = base_tli
        for t, start in sorted(starts.items()):
            if t > tli and start <= number:
                tli = t
        return tli

    segments = [a for a in archive.values() if a.is_segment and a.timeline >= base_tli]
    last = max((wal.segment_number(a.name) for a in segments), default=first - 1)
    names, missing = [], []
    need_until = last if target.kind == "latest" else first - 1
    if target.kind == "time" and target.time is not None:
        before = [wal.segment_number(a.name) for a in segments if a.modified and a.modified <= target.time]
        need_until = max(before, default=first - 1)
    if target.kind == "lsn" and target.lsn:
        need_until = min(last, wal.lsn_segment(target.lsn) - 1)
    # the base backup carries the WAL up to its stop (pg_basebackup -X fetch): what the archive has
    # of those segments is preferred (complete), what it lacks is no gap
    covered = wal.lsn_segment(manifest.physical.stop_lsn)
    for number in range(first, max(last, need_until) + 1):
        name = wal.segment_name(timeline_at(number), number)
        if name in archive:
            names.append(name)
        elif covered < number <= need_until:
            missing.append(name)
    history = sorted(n for n in archive if n.endswith(".history"))
    return Plan(names, missing, history)


class WalFeeder:
    """Serves a recovering server's ``restore_command`` (:data:`RESTORE_SCRIPT`) from a spool
    folder: what it asks for first, else the next planned segments, at most ``lookahead`` waiting
    on disk; each fetched file's SHA-256 checked before it is put where PostgreSQL takes it."""

    def __init__(
        self,
        store: ObjectStore,
        archive: dict[str, wal.Archived],
        plan: Plan,
        spool: Path,
        *,
        lookahead: int = 8,
        cancelled: Cancelled = _never,
    ) -> None:
        self.store, self.archive, self.plan, self.spool = store, archive, plan, spool
        self.lookahead, self.cancelled = lookahead, cancelled
        self.fetched: list[str] = []
        self.bytes = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for sub in ("ready", "want"):
            (spool / sub).mkdir(parents=True, exist_ok=True)
        (spool / "archive.list").write_text("".join(f"{n}\n" for n in sorted(archive)))
        script = spool / "restore.sh"
        script.write_text(RESTORE_SCRIPT)
        script.chmod(0o755)
        for path in (spool, spool / "ready", spool / "want"):
            path.chmod(0o755)
            local_server.run_as_server_user(path)

    @property
    def command(self) -> str:
        return f'\'{self.spool / "restore.sh"} "%f" "%p"\''

    def requested_missing(self) -> list[str]:
        log = self.spool / "missing.log"
        return log.read_text().split() if log.exists() else []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="erpops-wal-feeder")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _serve(self, name: str) -> None:
        ready = self.spool / "ready" / name
        if ready.exists():
            return
        tmp = self.spool / f".{name}.part"
        self.bytes += wal.fetch(self.store, self.archive[name], tmp)
        tmp.chmod(0o600)
        local_server.run_as_server_user(tmp)  # the server renames and rewrites what it restores
        os.replace(tmp, ready)
        if name not in self.fetched:
            self.fetched.append(name)

    def _run(self) -> None:
        queue = [*self.plan.history, *self.plan.names]
        want = self.spool / "want"
        try:
            while not self._stop.is_set() and not self.cancelled():
                asked = sorted(p.name for p in want.iterdir())
                if asked:  # what the replay waits for first (again, if it reads a file twice)
                    for name in asked:
                        if name in self.archive:
                            self._serve(name)
                        (want / name).unlink(missing_ok=True)
                    continue
                waiting = sum(1 for _ in (self.spool / "ready").iterdir())
                queue = [n for n in queue if n not in self.fetched]
                if queue and waiting < self.lookahead:
                    self._serve(queue[0])
                    continue
                time.sleep(0.02)
        except Exception as exc:  # the replay is told (restore.sh exits 126) and the drill reports it
            self.error = str(exc)
            (self.spool / "error").write_text(f"erpops: {exc}\n")


# --- the scratch server -------------------------------------------------------------------------------


@dataclass
class Recovered:
    datadir: Path
    port: int
    user: str
    reached_time: datetime | None
    next_commit: datetime | None
    reached_lsn: str | None
    stopped_at_target: bool
    seconds: float
    segments: list[str] = field(default_factory=list)
    wal_bytes: int = 0

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.datadir}&port={self.port}"


_DROP_FROM_COPY = ("postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal", ".handle_pids.json")


def configure_copy(datadir: Path, port: int, target: Target, restore_command: str) -> None:
    """Make an unpacked base backup a private scratch server that replays to ``target``."""
    for name in _DROP_FROM_COPY:
        (datadir / name).unlink(missing_ok=True)
    for lock in datadir.glob(".s.PGSQL.*"):  # the live server's socket lock, copied with the data
        lock.unlink(missing_ok=True)
    log = datadir / "log"
    if log.is_file():
        log.write_text("")
    (datadir / "pg_hba.erpops-drill.conf").write_text("local all all trust\n")
    settings = {
        "port": str(port),
        "listen_addresses": "''",
        "unix_socket_directories": f"'{datadir}'",
        "hba_file": f"'{datadir / 'pg_hba.erpops-drill.conf'}'",
        "ident_file": "''",
        "archive_mode": "off",
        "archive_command": "''",
        "restore_command": restore_command,
        "recovery_target_timeline": "'latest'",
        "recovery_target_action": "'promote'",
        "primary_conninfo": "''",
        "primary_slot_name": "''",
        "hot_standby": "off",
        "shared_preload_libraries": "''",
        "ssl": "off",
        "logging_collector": "off",
        "log_destination": "'stderr'",
        "synchronous_standby_names": "''",
        "default_transaction_read_only": "off",
        **target.settings(),
    }
    local_server.configure(datadir, settings)
    (datadir / "recovery.signal").write_text("")


_LAST = re.compile(r"last completed transaction was at log time (.+?)$", re.MULTILINE)
_STOP = re.compile(r"recovery stopping (?:before|after) (?:commit|abort) of transaction \d+, time (.+?)$", re.MULTILINE)
_REDO = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)", re.MULTILINE)


def _log_time(text: str) -> datetime | None:
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.strip().replace(" ", "T", 1)).astimezone(UTC)
    return None


def recover(
    datadir: Path,
    port: int,
    target: Target,
    feeder: WalFeeder,
    *,
    user: str,
    major: int,
    timeout: float = 3600,
) -> Recovered:
    """Start the copy in ``datadir``, let it replay through ``feeder`` to ``target`` and promote."""
    bindir = local_server.server_bindir_for(major)
    configure_copy(datadir, port, target, feeder.command)
    local_server.own_datadir(datadir)
    t0 = time.monotonic()
    feeder.start()
    deadline = time.monotonic() + timeout
    try:
        try:
            # pg_ctl returns once the copy is consistent (still replaying, hot_standby off)
            local_server.start(datadir, bindir=bindir, timeout=timeout)
            _wait_promoted(datadir, port, user, deadline)
        except PermanentError as exc:
            raise PermanentError(_why(datadir, feeder, target, exc)) from None
    finally:
        feeder.stop()
    seconds = round(time.monotonic() - t0, 3)
    text = (datadir / "log").read_text(errors="replace") if (datadir / "log").is_file() else ""
    stop = _STOP.search(text)
    last = _LAST.findall(text)
    redo = _REDO.findall(text)
    return Recovered(
        datadir=datadir,
        port=port,
        user=user,
        reached_time=_log_time(last[-1]) if last else None,  # the last commit replayed
        next_commit=_log_time(stop.group(1)) if stop else None,  # the first one left out
        reached_lsn=redo[-1] if redo else None,
        stopped_at_target=bool(stop) or target.kind in ("immediate", "latest"),
        seconds=seconds,
        segments=list(feeder.fetched),
        wal_bytes=feeder.bytes,
    )


def _wait_promoted(datadir: Path, port: int, user: str, deadline: float) -> None:
    """Until the copy has replayed to its target and promoted (it accepts connections and is out of
    recovery); a server that stops on the way (a FATAL in its log) fails at once."""
    dsn = f"postgresql://{user}@/postgres?host={datadir}&port={port}"
    while True:
        if not local_server.status(datadir).running:
            raise PermanentError("the scratch server stopped during the replay")
        try:
            with pg.connect(dsn, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return
        except ErpopsError:
            pass  # still replaying ("not accepting connections")
        if time.monotonic() > deadline:
            raise PermanentError("the replay did not finish in time")
        time.sleep(0.1)


def _why(datadir: Path, feeder: WalFeeder, target: Target, exc: Exception) -> str:
    """The replay failed: the first reason PostgreSQL or the feeder gives, in one line."""
    if feeder.error:
        return f"the replay stopped: {feeder.error}"
    text = (datadir / "log").read_text(errors="replace") if (datadir / "log").is_file() else ""
    fatal = [ln.split("FATAL:", 1)[1].strip() for ln in text.splitlines() if "FATAL:" in ln]
    last = max((wal.segment_number(n) for n in feeder.plan.names), default=-1)
    gaps = [n for n in feeder.requested_missing() if wal.SEGMENT.match(n) and wal.segment_number(n) < last]
    reason = fatal[0] if fatal else str(exc)
    if gaps:
        reason += f"; the archive has no {gaps[0]}, which it asked for"
    elif "before configured recovery target" in reason and feeder.plan.names:
        reason += (f"; nothing committed after {target.describe()} is archived yet (the newest segment is "
                   f"{feeder.plan.names[-1]}): a later moment needs more WAL, or use --to-time latest")  # fmt: skip
    return f"the replay to {target.describe()} failed: {reason}"


def stop(datadir: Path, *, major: int | None = None) -> None:
    """Stop the scratch server (immediately: it is thrown away)."""
    with contextlib.suppress(PermanentError):
        bindir = local_server.server_bindir_for(major) if major else None
        local_server.stop(datadir, mode="immediate", bindir=bindir, timeout=60)


def remove(datadir: Path, *, major: int | None = None) -> None:
    stop(datadir, major=major)
    shutil.rmtree(datadir, ignore_errors=True)


def verify_backup(datadir: Path, major: int) -> str:
    """``pg_verifybackup`` of an unpacked base backup (its backup_manifest, files and WAL)."""
    import subprocess

    tool = pg.find_client("pg_verifybackup", min_major=major)
    done = subprocess.run([str(tool.path), str(datadir)], capture_output=True, text=True, timeout=3600)
    said = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise PermanentError(f"pg_verifybackup refuses the base backup: {said.splitlines()[-1] if said else ''}")
    return said


def user_of(dsn: str) -> str:
    return pg.parse_dsn(dsn).get("user") or os.environ.get("PGUSER") or "postgres"


def describe(recovered: Recovered, database: str) -> dict[str, Any]:
    return {"dsn": recovered.dsn(database), "port": recovered.port, "datadir": str(recovered.datadir)}
