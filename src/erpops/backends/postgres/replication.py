"""PostgreSQL side of a failover: replication status, fencing, promotion, writability.

Every function takes a DSN (secrets already resolved) and opens its own short connection through
:func:`erpops.backends.postgres.client.connect`, so an unreachable server is :class:`TargetUnreachable` (exit 3).
The write probe that measures write availability during a failover is in
:mod:`erpops.backends.postgres.write_probe`.

Fencing a primary that answers (:func:`fence`) records what it will change on the server, then::

    ALTER SYSTEM SET default_transaction_read_only = on;   -- new sessions and transactions read-only
    SELECT pg_reload_conf();                               -- existing sessions pick it up too
    ALTER DATABASE <odoo db> ALLOW_CONNECTIONS false;      -- no new session in the application's data
    ALTER ROLE <owner and named roles> NOLOGIN;            -- the application cannot log in at all
    SELECT pg_terminate_backend(pid, 5000) ...             -- in-flight transactions end (rolled back)

A client cannot undo any of it (``BEGIN READ WRITE`` needs a session it cannot open), and it counts
only once *new* sessions confirm it (:func:`confirm_fenced`). The database and role changes are
catalog changes, replicated to the standby before it is promoted: the promoted standby lifts exactly
those (:func:`lift_replicated_fence`); :func:`unfence` undoes the whole fence on the old primary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from threading import Event
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from erpops.backends.postgres import client as pg
from erpops.errors import ErpopsError, InvalidInput, PermanentError, TargetUnreachable

#: Longest single statement a failover check may take on a server.
STATEMENT_TIMEOUT_MS = 5000


def connect(dsn: str, dbname: str | None = None, timeout: float = 3.0) -> psycopg.Connection[Any]:
    """A short-lived autocommit connection with a statement timeout (TargetUnreachable when down)."""
    conn = pg.connect(dsn, dbname=dbname, connect_timeout=timeout, application_name="erpops-failover")
    try:
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    except psycopg.Error:
        conn.close()
        raise
    return conn


def with_options(dsn: str, **params: Any) -> str:
    """``dsn`` with extra libpq parameters (e.g. ``options="-c statement_timeout=1000"``)."""
    try:
        return make_conninfo(dsn, **params)
    except psycopg.ProgrammingError:
        raise InvalidInput("malformed PostgreSQL DSN") from None


# --- replication status -----------------------------------------------------------------------


@dataclass
class StandbyInfo:
    """One row of ``pg_stat_replication`` on a primary."""

    application_name: str
    client: str | None
    state: str
    sync_state: str
    sent_lsn: str | None
    replay_lsn: str | None
    lag_bytes: int | None
    replay_lag_seconds: float | None


@dataclass
class ServerStatus:
    """What ``postgres.replication_status`` reports about one server."""

    role: str  # primary | standby
    in_recovery: bool
    server_version: str
    system_identifier: str
    timeline: int | None
    read_only: bool  # default_transaction_read_only (a fenced primary says true)
    #: a primary a failover fenced (``erpops.fence`` recorded on it): it takes no application writes
    fenced: bool = False
    # primary
    current_lsn: str | None = None
    standbys: list[StandbyInfo] = field(default_factory=list)
    # standby
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    receiver_status: str | None = None
    replay_paused: str | None = None  # not paused | pause requested | paused
    last_replay_at: str | None = None
    replay_lag_seconds: float | None = None
    lag_bytes: int | None = None  # standby: behind the primary's current WAL position (when known)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timeline_of(conn: psycopg.Connection[Any], in_recovery: bool) -> int | None:
    if in_recovery:
        row = conn.execute("SELECT received_tli FROM pg_stat_wal_receiver").fetchone()
        if row and row[0]:
            return int(row[0])
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        return int(row[0]) if row else None
    row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    return int(str(row[0])[:8], 16) if row else None


def server_status(dsn: str, timeout: float = 3.0) -> ServerStatus:
    """Role, WAL positions and lag of one server (see :class:`ServerStatus`)."""
    with connect(dsn, timeout=timeout) as conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('server_version'), "
            "(SELECT system_identifier::text FROM pg_control_system()), "
            "current_setting('default_transaction_read_only') = 'on'"
        ).fetchone()
        assert row is not None
        in_recovery, version, sysid, read_only = bool(row[0]), str(row[1]).split()[0], str(row[2]), bool(row[3])
        status = ServerStatus(
            role="standby" if in_recovery else "primary",
            in_recovery=in_recovery,
            server_version=version,
            system_identifier=sysid,
            timeline=_timeline_of(conn, in_recovery),
            read_only=read_only,
        )
        if not in_recovery:
            status.fenced = bool(_one(conn, f"SELECT coalesce(current_setting('{FENCE_SETTING}', true), '') <> ''"))
            status.current_lsn = str(_one(conn, "SELECT pg_current_wal_lsn()"))
            rows = conn.execute(
                "SELECT application_name, coalesce(client_addr::text, 'local'), state, sync_state, "
                "sent_lsn::text, replay_lsn::text, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
                "extract(epoch FROM replay_lag)::float8 "
                "FROM pg_stat_replication ORDER BY application_name"
            ).fetchall()
            # replay_lag is NULL once the standby has replayed everything and the primary is idle
            status.standbys = [StandbyInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _lag(r[7], r[6])) for r in rows]
            return status
        row = conn.execute(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
            "pg_get_wal_replay_pause_state(), pg_last_xact_replay_timestamp(), "
            "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, "
            "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0) <= 0, "
            "(SELECT status FROM pg_stat_wal_receiver)"
        ).fetchone()
        assert row is not None
        status.receive_lsn, status.replay_lsn, status.replay_paused = row[0], row[1], row[2]
        status.last_replay_at = row[3].isoformat() if row[3] is not None else None
        status.receiver_status = row[6] or "not running"
        # Everything received is replayed: no replay lag, however old the last transaction is (an
        # idle primary sends no transactions). Otherwise the age of the last replayed transaction.
        caught_up = bool(row[5]) and row[2] == "not paused"
        status.replay_lag_seconds = 0.0 if caught_up else (round(max(row[4], 0.0), 3) if row[4] is not None else None)
    return status


def timeline_switch(dsn: str, timeline: int) -> str | None:
    """The WAL position where ``timeline`` began (the promotion's end of recovery), from the
    timeline history file; None when it cannot be read (timeline 1, or no right to read files)."""
    if timeline <= 1:
        return None
    try:
        with connect(dsn, timeout=3.0) as conn:
            text = str(_one(conn, "SELECT pg_read_file(%s)", (f"pg_wal/{timeline:08X}.history",)))
    except (psycopg.Error, ErpopsError):
        return None
    for line in reversed(text.splitlines()):  # the last line: where this timeline branched off
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            return parts[1]
    return None


def _lag(seconds: float | None, lag_bytes: int | None) -> float | None:
    if seconds is not None:
        return round(seconds, 3)
    return 0.0 if lag_bytes is not None and lag_bytes <= 0 else None


def lsn_diff(dsn: str, newer: str, older: str) -> int:
    """Bytes between two LSNs (computed by the server)."""
    with connect(dsn) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (newer, older)).fetchone()
        return int(row[0]) if row else 0


# --- fencing ----------------------------------------------------------------------------------


#: Where a fenced server keeps what its fence changed (``postgresql.auto.conf``, not replicated),
#: so that :func:`unfence` undoes exactly that, even after erpops died part-way.
FENCE_SETTING = "erpops.fence"
#: The catalog part of the fence again, as a setting of the fenced database (``pg_db_role_setting``,
#: replicated): a standby promoted by a failover that died before reopening it still says what to
#: reopen (:func:`replicated_fence`, :func:`lift_replicated_fence`).
REPLICATED_SETTING = "erpops.replicated_fence"


@dataclass
class FenceResult:
    already_standby: bool
    terminated: int
    lsn: str | None  # WAL position after fencing: a standby that replayed it has every commit
    #: The application database this fence closed to new connections (None: none, or already closed).
    database_closed: str | None = None
    #: Roles this fence took the LOGIN right from (the database's owner and the named roles).
    roles_disabled: list[str] = field(default_factory=list)
    #: Roles named but left able to log in, with why (erpops's own role: its checks need it).
    roles_kept: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What the catalog part of the fence changed — replicated to the standby, so the promoted
        standby must lift exactly this (:func:`lift_replicated_fence`)."""
        return {"database": self.database_closed, "roles": list(self.roles_disabled)}


def _fence_record(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute("SELECT current_setting(%s, true)", (FENCE_SETTING,)).fetchone()
    try:
        data = json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        data = {}
    return {"database": data.get("database"), "roles": list(data.get("roles") or [])}


def fence(
    dsn: str,
    *,
    database: str | None = None,
    roles: Sequence[str] = (),
    terminate: bool = True,
    timeout: float = 3.0,
) -> FenceResult:
    """Make a primary refuse the application's writes, in a way no client can undo over SQL:

    1. what it will change is recorded on the server first (``erpops.fence`` in
       ``postgresql.auto.conf``), so a crash part-way can be undone exactly;
    2. ``default_transaction_read_only = on`` for every session (reloaded);
    3. ``database`` closed to new connections (``ALLOW_CONNECTIONS false``);
    4. the LOGIN right taken from the roles that own ``database`` or are named in ``roles`` —
       except the role erpops is connected as (its checks need it; the closed database keeps it
       out of the application's data anyway);
    5. sessions ended: every session in ``database``, every session of those roles, and every
       other client session but erpops's own (``application_name`` erpops, a state store's lock).

    A server in recovery is already read-only (nothing done). Raises PermanentError when the server
    refuses (e.g. the user may not ALTER SYSTEM / ROLE / DATABASE); what was done is then still
    recorded, and :func:`unfence` undoes it."""
    with connect(dsn, timeout=timeout) as conn:
        if pg.in_recovery(conn):
            return FenceResult(True, 0, None)
        me = str(_one(conn, "SELECT current_user"))
        earlier = _fence_record(conn)  # a fence run again (resumed): keep undoing what the first did
        owner, allowed = None, False
        if database:
            row = conn.execute(
                "SELECT pg_get_userbyid(datdba), datallowconn FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if row is None:
                raise PermanentError(f"{pg.describe(dsn)} has no database {database!r} to fence")
            owner, allowed = str(row[0]), bool(row[1])
        named = sorted({*roles, *([owner] if owner else [])})
        rows = conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", (named,)).fetchall()
        can_login = {str(r[0]): bool(r[1]) for r in rows}
        kept = {r: "erpops connects as this role" for r in named if r == me}
        kept |= {r: "no such role" for r in named if r not in can_login}
        disable = [r for r in named if r not in kept and can_login[r]]
        result = FenceResult(False, 0, None, database if allowed else None, disable, kept)
        record = {
            "database": result.database_closed or earlier["database"],
            "roles": sorted({*disable, *earlier["roles"]}),
        }
        try:
            conn.execute("SET default_transaction_read_only = off")  # erpops's own session keeps working
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(FENCE_SETTING), sql.Literal(json.dumps(record))
                )
            )
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            if database:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(database), sql.Identifier(REPLICATED_SETTING),
                        sql.Literal(json.dumps(record)),
                    )
                )  # fmt: skip
            if result.database_closed:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(result.database_closed))
                )
            for role in disable:
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            raise PermanentError(f"cannot fence {pg.describe(dsn)}: {_first_line(exc)}") from None
        if terminate:
            try:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                    "AND (datname = %s OR usename = ANY(%s) "
                    "OR application_name IS DISTINCT FROM 'erpops')",  # a state store's lock session
                    (database, disable),
                ).fetchall()
            except psycopg.Error as exc:
                raise PermanentError(
                    f"fenced {pg.describe(dsn)} but cannot terminate its sessions: {_first_line(exc)}"
                ) from None
            result.terminated = sum(1 for r in rows if r[0])
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        result.lsn = str(row[0]) if row else None
        return result


