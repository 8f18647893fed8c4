"""The seeded Odoo-shaped database keeps the invariants the drills check (ODOO-FACTS)."""

from __future__ import annotations

import hashlib
import re

import pytest

from erpops.backends.odoo import seed
from erpops.backends.postgres import client as pg
from erpops.errors import InvalidInput
from tests.fixtures.postgres import PgServer, SeededDb
from tests.fixtures.sql import scalar

pytestmark = pytest.mark.postgres


def test_counts_reported_match_the_database(seeded_db: SeededDb) -> None:
    counts = seeded_db.result.counts
    assert set(counts) == set(seed.KEY_TABLES)
    with pg.connect(seeded_db.dsn) as conn:
        assert seed.row_counts(conn) == counts
    for table in ("res_partner", "product_product", "stock_move", "sale_order_line", "account_move_line"):
        assert counts[table] > 100, table
    assert seeded_db.result.seconds < 15


def test_posted_moves_are_balanced(seeded_db: SeededDb) -> None:
    with pg.connect(seeded_db.dsn) as conn:
        unbalanced = conn.execute(
            "SELECT m.id FROM account_move m JOIN account_move_line l ON l.move_id = m.id "
            "WHERE m.state = 'posted' GROUP BY m.id HAVING sum(l.debit) <> sum(l.credit)"
        ).fetchall()
        states = dict(conn.execute("SELECT state, count(*) FROM account_move GROUP BY state").fetchall())
        types = {r[0] for r in conn.execute("SELECT DISTINCT move_type FROM account_move")}
        lines_state = conn.execute(
            "SELECT count(*) FROM account_move_line l JOIN account_move m ON m.id = l.move_id "
            "WHERE l.parent_state <> m.state OR l.balance <> l.debit - l.credit"
        ).fetchone()
    assert unbalanced == []
    assert states["posted"] > 0 and states.get("draft", 0) > 0 and states.get("cancel", 0) > 0
    assert types == {"out_invoice", "in_invoice", "entry"}
    assert lines_state == (0,)


def test_attachment_files_match_their_checksums(seeded_db: SeededDb) -> None:
    fs = seeded_db.filestore
    with pg.connect(seeded_db.dsn) as conn:
        stored = conn.execute(
            "SELECT store_fname, checksum, file_size FROM ir_attachment WHERE store_fname IS NOT NULL"
        ).fetchall()
        shared = conn.execute(
            "SELECT count(*) FROM (SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL "
            "GROUP BY 1 HAVING count(*) > 1) s"
        ).fetchone()
        in_db = conn.execute(
            "SELECT db_datas, checksum FROM ir_attachment WHERE db_datas IS NOT NULL AND store_fname IS NULL"
        ).fetchall()
        urls = conn.execute("SELECT count(*) FROM ir_attachment WHERE type = 'url' AND store_fname IS NULL").fetchone()
    assert stored and shared and shared[0] > 0
    for fname, checksum, size in stored:
        assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{40}", fname) and fname[:2] == checksum[:2]
        data = (fs / fname).read_bytes()
        assert hashlib.sha1(data).hexdigest() == checksum == fname[3:]
        assert len(data) == size
        assert (fs / "checklist" / fname).is_file()
    files = {str(p.relative_to(fs)) for p in fs.glob("??/*")}
    assert files == {f for f, _, _ in stored} and len(files) == seeded_db.result.files
    assert in_db and all(hashlib.sha1(bytes(d)).hexdigest() == c for d, c in in_db)
    assert urls and urls[0] > 0


