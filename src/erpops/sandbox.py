"""The ``sandbox`` environment: a complete, real Odoo-shaped platform on one machine, no infrastructure.

Under the sandbox root (``$ERPOPS_SANDBOX_DIR``, else ``~/.local/share/erpops/sandbox``):

```
primary/            PostgreSQL data directory, socket .s.PGSQL.5432 inside (the seeded database "odoo")
standby/            its streaming standby (pg_basebackup -R), socket .s.PGSQL.5433 inside
storage/            the local-directory object store backups go to
filestore/odoo/     the Odoo filestore of database "odoo"
```

``up`` is idempotent: it starts what is stopped and creates what is missing; on a running sandbox it
only reports. After a failover the two data directories swap roles (the promoted ``standby/`` is
the primary); ``reseed_standby`` turns whichever directory is not the primary into a fresh standby of
the one that is, so failover drills can repeat. A stopped former primary is never started next to a
promoted one: of two non-standby directories only the one on the newest timeline is started.
"""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from erpops import environments
from erpops.backends.odoo import seed
from erpops.backends.postgres import client as pg
from erpops.backends.postgres import local_server as pgserver
from erpops.errors import InvalidInput, PermanentError, TemporaryError

DATABASE = "odoo"
MARKER = ".erpops-sandbox"
RUNTIME = "runtime.json"  # the sandbox's Docker runtime, when an engine answered at `up` (see environments)
#: New sandbox data directories are not flushed to disk when created (faster; it is a sandbox).
SYNC = False
Report = Callable[[str], None]


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def primary(self) -> Path:
        return self.root / "primary"

    @property
    def standby(self) -> Path:
        return self.root / "standby"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def filestore(self) -> Path:
        return self.root / "filestore" / DATABASE

    def servers(self) -> list[tuple[str, Path, int]]:
        return [
            ("primary", self.primary, environments.SANDBOX_PRIMARY_PORT),
            ("standby", self.standby, environments.SANDBOX_STANDBY_PORT),
        ]


def paths(root: Path | str | None = None) -> Paths:
    return Paths(Path(root).expanduser().resolve() if root else environments.sandbox_root().resolve())


@dataclass
class ServerStatus:
    name: str  # the data directory's name: "primary" or "standby"
    datadir: str
    port: int
    dsn: str
    initialized: bool
    running: bool
    role: str  # primary | standby | fenced (a former primary a failover fenced) | stopped | absent
    timeline: int | None = None
    replaying: bool | None = None  # standby: WAL receiver streaming
    lag_bytes: int | None = None  # standby: bytes between the primary's WAL position and its replay
    replay_delay_seconds: float | None = None  # standby: age of the last replayed transaction
    error: str | None = None


