"""``odoo.swap_database``: a restored copy put in the live database's place on a real server, sessions
ended, the live one kept, and the exact undo; refusals before anything changes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from erpops.backends.odoo import restore as odoo_restore
from erpops.backends.postgres import client as pg
from erpops.environments import Database, Environment, Odoo
from erpops.errors import InvalidInput, PermanentError
from tests.fixtures.postgres import PgServer
from tests.fixtures.sql import scalar
from tests.integration.postgres.conftest import FakeCtx, run_action

pytestmark = pytest.mark.postgres


def _comment(dsn: str, name: str) -> str | None:
    with pg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return row[0] if row else None


def _rows(dsn: str, name: str) -> list[str]:
    with pg.connect(dsn, name) as conn:
        return [r[0] for r in conn.execute("SELECT what FROM marker ORDER BY what").fetchall()]


@pytest.fixture
def pair(pg_primary: PgServer, tmp_path: Path) -> Iterator[Callable[..., tuple[FakeCtx, str, str, Path, Path]]]:
    """A live database (+ filestore) and an erpops-restored copy (+ restored filestore) beside it."""
    made: list[str] = []

    def make(*, marked: bool = True) -> tuple[FakeCtx, str, str, Path, Path]:
        server = pg_primary.dsn()
        tag = secrets.token_hex(3)
        live, copy = f"live_{tag}", f"live_{tag}_rollback_run_1"
        made.extend([live, copy, f"live_{tag}_replaced_run_swap_1"])
        with pg.connect(server) as conn:
            conn.execute(f'CREATE DATABASE "{live}"')
            conn.execute(f"COMMENT ON DATABASE \"{live}\" IS 'production database'")
        if marked:
            odoo_restore.create_database(server, copy, run_id="run-1", note="restore of b1")
        else:
            with pg.connect(server) as conn:
                conn.execute(f'CREATE DATABASE "{copy}"')
        for name in (live, copy):
            with pg.connect(server, name) as conn:
                conn.execute("CREATE TABLE marker (what text)")
                conn.execute("INSERT INTO marker VALUES (%s)", (name,))
        filestore = tmp_path / tag / "filestore" / live
        (filestore / "ab").mkdir(parents=True)
        (filestore / "ab" / "new").write_text("written after the backup")
        restored = tmp_path / tag / "filestore" / f"erpops-scratch-{copy}" / "filestore" / copy
        (restored / "ab").mkdir(parents=True)
        (restored / "ab" / "old").write_text("from the backup")
        env = Environment(
            name="swaptest", database=Database(dsn=server, name=live), odoo=Odoo(filestore=str(filestore))
        )
        return FakeCtx(env, run_id="run-swap-1"), live, copy, filestore, restored

    yield make
    with pg.connect(pg_primary.dsn()) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_swap_puts_the_copy_in_place_ends_sessions_and_back_undoes_it(pair, pg_primary: PgServer) -> None:
    ctx, live, copy, filestore, restored = pair()
    server = pg_primary.dsn()
    straggler = psycopg.connect(pg_primary.dsn(live), autocommit=True, application_name="odoo-worker-7")
    out = run_action("odoo.swap_database", ctx, replacement=copy, replacement_filestore=str(restored), backup="b1")
    kept = f"{live}_replaced_run_swap_1"
    assert out["kept_as"] == kept and out["database"] == live
    assert _rows(server, live) == [copy] and _rows(server, kept) == [live]
    assert any("odoo-worker-7" in s for s in out["sessions_ended"]), out["sessions_ended"]
    with pytest.raises(psycopg.OperationalError):
        straggler.execute("SELECT 1")
    straggler.close()
    # the copy lost erpops's mark (it is live now: never dropped), the kept one says what happened
    assert not (_comment(server, live) or "").startswith(odoo_restore.MARK)
    assert "backup b1" in (_comment(server, live) or "") and kept in (_comment(server, live) or "")
    assert "replaced by erpops run run-swap-1" in (_comment(server, kept) or "")
    with pytest.raises(PermanentError, match="did not create it"):
        odoo_restore.drop_database(server, live, run_id=None)
    # the kept database accepts connections again; the filestores moved by rename
    with pg.connect(server, kept) as conn:
        conn.execute("SELECT 1")
    assert (filestore / "ab" / "old").exists() and not (filestore / "ab" / "new").exists()
    assert (filestore.parent / kept / "ab" / "new").exists() and not restored.exists()

    back = run_action(
        "odoo.swap_database",
        ctx,
        back=True,
        replacement=copy,
        replacement_filestore=str(restored),
        live_comment=out["live_comment"],
        replacement_comment=out["replacement_comment"],
    )
    assert back["database"] == live
    assert _rows(server, live) == [live] and _rows(server, copy) == [copy]
    assert _comment(server, live) == "production database"
    assert (_comment(server, copy) or "").startswith(odoo_restore.MARK)
    assert (filestore / "ab" / "new").exists() and (restored / "ab" / "old").exists()
    assert not (filestore.parent / kept).exists()
    again = run_action("odoo.swap_database", ctx, back=True, replacement=copy, replacement_filestore=str(restored))
    assert again["sessions_ended"] == []  # nothing swapped: nothing to undo
    assert odoo_restore.drop_database(server, copy, run_id=None)


def test_swap_refuses_a_copy_erpops_did_not_restore(pair, pg_primary: PgServer) -> None:
    ctx, live, copy, filestore, restored = pair(marked=False)
    with pytest.raises(PermanentError, match="erpops did not restore it"):
        run_action("odoo.swap_database", ctx, replacement=copy, replacement_filestore=str(restored))
    assert _rows(pg_primary.dsn(), live) == [live] and (filestore / "ab" / "new").exists()


def test_swap_refuses_a_taken_name_and_a_missing_filestore(pair, pg_primary: PgServer) -> None:
    ctx, live, copy, filestore, restored = pair()
    with pytest.raises(InvalidInput, match="three different names"):
        run_action("odoo.swap_database", ctx, replacement=copy, keep_as=copy)
    with pytest.raises(InvalidInput, match="does not exist"):
        run_action("odoo.swap_database", ctx, replacement=copy, replacement_filestore=str(restored) + "-nope")
    with pg.connect(pg_primary.dsn()) as conn:
        conn.execute(f'CREATE DATABASE "{live}_replaced_run_swap_1"')
    with pytest.raises(InvalidInput, match="exists already"):
        run_action("odoo.swap_database", ctx, replacement=copy)
    assert _rows(pg_primary.dsn(), live) == [live] and _rows(pg_primary.dsn(), copy) == [copy]
    assert os.listdir(filestore / "ab") == ["new"]


def _allows(dsn: str, name: str) -> bool:
    with pg.connect(dsn) as conn:
        return bool(scalar(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)))


def test_a_resumed_swap_completes_instead_of_failing_and_undo_still_works(pair, pg_primary: PgServer) -> None:
    ctx, live, copy, filestore, restored = pair()
    server = pg_primary.dsn()
    kept = f"{live}_replaced_run_swap_1"
    first = run_action("odoo.swap_database", ctx, replacement=copy, replacement_filestore=str(restored))
    # a crash after the databases were renamed, before the filestore and before the step was recorded
    filestore.rename(restored)
    (filestore.parent / kept).rename(filestore)
    with pg.connect(server) as conn:
        conn.execute(f'ALTER DATABASE "{kept}" WITH ALLOW_CONNECTIONS false')
    again = run_action("odoo.swap_database", ctx, replacement=copy, replacement_filestore=str(restored))
    assert again["kept_as"] == first["kept_as"] == kept
    assert _rows(server, live) == [copy] and _rows(server, kept) == [live] and _allows(server, kept)
    assert (filestore / "ab" / "old").exists() and (filestore.parent / kept / "ab" / "new").exists()
    # the undo with what the resumed step reported: the copy is erpops's (droppable) again
    run_action(
        "odoo.swap_database",
        ctx,
        back=True,
        replacement=copy,
        replacement_filestore=str(restored),
        live_comment=again["live_comment"],
        replacement_comment=again["replacement_comment"],
    )
    assert _rows(server, live) == [live] and (filestore / "ab" / "new").exists()
    assert odoo_restore.drop_database(server, copy, run_id=None)


def test_undo_after_a_crash_before_the_rename_lets_the_live_database_accept_connections(
    pair, pg_primary: PgServer
) -> None:
    ctx, live, copy, _, restored = pair()
    server = pg_primary.dsn()
    with pg.connect(server) as conn:  # the crash: connections refused, nothing renamed yet
        conn.execute(f'ALTER DATABASE "{live}" WITH ALLOW_CONNECTIONS false')
    out = run_action("odoo.swap_database", ctx, back=True, replacement=copy, replacement_filestore=str(restored))
    assert out["sessions_ended"] == [] and _allows(server, live)
    assert _rows(server, live) == [live]
