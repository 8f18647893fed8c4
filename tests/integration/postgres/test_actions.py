"""postgres.* actions against a real server, called through a small fake context."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from erpops.backends.odoo import seed
from erpops.backends.postgres import client as pg
from erpops.errors import InvalidInput, PermanentError, TargetUnreachable
from tests.fixtures.postgres import PgServer, SeededDb
from tests.integration.postgres.conftest import FakeCtx, run_action

pytestmark = pytest.mark.postgres
MakeCtx = Callable[..., FakeCtx]


def _comment(server_dsn: str, dbname: str) -> str | None:
    with pg.connect(server_dsn) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
    return row[0] if row else None


def _exists(server_dsn: str, dbname: str) -> bool:
    with pg.connect(server_dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def test_ping(make_ctx: MakeCtx, seeded_db: SeededDb) -> None:
    out = run_action("postgres.ping", make_ctx())
    assert out["database"] == "odoo_seed" and out["in_recovery"] is False
    assert out["server_version_num"] >= 180000 and out["server_version"].startswith("18")


def test_ping_unreachable_is_exit_3_fast(make_ctx: MakeCtx, tmp_path: Path) -> None:
    ctx = make_ctx(dsn=f"postgresql://postgres@/postgres?host={tmp_path}&port=5999")
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match=str(tmp_path)):
        run_action("postgres.ping", ctx, connect_timeout="2s")
    assert time.monotonic() - started < 3


def test_ping_secret_reference_resolved_and_password_hidden(
    make_ctx: MakeCtx, pg_primary: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "ERPOPS_TEST_DSN", f"postgresql://postgres:Tr0ub4dor-x@/postgres?host={pg_primary.datadir}&port=1"
    )
    with pytest.raises(TargetUnreachable) as err:
        run_action("postgres.ping", make_ctx(dsn="env:ERPOPS_TEST_DSN"))
    assert "Tr0ub4dor-x" not in str(err.value)


def test_query_rows_value_and_cap(make_ctx: MakeCtx, seeded_db: SeededDb) -> None:
    ctx = make_ctx()
    out = run_action(
        "postgres.query",
        ctx,
        sql="SELECT name, amount_total, date_order FROM sale_order WHERE state = %(state)s ORDER BY id",
        args={"state": "sale"},
        max_rows=5,
    )
    assert out["columns"] == ["name", "amount_total", "date_order"]
    assert len(out["rows"]) == 5 and out["truncated"] is True and out["row_count"] > 5
    first = out["rows"][0]
    assert first["name"] == "S00001" and isinstance(first["amount_total"], int | float)
    assert isinstance(first["date_order"], str) and "T" in first["date_order"]
    count = run_action("postgres.query", ctx, sql="SELECT count(*) FROM account_move")
    assert count["value"] == seeded_db.result.counts["account_move"] and count["truncated"] is False


def test_query_is_read_only(make_ctx: MakeCtx, seeded_db: SeededDb) -> None:
    with pytest.raises(PermanentError, match="read-only"):
        run_action("postgres.query", make_ctx(), sql="UPDATE sale_order SET note = 'x'")
    with pytest.raises(PermanentError, match="failed"):
        run_action("postgres.query", make_ctx(), sql="SELECT * FROM no_such_table")


def test_create_marks_and_drop_removes(make_ctx: MakeCtx, pg_primary: PgServer) -> None:
    ctx = make_ctx(run_id="run-create-1")
    out = run_action("postgres.create_database", ctx, database="erpops_scratch_1")
    assert out["created"] is True
    mark = _comment(pg_primary.dsn(), "erpops_scratch_1")
    assert mark is not None and mark.startswith("erpops:created run=run-create-1 at=")

    # Same run again (a resume): kept, not an error. Another run: refused.
    assert run_action("postgres.create_database", ctx, database="erpops_scratch_1")["created"] is False
    with pytest.raises(PermanentError, match="already exists"):
        run_action("postgres.create_database", make_ctx(run_id="run-other"), database="erpops_scratch_1")

    # A session still connected is ended before the drop.
    holder = psycopg.connect(pg_primary.dsn("erpops_scratch_1"), autocommit=True)
    try:
        dropped = run_action("postgres.drop_database", ctx, database="erpops_scratch_1")
    finally:
        holder.close()
    assert dropped == {"database": "erpops_scratch_1", "dropped": True, "terminated": 1}
    assert not _exists(pg_primary.dsn(), "erpops_scratch_1")
    again = run_action("postgres.drop_database", ctx, database="erpops_scratch_1")
    assert again["dropped"] is False
    with pytest.raises(PermanentError, match="does not exist"):
        run_action("postgres.drop_database", ctx, database="erpops_scratch_1", missing_ok=False)


def test_drop_refuses_unmarked_and_live_databases(make_ctx: MakeCtx, pg_primary: PgServer, seeded_db: SeededDb) -> None:
    with pg.connect(pg_primary.dsn()) as conn:
        conn.execute("DROP DATABASE IF EXISTS hand_made")
        conn.execute("CREATE DATABASE hand_made")
    try:
        with pytest.raises(PermanentError, match="erpops did not create it"):
            run_action("postgres.drop_database", make_ctx(), database="hand_made")
        assert _exists(pg_primary.dsn(), "hand_made")
        # The environment's own database is refused even if someone put the mark on it.
        with pg.connect(pg_primary.dsn()) as conn:
            conn.execute("COMMENT ON DATABASE hand_made IS 'erpops:created run=x at=y'")
        with pytest.raises(PermanentError, match="environment's own database"):
            run_action("postgres.drop_database", make_ctx(database="hand_made"), database="hand_made")
        assert _exists(pg_primary.dsn(), "hand_made")
        # The seeded (live) sandbox database carries a seed mark, not the erpops:created one.
        with pytest.raises(PermanentError, match="did not create it"):
            run_action("postgres.drop_database", make_ctx(database="odoo"), database=seeded_db.dbname)
    finally:
        with pg.connect(pg_primary.dsn()) as conn:
            conn.execute("DROP DATABASE IF EXISTS hand_made")


def test_drop_takes_only_what_this_run_created(make_ctx: MakeCtx, pg_primary: PgServer, tmp_path: Path) -> None:
    """Regression: the drop matched the mark by prefix, so a database another run kept and one whose
    comment merely starts like the mark were dropped."""
    from erpops.backends.odoo import restore as R

    comments = {
        "erpops_kept_by_other": "erpops:created run=run-kept-1 at=2026-12-01T00:00:00Z drill kept for inspection",
        "erpops_lookalike": "erpops:created-by-hand, keep",
        "erpops_lookalike_2": "erpops:created run=run-mine at=x\n",
    }
    with pg.connect(pg_primary.dsn()) as conn:
        for name, comment in comments.items():
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
            conn.execute(
                psycopg.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Literal(comment)
                )
            )
    try:
        mine = make_ctx(run_id="run-mine")
        with pytest.raises(PermanentError, match="run run-kept-1 created it, not this run"):
            run_action("postgres.drop_database", mine, database="erpops_kept_by_other")
        with pytest.raises(PermanentError, match="run run-kept-1 created it"):
            R.drop_database(pg_primary.dsn(), "erpops_kept_by_other", run_id="run-mine")
        for name in ("erpops_lookalike", "erpops_lookalike_2"):
            with pytest.raises(PermanentError, match="erpops did not create it"):
                run_action("postgres.drop_database", mine, database=name)
            with pytest.raises(PermanentError, match="erpops did not create it"):
                R.drop_database(pg_primary.dsn(), name, run_id="run-mine")
        assert all(_exists(pg_primary.dsn(), name) for name in comments)
        # the run that created it drops it
        run_action("postgres.drop_database", make_ctx(run_id="run-kept-1"), database="erpops_kept_by_other")
        assert not _exists(pg_primary.dsn(), "erpops_kept_by_other")
    finally:
        with pg.connect(pg_primary.dsn()) as conn:
            for name in comments:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.parametrize("fmt", ["custom", "directory", "plain"])
def test_dump_restore_round_trip(
    fmt: str, make_ctx: MakeCtx, pg_primary: PgServer, seeded_db: SeededDb, tmp_path: Path
) -> None:
    ctx = make_ctx(run_id=f"run-rt-{fmt}")
    path = tmp_path / f"odoo.{fmt}"
    dumped = run_action("postgres.dump", ctx, path=str(path), format=fmt, jobs=2 if fmt == "directory" else 1)
    assert dumped["bytes"] > 0 and Path(dumped["path"]).exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    argv, env = ctx.processes[-1]
    assert env["PGDATABASE"] == seeded_db.dbname and all(seeded_db.dbname not in a for a in argv)

    target = f"odoo_restored_{fmt}"
    run_action("postgres.create_database", ctx, database=target)
    try:
        restored = run_action("postgres.restore", ctx, database=target, path=str(path), jobs=2)
        assert restored["format"] == fmt
        assert restored["jobs"] == (1 if fmt == "plain" else 2)
        with pg.connect(pg_primary.dsn(target)) as conn:
            assert seed.row_counts(conn) == seeded_db.result.counts
            assert conn.execute(
                "SELECT count(*) FROM (SELECT move_id FROM account_move_line GROUP BY 1 "
                "HAVING sum(debit) <> sum(credit)) x"
            ).fetchone() == (0,)
    finally:
        run_action("postgres.drop_database", ctx, database=target)


def test_dump_passes_password_by_environment_only(
    make_ctx: MakeCtx, pg_primary: PgServer, seeded_db: SeededDb, tmp_path: Path
) -> None:
    dsn = f"postgresql://postgres:Pa55-w0rd-xyz@/postgres?host={pg_primary.datadir}&port={pg_primary.info.port}"
    ctx = make_ctx(dsn=dsn)
    run_action("postgres.dump", ctx, path=str(tmp_path / "d.dump"), compress=0)
    argv, env = ctx.processes[-1]
    assert env["PGPASSWORD"] == "Pa55-w0rd-xyz"
    assert not any("Pa55-w0rd-xyz" in a for a in argv)
    assert all("Pa55-w0rd-xyz" not in m for _, m in ctx.logs)
    with pytest.raises(InvalidInput, match="exists"):
        run_action("postgres.dump", ctx, path=str(tmp_path / "d.dump"))


def test_dump_refuses_an_older_pg_dump_and_writes_nothing(
    make_ctx: MakeCtx, seeded_db: SeededDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = "--version" ] && echo "pg_dump (PostgreSQL) 15.4" && exit 0\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv(pg.BINDIR_ENV, str(fake.parent))
    ctx = make_ctx()
    with pytest.raises(pg.ClientTooOld, match="older than the PostgreSQL 18 server"):
        run_action("postgres.dump", ctx, path=str(tmp_path / "out.dump"))
    assert ctx.processes == [] and not (tmp_path / "out.dump").exists()


def test_restore_refuses_live_database(make_ctx: MakeCtx, seeded_db: SeededDb, tmp_path: Path) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP fake")
    with pytest.raises(InvalidInput, match="environment's own database"):
        run_action("postgres.restore", make_ctx(), path=str(dump))


def test_restore_failure_is_reported(make_ctx: MakeCtx, pg_primary: PgServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text("CREATE TABLE t (id int);\nTHIS IS NOT SQL;\n")
    ctx = make_ctx(run_id="run-broken")
    run_action("postgres.create_database", ctx, database="erpops_broken")
    try:
        with pytest.raises(PermanentError, match="psql failed restoring into erpops_broken"):
            run_action("postgres.restore", ctx, database="erpops_broken", path=str(broken))
        with pg.connect(pg_primary.dsn("erpops_broken")) as conn:  # single transaction: nothing left
            assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    finally:
        run_action("postgres.drop_database", ctx, database="erpops_broken")


def test_terminate_connections(make_ctx: MakeCtx, pg_primary: PgServer) -> None:
    ctx = make_ctx(run_id="run-term")
    run_action("postgres.create_database", ctx, database="erpops_term")
    conns = [psycopg.connect(pg_primary.dsn("erpops_term"), autocommit=True) for _ in range(2)]
    try:
        out = run_action("postgres.terminate_connections", ctx, database="erpops_term")
        assert out == {"terminated": 2}
        with pytest.raises(psycopg.OperationalError):
            conns[0].execute("SELECT 1")
    finally:
        for c in conns:
            c.close()
        run_action("postgres.drop_database", ctx, database="erpops_term")
