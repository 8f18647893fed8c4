"""The Odoo role and database as ``erpops provision`` converges them.

- The role (``odoo.db_user``) logs in, is no superuser and cannot create roles, databases or
  replicate; its ``CONNECTION LIMIT`` is the connection budget scale-for-peak checks its headroom
  against (``max_connections`` minus the superuser-reserved, the reserved connections and
  ``reserve``); its password (``odoo.db_password``) is sent as a SCRAM-SHA-256 verifier computed
  here, so the clear text never reaches the server (nor its statement log).
- The database (``database.name``) exists and is owned by that role (``ALTER DATABASE ... OWNER``
  changes the database's owner only; its tables keep theirs).

Every function takes ``apply``: False only reads and reports. A password can be compared only
when erpops's role may read ``pg_authid`` (a superuser); otherwise it is set when the role is
created and reported as "not checked" afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import psycopg
from psycopg import sql

from erpops.backends.postgres import client as pg
from erpops.errors import ActionError
from erpops.provisioning import ObjectChange

ITERATIONS = 4096


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5803 / 7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def scram_matches(verifier: str, password: str) -> bool:
    """Whether ``verifier`` (as in ``pg_authid.rolpassword``) was made from ``password``."""
    try:
        method, rest = verifier.split("$", 1)
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        again = scram_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(again.split("$", 2)[2], keys)


def connection_budget(conn: psycopg.Connection[Any], reserve: int) -> int:
    row = conn.execute(
        "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
        " - coalesce(current_setting('reserved_connections', true), '0')::int"
    ).fetchone()
    assert row is not None
    return max(1, int(row[0]) - reserve)


def converge(
    dsn: str, *, role: str, password: str | None, database: str, reserve: int = 10, apply: bool
) -> list[ObjectChange]:
    """The role and database, created or put back as described above; what was (or would be) done."""
    with pg.connect(dsn) as conn:
        pg.refuse_unless_primary(conn, dsn, "provision the Odoo role and database")
        me = conn.execute("SELECT current_user").fetchone()
        if me is not None and me[0] == role:
            raise ActionError(
                f"odoo.db_user {role!r} is the role erpops connects as (database.dsn): give Odoo a role of its own"
            )
        limit = connection_budget(conn, reserve)
        return [_role(conn, role, password, limit, apply), _database(conn, database, role, apply)]


def _role(conn: psycopg.Connection[Any], role: str, password: str | None, limit: int, apply: bool) -> ObjectChange:
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit"
        " FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    ident = sql.Identifier(role)
    options = sql.SQL("LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {}").format(
        sql.Literal(limit)
    )
    if row is None:
        if apply:
            stmt = sql.SQL("CREATE ROLE {} ").format(ident) + options
            if password:
                stmt += sql.SQL(" PASSWORD {}").format(sql.Literal(scram_verifier(password)))
            conn.execute(stmt)
        what = f"login, no superuser/createrole/createdb, connection limit {limit}"
        return ObjectChange("database role", role, "create", what + ("" if password else ", no password"))
    superuser, createrole, createdb, login, replication, bypassrls, connlimit = row
    differs = []
    for flag, value, want in (
        ("superuser", superuser, False),
        ("createrole", createrole, False),
        ("createdb", createdb, False),
        ("login", login, True),
        ("replication", replication, False),
        ("bypassrls", bypassrls, False),
    ):
        if value != want:
            differs.append(f"{flag} {'on' if value else 'off'} -> {'on' if want else 'off'}")
    if connlimit != limit:
        differs.append(f"connection limit {connlimit} -> {limit}")
    stale_password = False
    checked = True
    if password:
        try:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            checked = False
        else:
            stale_password = not (stored and stored[0] and scram_matches(str(stored[0]), password))
            if stale_password:
                differs.append("password differs from odoo.db_password")
    if differs and apply:
        stmt = sql.SQL("ALTER ROLE {} ").format(ident) + options
        if stale_password and password:
            stmt += sql.SQL(" PASSWORD {}").format(sql.Literal(scram_verifier(password)))
        conn.execute(stmt)
    note = "" if checked else " (password not checked: erpops's role cannot read pg_authid)"
    if differs:
        return ObjectChange("database role", role, "update", "; ".join(differs) + note)
    return ObjectChange("database role", role, "no change", f"connection limit {limit}{note}")


def _database(conn: psycopg.Connection[Any], database: str, role: str, apply: bool) -> ObjectChange:
    row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)).fetchone()
    if row is None:
        if apply:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)))
        return ObjectChange("database", database, "create", f"owner {role}")
    if row[0] != role:
        if apply:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(role))
            )
        return ObjectChange("database", database, "update", f"owner {row[0]} -> {role} (its tables keep their owners)")
    return ObjectChange("database", database, "no change", f"owner {role}")
