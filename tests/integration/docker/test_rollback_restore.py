"""``erpops rollback --restore-backup`` end to end: the real command line, the real Docker engine, a
seeded Odoo-shaped database on a real PostgreSQL server, pre-deploy backups in a local store.

The story: v1 deployed, data written, v2 deployed (its pre-deploy backup holds the data as v1 left
it), v2 "migrates" (a new column, a new partner, a new attachment file). A rollback that fails
after the database swap puts everything back; a production rollback with approval puts the
pre-deploy database and filestore back, keeping the migrated ones."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.fixtures.docker import ImageSet
from tests.integration.docker.conftest import Database, outcome, release_records

pytestmark = pytest.mark.docker

MIGRATE = ["--param", "migrate_command=/bin/migrate"]


def _one(dsn: str, query: str, *args: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, args).fetchone()
    return row[0] if row else None


def _databases(server: str, prefix: str) -> set[str]:
    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall()
    return {r[0] for r in rows}


def _columns(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'res_partner'"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def shop(odoo_db: Database, tmp_path: Path) -> Any:
    """A seeded database owned by an application role (as Odoo's would be), with its filestore."""
    from erpops.backends.odoo import seed

    server = make_conninfo(odoo_db.dsn, dbname="postgres")
    tag = secrets.token_hex(3)
    name, role = f"shop_{tag}", f"odoo_app_{tag}"
    filestore = tmp_path / "data" / "filestore" / name
    seed.seed(server, name, filestore, scale=0.05)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    yield Database(make_conninfo(odoo_db.dsn, dbname=name), name), server, role, filestore
    with psycopg.connect(server, autocommit=True) as conn:
        for db in _databases(server, name):
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_rollback_restore_backup_puts_the_pre_deploy_database_back(
    docker_env: Any, docker_images: ImageSet, shop: Any, tmp_path: Path
) -> None:
    db, server, role, filestore = shop
    e = docker_env(front=False)
    config = {
        "storage": {"url": f"file://{tmp_path / 'storage'}"},
        "odoo": {**e.raw["odoo"], "filestore": str(filestore)},
    }
    e.write_config(db, **config)
    assert (r := e.erpops("deploy", "--image", docker_images.healthy, *MIGRATE)).returncode == 0, outcome(r)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO res_partner (name, active) VALUES ('written under v1', true)")
    assert (r := e.erpops("deploy", "--image", docker_images.healthy_v2, *MIGRATE)).returncode == 0, outcome(r)
    r1, r2 = release_records(e)
    # v2 "migrates": a column, a partner, an attachment file the v1 database never had
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE res_partner ADD COLUMN x_v2_tier integer")
        conn.execute("INSERT INTO res_partner (name, active) VALUES ('written under v2', true)")
    (filestore / "zz").mkdir()
    (filestore / "zz" / "v2-attachment").write_text("v2")
    partners = _one(db.dsn, "SELECT count(*) FROM res_partner")

    # 1. a rollback that fails after the swap (the target image is unhealthy) puts everything back
    assert (r := e.erpops("deploy", "--image", docker_images.unhealthy, *MIGRATE)).returncode == 6, outcome(r)
    r3 = release_records(e)[2]
    # the failed deploy's migration ran: the run ends naming the rollback that puts the database back
    hint = f"erpops rollback --env {e.name} --to {r2['id']} --restore-backup"
    assert hint in " ".join(r.stdout.split()), outcome(r)
    failed = e.erpops("rollback", "--to", r3["id"], "--restore-backup", "--backup", r2["backup_id"])
    assert failed.returncode == 6, outcome(failed)
    assert e.images("web") == e.images("worker") == {docker_images.healthy_v2}
    assert len(e.ids("web")) == 2 and len(e.ids("worker")) == 1
    assert "x_v2_tier" in _columns(db.dsn) and _one(db.dsn, "SELECT count(*) FROM res_partner") == partners
    assert (filestore / "zz" / "v2-attachment").exists()
    assert _databases(server, db.name) == {db.name}  # the restored copy was dropped, nothing kept
    assert not list(filestore.parent.glob("erpops-scratch-*"))
    assert release_records(e)[-1]["status"] == "failed"

    # 2. production: no approval, no change
    e.write_config(db, tier="production", **config)
    refused = e.erpops("rollback", "--restore-backup")
    assert refused.returncode == 5, outcome(refused)
    assert _databases(server, db.name) == {db.name} and "x_v2_tier" in _columns(db.dsn)

    # 3. approved: the database and filestore as v1 left them (backup taken before r2), v1 serving
    straggler = psycopg.connect(db.dsn, autocommit=True, application_name="odoo-cron-left-over")
    back = e.erpops("rollback", "--restore-backup", "--yes", "--json")
    assert back.returncode == 0, outcome(back)
    assert e.images("web") == e.images("worker") == {docker_images.healthy}
    assert len(e.ids("web")) == 2 and len(e.ids("worker")) == 1
    assert "x_v2_tier" not in _columns(db.dsn)
    assert _one(db.dsn, "SELECT count(*) FROM res_partner WHERE name = 'written under v1'") == 1
    assert _one(db.dsn, "SELECT count(*) FROM res_partner WHERE name = 'written under v2'") == 0
    assert (filestore / "ab").exists() or any(filestore.iterdir())
    assert not (filestore / "zz" / "v2-attachment").exists()
    with pytest.raises(psycopg.OperationalError):
        straggler.execute("SELECT 1")
    straggler.close()
    # owned like the live database was, objects included (the application's role can use them)
    assert _one(server, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", db.name) == role
    assert _one(db.dsn, "SELECT tableowner FROM pg_tables WHERE tablename = 'res_partner'") == role
    # the migrated database and filestore are kept, named by the run
    (kept,) = _databases(server, db.name) - {db.name}
    assert kept.startswith(f"{db.name}_replaced_")
    assert "x_v2_tier" in _columns(make_conninfo(db.dsn, dbname=kept))
    assert (filestore.parent / kept / "zz" / "v2-attachment").exists()
    assert not list(filestore.parent.glob("erpops-scratch-*"))
    rb = release_records(e)[-1]
    assert (rb["status"], rb["rollback_to"], rb["restored_backup"]) == ("good", r1["id"], r2["backup_id"])
    events = [json.loads(line) for line in back.stdout.splitlines() if line.startswith("{")]
    outputs = next(ev for ev in events if ev.get("event") == "run.finished")["outputs"]
    assert outputs["kept_database"] == kept and outputs["restored_backup"] == r2["backup_id"]