def confirm_fenced(dsn: str, database: str | None, roles: Sequence[str] = (), timeout: float = 3.0) -> tuple[bool, str]:
    """From NEW sessions, check the fence holds: read-only by default, ``database`` closed to new
    connections with no session left in it, ``roles`` unable to log in. Returns (held, detail)."""
    if not database:
        return confirm_read_only(dsn, None, timeout)
    maintenance = "postgres" if _dsn_dbname(dsn) == database else None
    with connect(dsn, dbname=maintenance, timeout=timeout) as conn:
        if str(_one(conn, "SHOW default_transaction_read_only")) != "on":
            return False, "a new session is read-write (the read-only default did not take)"
        if _one(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (database,)):
            return False, f"database {database!r} still accepts new connections"
        left = int(_one(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)) or 0)
        if left:
            return False, f"{left} session(s) still in database {database!r}"
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND rolcanlogin", (list(roles),)
        ).fetchall()
        if rows:
            return False, f"role(s) {', '.join(str(r[0]) for r in rows)} can still log in"
    try:
        connect(dsn, dbname=database, timeout=timeout).close()
    except TargetUnreachable as exc:
        if "not currently accepting connections" in exc.message:
            closed = "new sessions refused" + (f"; roles {', '.join(roles)} cannot log in" if roles else "")
            return True, f"read-only default; database {database!r} closed ({closed})"
        return False, f"could not check database {database!r}: {exc.message}"
    return False, f"a new session could still connect to database {database!r}"


