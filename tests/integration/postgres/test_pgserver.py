"""Local servers: a streaming standby follows its primary; after a promotion the old primary's
directory is reseeded as a standby of the new primary."""

from __future__ import annotations

import time

import psycopg
import pytest

from erpops.backends.postgres import client as pg
from erpops.backends.postgres import local_server as pgserver
from erpops.errors import InvalidInput
from tests.fixtures.postgres import PgPair, PgServer

pytestmark = pytest.mark.postgres


def _wait_for(dsn: str, sql: str, expected: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with pg.connect(dsn) as conn:
            try:
                row = conn.execute(sql).fetchone()
            except psycopg.errors.UndefinedTable:  # not replayed yet
                row = None
            last = row[0] if row else None
        if last == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{sql!r} gave {last!r}, expected {expected!r}")


def test_status_of_running_primary(pg_primary: PgServer) -> None:
    info = pgserver.status(pg_primary.datadir)
    assert info.running and not info.standby
    assert info.socket_path.is_socket()
    assert info.port == pg_primary.info.port


def test_standby_streams_writes_and_refuses_its_own(pg_pair: PgPair) -> None:
    primary, standby = pg_pair.primary.dsn(), pg_pair.standby.dsn()
    with pg.connect(standby) as conn:
        assert pg.in_recovery(conn)
        assert conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone() == ("streaming",)
    with pg.connect(primary) as conn:
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO probe VALUES (1, 'written on the primary')")
        replicas = conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
    assert replicas == [("standby", "streaming")]
    _wait_for(standby, "SELECT note FROM probe WHERE id = 1", "written on the primary")
    with pg.connect(standby) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO probe VALUES (2, 'on the standby')")


def test_reseed_after_promotion(pg_pair: PgPair) -> None:
    with pg.connect(pg_pair.primary.dsn()) as conn:
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY)")
        conn.execute("INSERT INTO probe VALUES (1)")
    _wait_for(pg_pair.standby.dsn(), "SELECT count(*) FROM probe", 1)

    # Fail over: promote the standby, stop the old primary.
    with pg.connect(pg_pair.standby.dsn()) as conn:
        assert conn.execute("SELECT pg_promote(true, 30)").fetchone() == (True,)
        conn.execute("INSERT INTO probe VALUES (2)")
    assert pgserver.stop(pg_pair.primary.datadir)
    new_primary = pgserver.status(pg_pair.standby.datadir)
    assert not new_primary.standby

    with pytest.raises(InvalidInput):
        pgserver.reseed_standby(new_primary, pg_pair.standby.datadir)

    old = pgserver.reseed_standby(new_primary, pg_pair.primary.datadir)
    assert old.running and old.standby and old.port == pg_pair.primary.info.port
    with pg.connect(old.dsn()) as conn:
        assert pg.in_recovery(conn)
        assert conn.execute("SELECT count(*) FROM probe").fetchone() == (2,)
    with pg.connect(new_primary.dsn()) as conn:
        conn.execute("INSERT INTO probe VALUES (3)")
    _wait_for(old.dsn(), "SELECT max(id) FROM probe", 3)


def test_refuses_to_copy_into_a_used_directory(pg_primary: PgServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    target = tmp_path_factory.mktemp("used")
    (target / "something").write_text("keep me")
    with pytest.raises(InvalidInput, match="not empty"):
        pgserver.create_standby(pg_primary.info, target, 5999)
    assert (target / "something").read_text() == "keep me"