def test_odoo_configuration_records(seeded_db: SeededDb) -> None:
    with pg.connect(seeded_db.dsn) as conn:
        autovacuum = conn.execute(
            "SELECT c.cron_name, c.active FROM ir_cron c JOIN ir_model_data d ON d.res_id = c.id "
            "WHERE d.module = 'base' AND d.name = 'autovacuum_job' AND d.model = 'ir.cron'"
        ).fetchall()
        active_crons = conn.execute("SELECT count(*) FROM ir_cron WHERE active").fetchone()
        version = conn.execute(
            "SELECT latest_version FROM ir_module_module WHERE name = 'base' AND state = 'installed'"
        ).fetchone()
        installed = {r[0] for r in conn.execute("SELECT name FROM ir_module_module WHERE state = 'installed'")}
        params = dict(conn.execute("SELECT key, value FROM ir_config_parameter").fetchall())
        name_type = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'product_template' AND column_name = 'name'"
        ).fetchone()
        product = conn.execute("SELECT name ->> 'en_US' FROM product_template ORDER BY id LIMIT 1").fetchone()
        enabled = conn.execute("SELECT count(*) FROM payment_provider WHERE state = 'enabled'").fetchone()
        prod_carriers = conn.execute("SELECT count(*) FROM delivery_carrier WHERE prod_environment").fetchone()
        mail = conn.execute("SELECT count(*) FROM ir_mail_server WHERE active").fetchone()
        fetchmail = conn.execute("SELECT count(*) FROM fetchmail_server WHERE active").fetchone()
        no_write_date = conn.execute(
            "SELECT t.table_name FROM information_schema.tables t WHERE t.table_schema = 'public' "
            "AND NOT EXISTS (SELECT 1 FROM information_schema.columns c WHERE c.table_name = t.table_name "
            "AND c.column_name = 'write_date')"
        ).fetchall()
        newest = conn.execute(
            "SELECT max(write_date) > (now() AT TIME ZONE 'UTC') - interval '2 days' FROM sale_order"
        ).fetchone()
    assert autovacuum == [("Base: Auto-vacuum internal data", True)]
    assert active_crons and active_crons[0] > 1
    assert version and re.fullmatch(r"18\.0\.\d+\.\d+", version[0])
    assert {"base", "sale", "stock", "account", "purchase", "delivery"} <= installed
    assert {"database.uuid", "database.secret", "database.create_date", "web.base.url"} <= set(params)
    assert re.fullmatch(r"[0-9a-f-]{36}", params["database.uuid"])
    assert "database.is_neutralized" not in params
    assert name_type == ("jsonb",) and product and product[0].startswith("Product ")
    assert enabled and enabled[0] > 0 and prod_carriers and prod_carriers[0] > 0
    assert mail and mail[0] > 0 and fetchmail and fetchmail[0] > 0
    assert no_write_date == []
    assert newest == (True,)


def test_refuses_to_seed_over_an_existing_database(
    seeded_db: SeededDb, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with pytest.raises(InvalidInput, match="already exists"):
        seed.seed(seeded_db.server_dsn, seeded_db.dbname, tmp_path_factory.mktemp("fs"))
    with pytest.raises(InvalidInput, match="not empty"):
        seed.seed(seeded_db.server_dsn, "other", seeded_db.filestore)


def test_replace_only_replaces_seeded_databases(pg_primary: PgServer) -> None:
    with pg.connect(pg_primary.dsn()) as conn:
        conn.execute("CREATE DATABASE not_seeded")
    try:
        with pytest.raises(Exception, match="not seeded by erpops"):
            seed.seed(pg_primary.dsn(), "not_seeded", None, scale=0.1, replace=True)
        first = seed.seed(pg_primary.dsn(), "small_seed", None, scale=0.1)
        again = seed.seed(pg_primary.dsn(), "small_seed", None, scale=0.2, replace=True)
        assert again.counts["sale_order"] == 2 * first.counts["sale_order"] == 80
        assert first.files == 0  # no filestore: no stored files, only database/url attachments
    finally:
        with pg.connect(pg_primary.dsn()) as conn:
            conn.execute("DROP DATABASE IF EXISTS not_seeded")
            conn.execute("DROP DATABASE IF EXISTS small_seed")


def test_scale_is_validated() -> None:
    with pytest.raises(InvalidInput, match="scale"):
        seed.scaled_counts(0)
    assert seed.scaled_counts(2)["orders"] == 2 * seed.BASE_COUNTS["orders"]


def test_the_odoo18_catalog_has_the_shape_of_a_real_odoo_database(pg_primary: PgServer, tmp_path) -> None:
    """Issue 17 item 5: a real Odoo 18 database's restore cost is its catalog (528 tables, 1,208
    indexes, 4,025 constraints, 1,914 foreign keys, 388 sequences, 5,383 columns), which the seed
    lacked; ``catalog="odoo18"`` adds it, and the drills' own tables keep their invariants."""
    from erpops.backends.odoo import catalog
    from erpops.backends.odoo import db as odoo_db

    try:
        result = seed.seed(pg_primary.dsn(), "catalog_seed", tmp_path / "fs", scale=0.2, catalog="odoo18")
        with pg.connect(pg_primary.dsn(), "catalog_seed") as conn:
            shape = catalog.shape(conn)
            for key, want in catalog.ODOO18.items():
                assert abs(shape[key] - want) <= want * 0.02, (key, shape[key], want)
            assert odoo_db.row_counts(conn, list(result.counts)) == result.counts
            # the added tables have rows, and a new row gets the next id (sequences were reset)
            table = scalar(conn, "SELECT min(relname) FROM pg_class WHERE relname LIKE 'hr\\_%%' AND relkind = 'r' "
                                 "AND relname NOT LIKE '%%\\_rel'")  # fmt: skip
            count = scalar(conn, f"SELECT count(*) FROM {table}")
            assert count >= 1 and scalar(conn, f"SELECT max(id) FROM {table}") == count
            assert scalar(conn, f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))") == count + 1
        with pytest.raises(InvalidInput, match="catalog"):
            seed.seed(pg_primary.dsn(), "catalog_seed_2", None, catalog="odoo19")
    finally:
        with pg.connect(pg_primary.dsn()) as conn:
            conn.execute("DROP DATABASE IF EXISTS catalog_seed")