def confirm_read_only(dsn: str, dbname: str | None, timeout: float = 3.0) -> tuple[bool, str]:
    """Open a NEW session (as the DSN's user, in ``dbname``) and check it can write nothing:
    ``transaction_read_only`` is on and creating a table fails. Returns (read-only, detail)."""
    with connect(dsn, dbname=dbname, timeout=timeout) as conn:
        row = conn.execute("SHOW transaction_read_only").fetchone()
        if not row or row[0] != "on":
            return False, "a new session is read-write (a role or database setting may override the default)"
        try:
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE erpops_fence_check (x int) ON COMMIT DROP")
                raise _Rollback()
        except (pgerrors.ReadOnlySqlTransaction, pgerrors.FeatureNotSupported) as exc:
            return True, _first_line(exc)
        except _Rollback:
            return False, "a new session could create a table"
        except psycopg.Error as exc:
            return False, f"write check failed unexpectedly: {_first_line(exc)}"


def _replicated_record(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The fence record kept as a database setting (:data:`REPLICATED_SETTING`), if any."""
    rows = conn.execute(
        "SELECT d.datname, s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE s.setrole = 0"
    ).fetchall()
    prefix = REPLICATED_SETTING + "="
    for _name, config in rows:
        for item in config or []:
            if str(item).startswith(prefix):
                try:
                    data = json.loads(str(item)[len(prefix) :])
                except ValueError:
                    continue
                return {"database": data.get("database"), "roles": list(data.get("roles") or [])}
    return None


def replicated_fence(dsn: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """What a fence closed on this server's catalog and nobody reopened yet (None: nothing). On a
    primary that is not fenced itself, that is a promoted standby whose failover died before
    reopening the application's database and roles."""
    with connect(dsn, timeout=timeout) as conn:
        return _replicated_record(conn)


def _catalog_lift(conn: psycopg.Connection[Any], record: Mapping[str, Any]) -> list[str]:
    done = []
    for role in record.get("roles") or []:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
            done.append(f"role {role} may log in")
    database = record.get("database")
    if database and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(database)))
        done.append(f"database {database} accepts connections")
    for row in conn.execute(
        "SELECT d.datname FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE s.setrole = 0 AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE %s)",
        (REPLICATED_SETTING + "=%",),
    ).fetchall():
        conn.execute(
            sql.SQL("ALTER DATABASE {} RESET {}").format(sql.Identifier(row[0]), sql.Identifier(REPLICATED_SETTING))
        )
    return done


