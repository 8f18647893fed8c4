"""Backups and restore drills refuse a database endpoint that is not the primary (issue: after a
failover that died part-way, backups came from the stale server and were listed verified)."""

from __future__ import annotations

from pathlib import Path

import pytest

from erpops.backends.postgres import client as pg
from erpops.backends.postgres import replication as pg_replication

from .conftest import DB, Pair

pytestmark = pytest.mark.postgres


def test_backup_and_restore_test_refuse_a_standby_or_a_fenced_former_primary(
    healthy: tuple[Pair, Path, Path],
) -> None:
    pair, primary, standby = healthy
    with pg.connect(pair.dsn(primary, DB)) as conn:  # enough of Odoo for a backup (replicated)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ir_module_module (id serial PRIMARY KEY, name varchar, state varchar, "
            "latest_version varchar)"
        )
        if not conn.execute("SELECT 1 FROM ir_module_module WHERE name = 'base'").fetchone():
            conn.execute(
                "INSERT INTO ir_module_module (name, state, latest_version) VALUES ('base', 'installed', '18.0.1.3')"
            )
    store = {"url": str(pair.work / "store")}
    pair.reset_state()
    pair.write_config({"drill": pair.env_config(primary, standby, storage=store)})
    first = pair.cli("backup", "--env", "drill", "--json", "--yes")
    assert first.code == 0, first.stdout[-3000:] + first.stderr[-2000:]

    # erpops.yaml pointing at the standby (the record of a failover lost, a hand-edited file...)
    pair.write_config({"drill": pair.env_config(standby, primary, storage=store)})
    res = pair.cli("backup", "--env", "drill", "--json", "--yes")
    assert res.code == 3, res.stdout[-3000:]
    assert "is in recovery (a standby): a backup of " + DB + " needs the primary" in res.finished()["error"]
    drill = pair.cli("restore-test", "--env", "drill", "--json", "--yes")
    assert drill.code == 3, drill.stdout[-3000:]
    assert "is in recovery (a standby): a restore into" in drill.finished()["error"]

    # a former primary that a failover fenced (its database left open: only the record says so)
    pg_replication.fence(pair.dsn(primary), database=None)
    try:
        pair.write_config({"drill": pair.env_config(primary, standby, storage=store)})
        res = pair.cli("backup", "--env", "drill", "--json", "--yes")
        assert res.code == 3, res.stdout[-3000:]
        assert "a former primary that a failover fenced" in res.finished()["error"]
    finally:
        pg_replication.unfence(pair.dsn(primary))
    again = pair.cli("backup", "--env", "drill", "--json", "--yes")
    assert again.code == 0, again.stdout[-3000:]
