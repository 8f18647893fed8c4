"""Each drill check fails when its invariant is broken in a restored copy, and neutralization
tolerates databases without the optional modules' tables."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from erpops.backends.odoo import checks as C
from erpops.backends.odoo import restore as R
from erpops.backends.odoo.backup import BackupOptions, run_backup
from erpops.backends.odoo.neutralize import neutralize
from erpops.backends.postgres import client as pg
from erpops.backends.storage.local import LocalStore
from erpops.manifest import Manifest
from tests.fixtures.sql import scalar


@dataclass
class Restored:
    dsn: str
    database: str
    filestore: Path
    manifest: Manifest


@pytest.fixture(scope="module")
def restored(seeded_db, tmp_path_factory) -> Iterator[Restored]:
    """One backup of the seeded database restored into a scratch database (backend calls)."""
    root = tmp_path_factory.mktemp("checks")
    store = LocalStore(root / "store")
    opts = BackupOptions(
        environment="t", dsn=seeded_db.server_dsn, database=seeded_db.dbname, filestore=seeded_db.filestore
    )
    manifest = run_backup(store, opts).manifest
    scratch = R.make_scratch(R.scratch_dir(root, "odoo_seed_drill_checks"))
    fetched = R.fetch(store, manifest, scratch)
    R.create_database(seeded_db.server_dsn, "odoo_seed_drill_checks", run_id="test-checks")
    filestore = scratch / "filestore" / "odoo_seed_drill_checks"
    R.restore(fetched, seeded_db.server_dsn, "odoo_seed_drill_checks", filestore)
    try:
        yield Restored(seeded_db.server_dsn, "odoo_seed_drill_checks", filestore, manifest)
    finally:
        R.drop_database(seeded_db.server_dsn, "odoo_seed_drill_checks", run_id=None)
        R.remove_scratch(scratch)


@pytest.fixture
def conn(restored: Restored) -> Iterator[Any]:
    """A connection inside a transaction that is rolled back: tampering never outlives a test."""
    with pg.connect(restored.dsn, restored.database, autocommit=False) as c:
        try:
            yield c
        finally:
            c.rollback()


def test_all_checks_pass_on_an_untouched_copy(conn, restored: Restored) -> None:
    results = [
        C.check_row_counts(conn, restored.manifest.row_counts),
        C.check_balanced(conn),
        C.check_attachments(conn, restored.filestore, 10_000),
        C.check_modules(conn, restored.manifest.modules),
    ]
    assert [(r.name, r.passed, r.skipped) for r in results] == [
        ("row_counts", True, False),
        ("accounting_balanced", True, False),
        ("attachments", True, False),
        ("modules", True, False),
    ]
    assert results[2].actual["sampled"] > 0


def test_row_count_check_fails_when_a_row_is_missing(conn, restored: Restored) -> None:
    conn.execute("DELETE FROM stock_quant WHERE id = (SELECT min(id) FROM stock_quant)")
    r = C.check_row_counts(conn, restored.manifest.row_counts)
    expected = restored.manifest.row_counts["stock_quant"]
    assert not r.passed and r.actual["stock_quant"] == expected - 1
    assert f"stock_quant: {expected - 1} (manifest {expected})" in r.message
    assert r.seconds >= 0


def test_balance_check_fails_on_an_unbalanced_posted_move(conn) -> None:
    name = scalar(
        conn,
        "UPDATE account_move_line SET credit = credit + 0.01 WHERE id = (SELECT l.id FROM account_move_line l "
        "JOIN account_move m ON m.id = l.move_id WHERE m.state = 'posted' ORDER BY l.id LIMIT 1) "
        "RETURNING (SELECT name FROM account_move WHERE id = move_id)",
    )
    r = C.check_balanced(conn)
    assert not r.passed and r.actual["unbalanced"] == 1 and name in r.message


def test_balance_check_ignores_draft_moves(conn) -> None:
    conn.execute(
        "UPDATE account_move_line SET debit = debit + 5 WHERE move_id IN "
        "(SELECT id FROM account_move WHERE state <> 'posted')"
    )
    assert C.check_balanced(conn).passed


def test_attachment_check_fails_on_a_missing_or_changed_file(conn, restored: Restored) -> None:
    fname = scalar(conn, "SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL ORDER BY id LIMIT 1")
    path = restored.filestore / fname
    saved = path.with_suffix(".saved")
    shutil.move(path, saved)
    try:
        r = C.check_attachments(conn, restored.filestore, 10_000)
        assert not r.passed and r.actual["missing"] == 1 and fname in r.actual["examples"]
    finally:
        shutil.move(saved, path)
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        r = C.check_attachments(conn, restored.filestore, 10_000)
        assert not r.passed and r.actual["checksum_mismatch"] == 1
    finally:
        path.write_bytes(original)
    assert C.check_attachments(conn, restored.filestore, 10_000).passed


def test_attachment_check_refuses_paths_outside_the_filestore(conn, restored: Restored) -> None:
    conn.execute("UPDATE ir_attachment SET store_fname = '../../../etc/passwd' WHERE id = (SELECT min(id) FROM "
                 "ir_attachment WHERE store_fname IS NOT NULL)")  # fmt: skip
    r = C.check_attachments(conn, restored.filestore, 10_000)
    assert not r.passed and r.actual["missing"] == 1


def test_module_check_fails_when_a_module_differs(conn, restored: Restored) -> None:
    conn.execute("UPDATE ir_module_module SET state = 'uninstalled' WHERE name = 'sale'")
    conn.execute("UPDATE ir_module_module SET latest_version = '18.0.9.9' WHERE name = 'stock'")
    r = C.check_modules(conn, restored.manifest.modules)
    assert not r.passed and "missing sale" in r.message and "stock 18.0.9.9" in r.message


def test_custom_sql_checks(conn) -> None:
    ok = C.check_sql(conn, C.SqlCheck("customers", "SELECT count(*) FROM res_partner WHERE customer_rank > 0", 0))
    assert not ok.passed and ok.expected == 0 and isinstance(ok.actual, int)
    assert C.check_sql(conn, C.SqlCheck("bool", "SELECT count(*) > 0 FROM sale_order", True)).passed
    assert C.check_sql(conn, C.SqlCheck("text", "SELECT 'x'::text", "x")).passed
    assert C.check_sql(conn, C.SqlCheck("no violations", "SELECT id FROM stock_quant WHERE quantity < -1e9")).passed
    bad = C.check_sql(conn, C.SqlCheck("violations", "SELECT id FROM res_partner ORDER BY id"))
    assert not bad.passed and "rows returned" in bad.message
    broken = C.check_sql(conn, C.SqlCheck("broken", "SELECT nope FROM nowhere"))
    assert not broken.passed and "query failed" in broken.message
    # checks run read-only, whatever the operator wrote
    write = C.check_sql(conn, C.SqlCheck("write", "DELETE FROM res_partner RETURNING id"))
    assert not write.passed and "read-only" in write.message
    assert scalar(conn, "SELECT count(*) FROM res_partner") > 0


def test_neutralize_is_idempotent_and_keeps_autovacuum(conn) -> None:
    first = neutralize(conn)
    assert first["crons_disabled"] >= 1 and first["neutralize_mail_server_added"] is True
    again = neutralize(conn)
    assert again["crons_disabled"] == 0 and again["mail_servers_disabled"] == 0
    assert again["neutralize_mail_server_added"] is False
    active = scalar(
        conn,
        "SELECT count(*) FROM ir_cron c JOIN ir_model_data d ON d.model = 'ir.cron' AND d.res_id = c.id "
        "AND d.module = 'base' AND d.name = 'autovacuum_job' WHERE c.active",
    )
    assert active == 1


def test_neutralize_tolerates_missing_modules(seeded_db) -> None:
    """A database without fetchmail, payment, delivery or even ir_cron: only what exists changes."""
    with pg.connect(seeded_db.server_dsn) as admin:
        admin.execute("DROP DATABASE IF EXISTS odoo_drill_minimal")
        admin.execute("CREATE DATABASE odoo_drill_minimal")
    try:
        with pg.connect(seeded_db.server_dsn, "odoo_drill_minimal") as c:
            c.execute("CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar UNIQUE NOT NULL, "
                      "value text NOT NULL)")  # fmt: skip
            c.execute("INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'abc'), "
                      "('database.secret', 'production-secret')")  # fmt: skip
            changed = neutralize(c)
            # the rules on ir_config_parameter keys apply (nothing to remove); nothing else exists
            assert {k: v for k, v in changed.items() if v} == {
                "is_neutralized": True, "new_database_uuid": True, "new_database_secret": True,
            }  # fmt: skip
            assert set(changed) - {"is_neutralized", "new_database_uuid", "new_database_secret"} == {
                "web_push_keys_removed", "sfu_key_removed", "iap_extract_endpoint_removed", "ocn_ids_removed",
                "map_token_removed", "barcode_lookup_key_removed",
            }  # fmt: skip
            params = dict(c.execute("SELECT key, value FROM ir_config_parameter").fetchall())
            assert params["database.is_neutralized"] == "true" and params["database.uuid"] != "abc"
            assert params["database.secret"] != "production-secret"  # issue 17 item 1: as Odoo's copy restore
    finally:
        with pg.connect(seeded_db.server_dsn) as admin:
            admin.execute("DROP DATABASE IF EXISTS odoo_drill_minimal WITH (FORCE)")


def test_drop_refuses_databases_erpops_did_not_create(seeded_db) -> None:
    from erpops.errors import PermanentError

    with pytest.raises(PermanentError, match="erpops did not create it"):
        R.drop_database(seeded_db.server_dsn, seeded_db.dbname, run_id=None)
    assert R.drop_database(seeded_db.server_dsn, "odoo_never_existed", run_id=None) is False