def unfence(dsn: str, record: Mapping[str, Any] | None = None, timeout: float = 3.0) -> list[str]:
    """Undo :func:`fence` exactly: what its record on the server (or ``record``) says it closed is
    opened again, the read-only default and the record are reset. Returns what was undone."""
    with connect(dsn, timeout=timeout) as conn:
        known = _fence_record(conn)
        if record:
            known = {
                "database": known["database"] or record.get("database"),
                "roles": sorted({*known["roles"], *(record.get("roles") or [])}),
            }
        try:
            conn.execute("SET default_transaction_read_only = off")  # the fenced server's default
            done = _catalog_lift(conn, known)
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(FENCE_SETTING)))
            conn.execute("SELECT pg_reload_conf()")
        except psycopg.Error as exc:
            raise PermanentError(f"cannot unfence {pg.describe(dsn)}: {_first_line(exc)}") from None
        return [*done, "read-only default reset"]


def lift_replicated_fence(dsn: str, record: Mapping[str, Any] | None, timeout: float = 3.0) -> list[str]:
    """On the promoted standby: the catalog part of the old primary's fence (database closed, roles
    without LOGIN) was replicated to it before it was promoted; open exactly that again (``record``,
    the fence step's output, and what the replicated setting says). The read-only default
    (``ALTER SYSTEM``, not replicated) never reached it."""
    with connect(dsn, timeout=timeout) as conn:
        kept = _replicated_record(conn) or {}
        known = {
            "database": (record or {}).get("database") or kept.get("database"),
            "roles": sorted({*((record or {}).get("roles") or []), *(kept.get("roles") or [])}),
        }
        if not (known["database"] or known["roles"]):
            return []
        if pg.in_recovery(conn):
            raise PermanentError(f"{pg.describe(dsn)} is still in recovery: lift the fence after promoting it")
        try:
            conn.execute("SET default_transaction_read_only = off")
            return _catalog_lift(conn, known)
        except psycopg.Error as exc:
            raise PermanentError(f"cannot reopen {pg.describe(dsn)} after promotion: {_first_line(exc)}") from None