@dataclass
class SandboxStatus:
    root: str
    storage: str
    filestore: str
    database: str
    servers: list[ServerStatus] = field(default_factory=list)
    database_exists: bool = False
    database_size_bytes: int | None = None
    primary: str | None = None  # name of the directory that is primary now
    warnings: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # what up/reseed did
    seed: dict[str, Any] | None = None

    @property
    def healthy(self) -> bool:
        standbys = [s for s in self.servers if s.role == "standby"]
        return self.primary is not None and self.database_exists and any(s.replaying for s in standbys)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["healthy"] = self.healthy
        return out


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def _locked(p: Paths) -> Iterator[None]:
    """One sandbox command at a time on a root."""
    p.root.mkdir(parents=True, exist_ok=True)
    with open(p.root / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PermanentError(f"another erpops sandbox command is working on {p.root}; try again") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _timeline(datadir: Path) -> int:
    """The data directory's timeline: the newest ``pg_wal/*.history`` (1 when none)."""
    wal = datadir / "pg_wal"
    numbers = [int(f.name[:8], 16) for f in wal.glob("*.history") if f.name[:8].isalnum()] if wal.exists() else []
    return max(numbers, default=1)


def _probe(name: str, datadir: Path, port: int) -> ServerStatus:
    initialized = pgserver.is_initialized(datadir)
    info = pgserver.status(datadir) if initialized else None
    dsn = info.dsn() if info else f"postgresql://postgres@/postgres?host={datadir}&port={port}"
    st = ServerStatus(name, str(datadir), info.port if info else port, dsn, initialized,
                      bool(info and info.running), "absent" if not initialized else "stopped")  # fmt: skip
    if not initialized or info is None:
        return st
    st.timeline = _timeline(datadir)
    if not info.running:
        return st
    try:
        with pg.connect(info.dsn(), connect_timeout=3) as conn:
            if pg.in_recovery(conn):
                st.role = "standby"
                row = conn.execute(
                    "SELECT status = 'streaming', "
                    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 "
                    "FROM pg_stat_wal_receiver RIGHT JOIN (SELECT 1) one ON true"
                ).fetchone()
                st.replaying = bool(row and row[0])
                st.replay_delay_seconds = round(row[1], 3) if row and row[1] is not None else None
            else:
                row = conn.execute("SELECT current_setting('erpops.fence', true)").fetchone()
                # a former primary that a failover fenced takes no application writes: not a primary
                st.role = "fenced" if row and row[0] else "primary"
    except Exception as exc:  # reported, not raised: status must always answer
        st.error = str(exc)
    return st


def _fill_lag(status: SandboxStatus) -> None:
    """Replication lag in bytes, measured on the primary (pg_stat_replication by application name)."""
    prim = next((s for s in status.servers if s.name == status.primary), None)
    if prim is None:
        return
    try:
        with pg.connect(prim.dsn, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                "FROM pg_stat_replication"
            ).fetchall()
            lag = {r[0]: r[1] for r in rows}
            row = conn.execute(
                "SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", (status.database,)
            ).fetchone()
            status.database_exists = row is not None
            status.database_size_bytes = int(row[0]) if row else None
    except Exception as exc:
        status.warnings.append(f"cannot query the primary: {exc}")
        return
    for s in status.servers:
        if s.role == "standby":
            s.lag_bytes = lag.get(s.name)
            if s.lag_bytes is None:
                s.replaying = False


def _collect(p: Paths) -> SandboxStatus:
    status = SandboxStatus(str(p.root), str(p.storage), str(p.filestore), DATABASE)
    status.servers = [_probe(name, d, port) for name, d, port in p.servers()]
    primaries = [s for s in status.servers if s.role == "primary"]
    if len(primaries) > 1:
        newest = max(primaries, key=lambda s: s.timeline or 1)
        status.warnings.append(
            "both servers accept writes (split brain); the newest timeline is "
            f"{newest.name}: stop the other or run `erpops sandbox reseed-standby`"
        )
        status.primary = newest.name
    elif primaries:
        status.primary = primaries[0].name
    else:  # no promoted standby (a failover that stopped after the fence): the fenced one is still the source
        fenced = [s for s in status.servers if s.role == "fenced"]
        status.primary = fenced[0].name if fenced else None
    _fill_lag(status)
    for s in status.servers:
        if s.role == "fenced":
            status.warnings.append(
                f"{s.name} is a former primary that a failover fenced (it refuses the application); "
                "`erpops sandbox reseed-standby` makes it a standby of the new primary"
            )
        if s.role == "stopped" and status.primary and not (Path(s.datadir) / "standby.signal").exists():
            status.warnings.append(
                f"{s.name} is a stopped former primary; `erpops sandbox reseed-standby` makes it a standby again"
            )
    return status


def _seeded_scale(dsn: str) -> float | None:
    """The scale recorded in the seeded database's comment (``erpops:seed scale=N at=...``)."""
    with pg.connect(dsn) as conn:
        _exists, comment = pg.database_comment(conn, DATABASE)
    for word in (comment or "").split():
        if word.startswith("scale="):
            try:
                return float(word[6:])
            except ValueError:
                return None
    return None


def status(root: Path | str | None = None) -> SandboxStatus:
    """Servers up? which is primary? is the standby replaying, how far behind? database size, paths."""
    return _collect(paths(root))


def _startable(p: Paths) -> list[tuple[str, Path, int]]:
    """Directories that may be started: every standby, and of the non-standby (primary) directories
    only the one on the newest timeline (a promoted standby wins over the primary it replaced)."""
    dirs = [(n, d, port) for n, d, port in p.servers() if pgserver.is_initialized(d)]
    primaries = [x for x in dirs if not (x[1] / "standby.signal").exists()]
    running = [x for x in primaries if pgserver.status(x[1]).running]
    keep = running or sorted(primaries, key=lambda x: _timeline(x[1]), reverse=True)[:1]
    return [x for x in dirs if x not in primaries or x in keep]


# --- lifecycle --------------------------------------------------------------------------------


def up(
    scale: float | None = None,
    *,
    root: Path | str | None = None,
    report: Report | None = None,
    runtime: bool = True,
    archive: bool = False,
    catalog: str = "minimal",
) -> SandboxStatus:
    """Start (creating what is missing) the primary, the streaming standby, the object-store directory
    and the seeded database ``odoo`` with its filestore. ``scale`` (default 1) and ``catalog``
    (``odoo18``: a real Odoo 18 database's 528-table catalog, see :func:`seed.seed`) only matter
    when seeding; given for an already seeded sandbox at another scale, it is reported, not applied.
    With ``runtime`` and a Docker engine answering, the sandbox also gets a Docker runtime (web
    and cron of a demo image behind Traefik: :mod:`erpops.backends.runtime.docker.sandbox`)."""
    say = report or (lambda _msg: None)
    seed.scaled_counts(scale or 1.0)  # validate before doing anything
    seed.check_catalog(catalog)
    p = paths(root)
    actions: list[str] = []
    warnings: list[str] = []
    seeded: dict[str, Any] | None = None
    with _locked(p):
        (p.root / MARKER).touch()
        p.storage.mkdir(parents=True, exist_ok=True)
        p.filestore.parent.mkdir(parents=True, exist_ok=True)
        for name, datadir, _port in _startable(p):
            if not pgserver.status(datadir).running:
                t = time.monotonic()
                pgserver.start(datadir)
                actions.append(f"started {name} ({time.monotonic() - t:.1f}s)")
                say(actions[-1])
        current = _collect(p)
        if current.primary is None:
            if any(s.initialized for s in current.servers):
                raise PermanentError(
                    f"no primary in {p.root}: the servers there are standbys without a primary",
                    hint="promote one (failover) or start over with `erpops sandbox down --purge`",
                )
            t = time.monotonic()
            pgserver.start_primary(p.primary, environments.SANDBOX_PRIMARY_PORT, sync=SYNC)
            actions.append(f"created primary ({time.monotonic() - t:.1f}s)")
            say(actions[-1])
            current = _collect(p)
        prim = next(s for s in current.servers if s.name == current.primary)
        if not seed.database_exists(prim.dsn, DATABASE):
            say(f"seeding database {DATABASE} at scale {scale or 1.0:g}...")
            result = seed.seed(prim.dsn, DATABASE, p.filestore, scale or 1.0, replace=True, catalog=catalog)
            seeded = result.as_dict()
            shape = "" if catalog == "minimal" else f", {catalog} catalog"
            actions.append(f"seeded {DATABASE} at scale {scale or 1.0:g}{shape} ({result.seconds:.1f}s)")
            say(actions[-1])
        elif scale is not None and (seeded_at := _seeded_scale(prim.dsn)) not in (None, scale):
            warnings.append(
                f"{DATABASE} was seeded at scale {seeded_at:g}, not {scale:g}; "
                "to reseed: `erpops sandbox down --purge`, then `up --scale`"
            )
        other = next(s for s in current.servers if s.name != current.primary)
        if not other.initialized:
            t = time.monotonic()
            pgserver.create_standby(pgserver.status(prim.datadir), Path(other.datadir), other.port, sync=SYNC)
            actions.append(f"created {other.name} as streaming standby ({time.monotonic() - t:.1f}s)")
            say(actions[-1])
        for s in _collect(p).servers:
            if s.role == "standby" and not s.replaying:
                try:
                    pgserver.wait_for_streaming(pgserver.status(s.datadir), timeout=15)
                except TemporaryError as exc:
                    say(str(exc))
        if runtime:
            actions += _runtime(p, say)
        if archive:
            actions += _archive(p, say)
        final = _collect(p)
    final.actions = actions
    final.warnings += warnings
    final.seed = seeded
    return final


ARCHIVE_RECORD = "archive.json"


def archive_command(root: Path) -> str:
    """``erpops wal push`` for the sandbox, as its servers run it (their own OS user and
    environment: the sandbox's folder is given, not inferred)."""
    import shlex
    import sys

    argv = [sys.executable, "-m", "erpops", "wal", "push", "--env", environments.SANDBOX]
    return f"ERPOPS_SANDBOX_DIR={shlex.quote(str(root))} {shlex.join(argv)} %p"


def _archive(p: Paths, say: Report) -> list[str]:
    """Continuous WAL archiving into the sandbox's store (both servers: the standby archives once
    promoted), and ``backup.method: physical`` for the sandbox environment."""
    import json

    done = []
    wal_folder = p.storage / environments.SANDBOX / "wal"
    wal_folder.mkdir(parents=True, exist_ok=True)
    for folder in (p.storage, p.storage / environments.SANDBOX):
        folder.chmod(folder.stat().st_mode | 0o711)  # the servers' OS user reaches its wal/ folder
    pgserver.run_as_server_user(wal_folder)
    command = archive_command(p.root)
    for name, datadir, _port in p.servers():
        if not pgserver.is_initialized(datadir):
            continue
        settings = {"archive_mode": "on", "archive_command": "'" + command.replace("'", "''") + "'",
                    "archive_timeout": "'60s'"}  # fmt: skip
        pgserver.configure(datadir, settings)
        if pgserver.status(datadir).running:
            pgserver.stop(datadir)  # archive_mode takes a restart
            pgserver.start(datadir)
        done.append(f"WAL archiving on for {name} (archive_command: erpops wal push)")
        say(done[-1])
    (p.root / ARCHIVE_RECORD).write_text(json.dumps({"method": "physical", "archive_command": command}) + "\n")
    return done


def _runtime(p: Paths, say: Report) -> list[str]:
    """The Docker runtime's images, and the record that makes the sandbox environment use it."""
    import json

    from erpops.backends.runtime.docker import sandbox as docker_sandbox

    found = docker_sandbox.ensure_images(say)
    record = p.root / RUNTIME
    if found is None:
        record.unlink(missing_ok=True)
        return []
    text = json.dumps(found, indent=2) + "\n"
    front = " behind Traefik" if found.get("traefik_image") else ""
    done = f"runtime: Docker, web and cron of {found['image']}{front} (erpops deploy --env sandbox --image ...)"
    if record.exists() and record.read_text() == text:
        return []  # as it was: nothing done
    record.write_text(text)
    say(done)
    return [done]


def down(purge: bool = False, *, root: Path | str | None = None) -> list[str]:
    """Stop the servers (standby first); with ``purge``, delete the whole sandbox directory."""
    p = paths(root)
    if not p.root.exists():
        return []
    if purge and not (p.root / MARKER).exists() and any(p.root.iterdir()):
        raise InvalidInput(f"{p.root} does not look like an erpops sandbox (no {MARKER}); not deleting it")
    done: list[str] = []
    if (p.root / RUNTIME).exists():
        from erpops.backends.runtime.docker import sandbox as docker_sandbox

        done += docker_sandbox.remove_containers(environments.SANDBOX)
    with _locked(p):
        order = sorted(p.servers(), key=lambda x: not (x[1] / "standby.signal").exists())
        for name, datadir, _port in order:
            if pgserver.is_initialized(datadir) and pgserver.stop(datadir):
                done.append(f"stopped {name}")
        if purge:
            for child in p.root.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            done.append(f"deleted {p.root}")
    if purge:
        shutil.rmtree(p.root, ignore_errors=True)
    return done


def reseed_standby(*, root: Path | str | None = None, report: Report | None = None) -> SandboxStatus:
    """Make the directory that is not the primary a fresh streaming standby of the one that is (after
    a failover: the old primary becomes the new primary's standby)."""
    say = report or (lambda _msg: None)
    p = paths(root)
    with _locked(p):
        current = _collect(p)
        if current.primary is None:
            candidates = _startable(p)
            prims = [c for c in candidates if not (c[1] / "standby.signal").exists()]
            if not prims:
                raise PermanentError(f"no primary to copy from in {p.root}", hint="run `erpops sandbox up`")
            pgserver.start(prims[0][1])
            current = _collect(p)
        prim = next(s for s in current.servers if s.name == current.primary)
        other = next(s for s in current.servers if s.name != current.primary)
        if prim.role == "primary":
            # promoted by a failover that died before reopening what the old primary's fence closed
            # (replicated to it): reopen that first, or the copy made from it would be closed too
            from erpops.backends.postgres import replication as pg_replication

            lifted = pg_replication.lift_replicated_fence(pgserver.status(Path(prim.datadir)).dsn(), None)
            if lifted:
                say(f"reopened on {prim.name} what a failover's fence had closed: {', '.join(lifted)}")
        t = time.monotonic()
        pgserver.reseed_standby(pgserver.status(prim.datadir), Path(other.datadir), other.port, sync=SYNC)
        action = f"reseeded {other.name} as standby of {prim.name} ({time.monotonic() - t:.1f}s)"
        say(action)
        final = _collect(p)
    final.actions = [action]
    return final


def align_topology(config: Any, state: Any, status: SandboxStatus) -> list[str]:
    """After a reseed, make the failover topology recorded for every environment whose two servers
    are the sandbox's say what the servers are: the record names the primary the reseed copied
    from (none when the configuration already names it primary). Without this, a failover that
    died before recording its topology left a record naming the former primary, which the reseed
    turned into a standby — every later run would then target the standby as the primary."""
    from erpops.records import CURRENT, TOPOLOGY, forget_topology

    by_dir = {str(Path(s.datadir).resolve()): s for s in status.servers}
    primary = next((s for s in status.servers if s.name == status.primary), None)
    if primary is None:
        return []

    def server_dir(dsn: str) -> str | None:
        try:
            host = pg.parse_dsn(dsn).get("host")
        except InvalidInput:
            return None
        return str(Path(host).resolve()) if host and host.startswith("/") else None

    said = []
    for env in config.environments.values():
        if env.database is None or env.standby is None:
            continue
        configured, standby = server_dir(env.database.dsn), server_dir(env.standby.dsn)
        if configured not in by_dir or standby not in by_dir or configured == standby:
            continue
        rec = state.get_record(TOPOLOGY, env.name, CURRENT)
        if configured == str(Path(primary.datadir).resolve()):
            if rec is not None:
                forget_topology(state, env.name)
                said.append(f"{env.name}: the configured database server is the primary again; topology record cleared")
            continue
        wanted = {"primary_dsn": env.standby.dsn, "standby_dsn": env.database.dsn}
        if rec is not None and all(rec.data.get(k) == v for k, v in wanted.items()):
            continue
        state.put_record(
            TOPOLOGY,
            env.name,
            CURRENT,
            {
                **wanted,
                "primary": pg.describe(env.standby.dsn),
                "standby": pg.describe(env.database.dsn),
                "standby_state": "re-created as a standby of the primary by `erpops sandbox reseed-standby`",
                "run_id": None,
                "repointed_at": None,
                "recorded_by": "sandbox reseed-standby",
                "timeline": primary.timeline,
                "verified": True,
            },
        )
        said.append(f"{env.name}: recorded {primary.name} as the primary (the servers say so)")
    return said
