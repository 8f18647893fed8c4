"""``erpops provision`` on one Docker host through the command line (issue 12, items 3-5 and 8):
from nothing to a served environment (odoo.conf 0600, network, volume, Traefik, services, the
Odoo role and database, the store), a dry run that changes nothing and lists what a run does, a
second run that changes nothing, drift reported exactly and put back, the prune, and an
unreachable engine refused before anything changes."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat
import time
from pathlib import Path
from typing import Any

import docker.errors
import psycopg
import yaml

from erpops.backends.runtime import open_runtime
from tests.fixtures.docker import ImageSet
from tests.fixtures.odoo_crons import Database
from tests.integration.docker.conftest import outcome

CANARY = "canary-provision-pw-3e9f"


def _config(e: Any, odoo_db: Any, database: str, role: str) -> Path:
    services = e.raw["runtime"]["services"]
    conf = e.workdir / "files" / "odoo.conf"
    services["web"]["volumes"] = {f"{e.name}-data": "/var/lib/odoo", str(conf): "/etc/odoo/odoo.conf:ro"}
    services["web"]["labels"] = {"team": "erp"}
    services["worker"]["volumes"] = {f"{e.name}-data": "/var/lib/odoo"}
    return e.write_config(
        Database(odoo_db.dsn, database),
        storage={"url": f"file://{e.workdir / 'backups'}"},
        odoo={
            **e.raw["odoo"],
            "db_user": role,
            "db_password": "env:ERPOPS_TEST_ODOO_PW",
            "conf_file": str(conf),
            "db_host": "db.internal",
            "db_port": 5432,
        },
        runtime={**e.raw["runtime"], "config_dir": str(e.workdir / "files")},
    )


def _remove(e: Any) -> None:
    """Everything provision made for ``e`` on the engine: its containers and its volume."""
    for c in e.client.containers.list(all=True, filters={"label": f"erpops.environment={e.name}"}):
        c.remove(force=True)
    with contextlib.suppress(docker.errors.NotFound):
        e.client.volumes.get(f"{e.name}-data").remove(force=True)


def _role_exists(dsn: str, role: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def test_provision_creates_converges_repairs_drift_and_prunes(
    docker_env: Any, docker_images: ImageSet, odoo_db: Any
) -> None:
    e = docker_env()
    role, database = f"odoo_{secrets.token_hex(3)}", f"erp_{secrets.token_hex(3)}"
    _config(e, odoo_db, database, role)
    env = {"ERPOPS_TEST_ODOO_PW": CANARY}
    conf = e.workdir / "files" / "odoo.conf"
    try:
        dry = e.erpops("provision", "--dry-run", env=env)
        assert dry.returncode == 0, outcome(dry)
        for line in (f"create    database role {role}", f"create    database {database}", "create    directory store",
                     "create    network", "create    volume", f"create    container {e.name}-traefik",
                     f"create    service {e.name}-web: 0 -> 2 running", f"create    file {conf}"):  # fmt: skip
            assert line in dry.stdout, (line, dry.stdout)
        assert CANARY not in dry.stdout + dry.stderr
        assert not conf.exists() and not e.containers() and not _role_exists(odoo_db.dsn, role)  # nothing changed

        run = e.erpops("provision", "--yes", env=env)
        assert run.returncode == 0, outcome(run)
        assert CANARY not in run.stdout + run.stderr
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and f"db_password = {CANARY}" in conf.read_text()
        assert "db_host = db.internal" in conf.read_text() and f"db_user = {role}" in conf.read_text()
        assert len(e.ids("web")) == 2 and len(e.ids("worker")) == 1
        assert {c.labels.get("team") for c in e.containers("web")} == {"erp"}
        assert e.front_check()[0] == 200  # served through Traefik with the rendered certificate
        assert _role_exists(odoo_db.dsn, role)
        assert stat.S_IMODE((e.workdir / "backups").stat().st_mode) == 0o700
        e.client.volumes.get(f"{e.name}-data")

        t = time.monotonic()
        again = e.erpops("provision", "--yes", env=env)
        second = time.monotonic() - t
        assert again.returncode == 0, outcome(again)
        assert again.stdout.count("nothing to change") >= 3, again.stdout  # database, bucket, runtime
        assert "will change" not in again.stdout, again.stdout
        print(f"second provision on a converged environment: {second:.2f} s")

        # drift: a removed instance, a hand-edited odoo.conf, the front removed, a changed label
        e.containers("web")[0].remove(force=True)
        conf.write_text(conf.read_text().replace("workers = 2", "workers = 9"))
        e.client.containers.get(f"{e.name}-traefik").remove(force=True)
        drifted = e.erpops("provision", "--dry-run", env=env)
        assert drifted.returncode == 0, outcome(drifted)
        said = drifted.stdout
        assert f"update    service {e.name}-web: 1 -> 2 running" in said, said
        assert f"update    file {conf}" in said and "-workers = 9" in said and "+workers = 2" in said, said
        assert f"create    container {e.name}-traefik" in said, said
        assert CANARY not in said and "db_password = ***" not in said.replace("-db_password", "")  # masked or absent
        fixed = e.erpops("provision", "--yes", env=env)
        assert fixed.returncode == 0, outcome(fixed)
        assert len(e.ids("web")) == 2 and "workers = 2" in conf.read_text() and e.front_check()[0] == 200
        assert "will change" not in e.erpops("provision", "--dry-run", env=env).stdout

        # another environment on the same engine, with a worker too: the prune below must not touch it
        other = docker_env(front=False)
        with open_runtime(other.env) as rt:
            rt.deploy("worker", docker_images.healthy, release="r1", timeout=60)
        theirs = other.ids("worker")

        # a label changed in erpops.yaml: the instances are replaced (rolling, through the front)
        raw = yaml.safe_load((e.workdir / "erpops.yaml").read_text())
        raw["environments"][e.name]["runtime"]["services"]["web"]["labels"] = {"team": "ops"}
        del raw["environments"][e.name]["runtime"]["services"]["worker"]  # and worker is no longer declared
        (e.workdir / "erpops.yaml").write_text(yaml.safe_dump(raw))
        changed = e.erpops("provision", "--yes", env=env)
        assert changed.returncode == 0, outcome(changed)
        assert "labels differ" in changed.stdout and "service 'worker' is no longer declared" in changed.stdout
        assert {c.labels.get("team") for c in e.containers("web")} == {"ops"} and e.containers("worker") == []
        assert e.front_check()[0] == 200
        assert other.ids("worker") == theirs and len(theirs) == 1  # only this environment's objects are pruned
    finally:
        with psycopg.connect(odoo_db.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
        _remove(e)


def test_an_unreachable_engine_is_refused_before_anything_changes(
    docker_env: Any, docker_images: ImageSet, odoo_db: Any, tmp_path: Path
) -> None:
    e = docker_env()
    role, database = f"odoo_{secrets.token_hex(3)}", f"erp_{secrets.token_hex(3)}"
    _config(e, odoo_db, database, role)
    dead = {"DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}", "ERPOPS_TEST_ODOO_PW": CANARY}
    run = e.erpops("provision", "--yes", env=dead)
    assert run.returncode == 3, outcome(run)
    assert "Docker engine not reachable" in run.stdout + run.stderr
    assert not _role_exists(odoo_db.dsn, role) and not (e.workdir / "backups").exists()
    assert not os.path.exists(e.workdir / "files" / "odoo.conf")


def test_a_taken_port_an_unreachable_database_or_store_is_named_before_anything_changes(
    docker_env: Any, docker_images: ImageSet, odoo_db: Any
) -> None:
    e = docker_env()
    role, database = f"odoo_{secrets.token_hex(3)}", f"erp_{secrets.token_hex(3)}"
    _config(e, odoo_db, database, role)
    port = e.raw["ingress"]["https_port"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        run = e.erpops("provision", "--yes", env={"ERPOPS_TEST_ODOO_PW": CANARY})
    assert run.returncode == 3, outcome(run)
    assert f"ingress.https_port {port} on 127.0.0.1 is taken" in run.stdout + run.stderr
    assert not _role_exists(odoo_db.dsn, role) and not e.containers() and not (e.workdir / "backups").exists()

    raw = yaml.safe_load((e.workdir / "erpops.yaml").read_text())
    raw["environments"][e.name]["database"]["dsn"] = "postgresql://postgres@127.0.0.1:9/postgres"
    (e.workdir / "erpops.yaml").write_text(yaml.safe_dump(raw))
    run = e.erpops("provision", "--yes", env={"ERPOPS_TEST_ODOO_PW": CANARY})
    assert run.returncode == 3 and "cannot connect to" in run.stdout + run.stderr, outcome(run)
    assert not e.containers() and not (e.workdir / "backups").exists()

    raw["environments"][e.name]["database"]["dsn"] = odoo_db.dsn  # the database answers again
    raw["environments"][e.name]["storage"] = {"url": "s3://erpops-nowhere/prod", "endpoint": "http://127.0.0.1:9",
                                              "access_key": "k", "secret_key": "env:ERPOPS_TEST_ODOO_PW"}  # fmt: skip
    (e.workdir / "erpops.yaml").write_text(yaml.safe_dump(raw))
    run = e.erpops("provision", "--yes", env={"ERPOPS_TEST_ODOO_PW": CANARY})
    assert run.returncode == 3 and "cannot reach S3" in run.stdout + run.stderr, outcome(run)
    assert not _role_exists(odoo_db.dsn, role) and not e.containers()


def test_a_users_front_template_is_what_runs_and_a_bad_one_is_named(
    docker_env: Any, docker_images: ImageSet, odoo_db: Any, tmp_path: Path
) -> None:
    """templates/docker/front.yml.j2 is the front container: a user's copy adding a label makes
    provision recreate it with the label; one that is not a container exits 2 naming the file."""
    e = docker_env()
    e.write_config(None, runtime={**e.raw["runtime"], "config_dir": str(e.workdir / "files")})
    shipped = Path(__file__).resolve().parents[3] / "templates" / "docker" / "front.yml.j2"
    (tmp_path / "docker").mkdir()
    mine = tmp_path / "docker" / "front.yml.j2"
    try:
        assert e.erpops("provision", "--yes").returncode == 0
        mine.write_text(shipped.read_text().replace("labels: {}", 'labels: {monitoring: "on"}'))
        env = {"ERPOPS_TEMPLATE_PATH": str(tmp_path)}
        dry = e.erpops("provision", "--dry-run", env=env)
        recreate = f"update    container {e.name}-traefik: recreate: labels monitoring: None -> on"
        assert recreate in dry.stdout, dry.stdout
        run = e.erpops("provision", "--yes", env=env)
        assert run.returncode == 0, outcome(run)
        assert e.client.containers.get(f"{e.name}-traefik").labels["monitoring"] == "on"
        assert e.front_check()[0] == 200

        mine.write_text("name: x\nports: {}\n")
        bad = e.erpops("provision", "--yes", env=env)
        assert bad.returncode == 2 and f"{mine}: not a front container" in bad.stdout + bad.stderr, outcome(bad)
    finally:
        _remove(e)