def _one(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _dsn_dbname(dsn: str) -> str | None:
    try:
        return pg.parse_dsn(dsn).get("dbname")
    except InvalidInput:
        return None


class _Rollback(Exception):
    pass


# --- promotion --------------------------------------------------------------------------------


@dataclass
class CatchUp:
    caught_up: bool
    replay_lsn: str | None
    behind_bytes: int | None
    seconds: float
    resumed_replay: bool


def wait_replayed(dsn: str, target_lsn: str, timeout: float, cancel: Event | None = None) -> CatchUp:
    """Wait until the standby has replayed ``target_lsn`` (resuming a paused replay first)."""
    start = time.monotonic()
    resumed = False
    with connect(dsn) as conn:
        row = conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
        if row and row[0] != "not paused":
            conn.execute("SELECT pg_wal_replay_resume()")
            resumed = True
        while True:
            row = conn.execute(
                "SELECT pg_last_wal_replay_lsn()::text, pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint",
                (target_lsn,),
            ).fetchone()
            assert row is not None
            behind = int(row[1]) if row[1] is not None else None
            if behind is not None and behind <= 0:
                return CatchUp(True, row[0], 0, time.monotonic() - start, resumed)
            if time.monotonic() - start >= timeout or (cancel is not None and cancel.is_set()):
                return CatchUp(False, row[0], behind, time.monotonic() - start, resumed)
            time.sleep(0.02)


@dataclass
class Promotion:
    timeline: int | None
    lsn: str | None
    seconds: float


def promote(dsn: str, wait_seconds: int = 60) -> Promotion:
    """``pg_promote(wait => true)``; PermanentError if the standby did not finish in time (it may
    still finish: look at the server before doing anything else)."""
    with connect(dsn) as conn:
        conn.execute(f"SET statement_timeout = {(wait_seconds + 5) * 1000}")
        start = time.monotonic()
        try:
            row = conn.execute("SELECT pg_promote(true, %s)", (wait_seconds,)).fetchone()
        except psycopg.Error as exc:
            raise PermanentError(f"pg_promote failed on {pg.describe(dsn)}: {_first_line(exc)}") from None
        seconds = time.monotonic() - start
        if not row or not row[0]:
            raise PermanentError(
                f"{pg.describe(dsn)} did not finish promoting within {wait_seconds}s; it may still finish: "
                "check pg_is_in_recovery() there before anything else"
            )
        lsn = str(_one(conn, "SELECT pg_current_wal_lsn()::text"))
        return Promotion(_timeline_of(conn, False), lsn, seconds)


# --- writability ------------------------------------------------------------------------------


def write_check(dsn: str, dbname: str | None, timeout: float = 2.0) -> str | None:
    """None when a new session in ``dbname`` can write (creates and rolls back a temporary table),
    else why not. An unreachable server is a reason, not an exception."""
    try:
        with connect(dsn, dbname=dbname, timeout=timeout) as conn:
            if pg.in_recovery(conn):
                return "it is in recovery (a standby)"
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE erpops_write_check (x int) ON COMMIT DROP")
                conn.execute("INSERT INTO erpops_write_check VALUES (1)")
                raise _Rollback()
    except _Rollback:
        return None
    except TargetUnreachable as exc:
        return str(exc)
    except psycopg.Error as exc:
        return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
