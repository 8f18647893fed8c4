"""The failover's fence holds against clients that ask for writes (issue: a fence no client can
undo). Before, the fence was only ``default_transaction_read_only``: ``BEGIN READ WRITE`` or
``SET default_transaction_read_only = off`` wrote to the fenced old primary (split brain)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from erpops.backends.postgres import client as pg
from erpops.backends.postgres import replication as pg_replication
from tests.fixtures.sql import scalar

from .conftest import DB, Pair

pytestmark = pytest.mark.postgres

APP_ROLE = "odoo_app"


def _app_role(pair: Pair, primary: Path) -> None:
    """The application's own role (trust auth on the test servers' sockets), replicated to the standby."""
    with pg.connect(pair.dsn(primary)) as conn:
        if not scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (APP_ROLE,)):
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
    with pg.connect(pair.dsn(primary, DB)) as conn:
        conn.execute(f"GRANT ALL ON res_partner TO {APP_ROLE}")
        conn.execute(f"GRANT USAGE ON SEQUENCE res_partner_id_seq TO {APP_ROLE}")


def _as(pair: Pair, datadir: Path, role: str, db: str = DB) -> psycopg.Connection:
    return psycopg.connect(pair.dsn(datadir, db), user=role, autocommit=True, connect_timeout=3)


def _write_error(pair: Pair, datadir: Path, role: str, statements: list[str]) -> str | None:
    try:
        with _as(pair, datadir, role) as conn:
            for statement in statements:
                conn.execute(statement)
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def test_clients_that_ask_for_writes_cannot_write_to_the_fenced_old_primary(healthy: tuple[Pair, Path, Path]) -> None:
    pair, old_primary, old_standby = healthy
    _app_role(pair, old_primary)
    pair.write_config({"drill": pair.env_config(old_primary, old_standby, database={"app_roles": [APP_ROLE]})})
    pair.reset_state()
    res = pair.cli("failover", "--env", "drill", "--yes", "--json")
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    begin_read_write = ["BEGIN READ WRITE", "INSERT INTO res_partner (name) VALUES ('split-brain-1')", "COMMIT"]
    read_only_off = [
        "SET default_transaction_read_only = off",
        "INSERT INTO res_partner (name) VALUES ('split-brain-2')",
    ]
    for role in (APP_ROLE, "postgres"):  # the application, and a script with the admin's DSN
        for statements in (begin_read_write, read_only_off):
            error = _write_error(pair, old_primary, role, statements)
            assert error is not None, f"{role} wrote to the fenced old primary with {statements[0]}"
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        _as(pair, old_primary, APP_ROLE, "postgres").close()

    fence = res.step("fence")["outputs"]
    assert fence["method"] == "sql" and fence["sql_fence"] == {"database": DB, "roles": [APP_ROLE]}
    assert fence["roles_kept"] == {"postgres": "erpops connects as this role"}
    report = res.step("report", "finally")["outputs"]["report"]
    assert report["fence_held"].startswith("SQL") and report["fence_sql"]["roles"] == [APP_ROLE]
    # the report names the Odoo database on both servers (regression: it named "postgres")
    assert report["old_primary"].startswith(f'database "{DB}" on socket {old_primary}')
    assert report["new_primary"].startswith(f'database "{DB}" on socket {old_standby}')

    # the sandbox status sees a fenced former primary, not a split brain (regression)
    status = pair.cli("sandbox", "status", "--json")
    assert status.code == 0, status.stdout + status.stderr
    assert "split brain" not in status.stdout and "a former primary that a failover fenced" in status.stdout

    # the new primary: the replicated part of the fence was lifted, the application works there
    assert res.step("promote")["outputs"]["fence_lifted"] == [
        f"role {APP_ROLE} may log in",
        f"database {DB} accepts connections",
    ]
    assert _write_error(pair, old_standby, APP_ROLE, ["INSERT INTO res_partner (name) VALUES ('new-primary')"]) is None

    # no write reached the old primary (opened again here only to look: it is a former primary now)
    pg_replication.unfence(pair.dsn(old_primary))
    with pg.connect(pair.dsn(old_primary, DB)) as conn:
        assert scalar(conn, "SELECT count(*) FROM res_partner WHERE name LIKE 'split-brain-%'") == 0


def test_a_failed_promote_is_undone_and_the_old_primary_serves_as_before(healthy: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = healthy
    _app_role(pair, primary)
    pair.write_config({"drill": pair.env_config(primary, standby, database={"app_roles": [APP_ROLE]})})
    runbook = pair.work / "fence-then-promote.yaml"
    runbook.write_text(
        """\
apiVersion: erpops/v1
kind: Runbook
metadata: {name: t, version: 1.0.0}
steps:
  - id: fence
    action: postgres.fence
    undo:
      action: postgres.unfence
      with: {method: "{{ steps.fence.outputs.method }}", sql_fence: "{{ steps.fence.outputs.sql_fence }}"}
  - id: promote
    action: postgres.promote
    with: {server: standby, wait_for_lsn: "FF/0", catchup_timeout: 500ms}
"""
    )
    pair.reset_state()
    res = pair.cli("run", str(runbook), "--env", "drill", "--json", "--yes")
    assert res.code == 6, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.step("fence", "main")["outputs"]["sql_fence"] == {"database": DB, "roles": [APP_ROLE]}
    assert res.step("promote")["status"] == "failed" and "behind" in (res.step("promote")["error"] or "")
    undone = res.step("fence", "undo")["outputs"]["undone"]
    assert undone == [f"role {APP_ROLE} may log in", f"database {DB} accepts connections", "read-only default reset"]

    # the old primary serves as before: the application logs in and writes; nothing of the fence is left
    assert _write_error(pair, primary, APP_ROLE, ["INSERT INTO res_partner (name) VALUES ('after-undo')"]) is None
    with pg.connect(pair.dsn(primary)) as conn:
        assert scalar(conn, "SELECT current_setting('erpops.fence', true)") in (None, "")
        assert scalar(conn, "SHOW default_transaction_read_only") == "off"
        assert scalar(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (APP_ROLE,)) is True
    # and the standby, still a standby, replayed the reopening too
    assert pair.in_recovery(standby)
    deadline = time.monotonic() + 10
    with pg.connect(pair.dsn(standby)) as conn:
        while True:
            login = scalar(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (APP_ROLE,))
            allowed = scalar(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (DB,))
            if (login, allowed) == (True, True) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert (login, allowed) == (True, True)
