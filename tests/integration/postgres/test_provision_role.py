"""The Odoo role and database as ``erpops provision`` converges them (issue 12, item 4): created
with login, no superuser / createrole / createdb, the connection limit scale-for-peak's headroom
allows and the password as a SCRAM verifier (never the clear text); a dry run reports exactly
what a run does; a second run changes nothing; drift is put back."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest

from erpops.backends.postgres import provision
from erpops.errors import ActionError
from tests.fixtures.postgres import PgServer

CANARY = "canary-role-pw-77e1"


def _role(dsn: str, name: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolconnlimit, rolpassword"
            " FROM pg_authid WHERE rolname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_our_scram_verifier_is_postgresqls(pg_primary: PgServer) -> None:
    name = f"scram_{secrets.token_hex(3)}"
    with psycopg.connect(pg_primary.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} PASSWORD 'hunter2-but-longer'")  # the server computes it
        (stored,) = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()  # type: ignore[misc]
        conn.execute(f"DROP ROLE {name}")
    assert stored.startswith("SCRAM-SHA-256$")
    assert provision.scram_matches(stored, "hunter2-but-longer")
    assert not provision.scram_matches(stored, "hunter3-but-longer")


def test_the_role_and_database_are_created_idempotent_and_put_back(pg_primary: PgServer) -> None:
    dsn = pg_primary.dsn()
    role, database = f"odoo_{secrets.token_hex(3)}", f"erp_{secrets.token_hex(3)}"

    def converge(apply: bool, password: str = CANARY) -> dict[str, Any]:
        done = provision.converge(dsn, role=role, password=password, database=database, apply=apply)
        return {c.kind: c for c in done}

    planned = converge(False)
    assert planned["database role"].action == "create" and planned["database"].action == "create"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None  # dry run

    done = converge(True)
    assert done["database role"].action == "create" and CANARY not in done["database role"].detail
    superuser, createrole, createdb, login, limit, stored = _role(dsn, role)
    with psycopg.connect(dsn) as conn:
        budget = provision.connection_budget(conn, 10)
        (owner,) = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()  # type: ignore[misc]
    assert (superuser, createrole, createdb, login, limit) == (False, False, False, True, budget)
    assert provision.scram_matches(stored, CANARY) and owner == role
    assert budget == 100 - 3 - 10  # max_connections - superuser_reserved_connections - reserve (the peak headroom)

    again = converge(True)
    assert not any(c.changed for c in again.values()), [c.line() for c in again.values()]

    with psycopg.connect(dsn, autocommit=True) as conn:  # drift: a hand edit
        conn.execute(f"ALTER ROLE {role} CREATEDB CONNECTION LIMIT 5 PASSWORD 'changed-by-hand'")
        conn.execute(f"ALTER DATABASE {database} OWNER TO postgres")
    drift = converge(False)
    said = drift["database role"].detail
    assert drift["database role"].action == "update" and "createdb on -> off" in said
    assert f"connection limit 5 -> {budget}" in said and "password differs" in said
    assert drift["database"].action == "update" and f"owner postgres -> {role}" in drift["database"].detail
    converge(True)
    superuser, createrole, createdb, login, limit, stored = _role(dsn, role)
    assert (createdb, limit) == (False, budget) and provision.scram_matches(stored, CANARY)
    assert not any(c.changed for c in converge(False).values())

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {database}")
        conn.execute(f"DROP ROLE {role}")


def test_the_role_erpops_connects_as_is_refused(pg_primary: PgServer) -> None:
    with pytest.raises(ActionError, match="is the role erpops connects as"):
        provision.converge(pg_primary.dsn(), role="postgres", password=None, database="x", apply=False)
