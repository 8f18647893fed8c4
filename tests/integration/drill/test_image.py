"""The erpops image (issue 13, item 4), built from the Dockerfile here (bases made with debootstrap
and ``docker import``: :mod:`tests.fixtures.erpops_image`) and run as the CronJob runs it: as uid
10001, no network, a backup then a restore drill with ``--store-reports`` against a real
PostgreSQL (its socket mounted in) and a store directory — the drill passes, its evidence lands in
the store, and nothing of the drill is left on the server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

import erpops
from tests.fixtures import erpops_image
from tests.integration.drill.conftest import drill_databases


@pytest.fixture(scope="module")
def image() -> Iterator[erpops_image.Built]:
    built = erpops_image.build()
    print(f"erpops image built: {built.seconds}")
    yield built


def _docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def test_the_image_runs_unprivileged_and_is_this_checkout(image: erpops_image.Built) -> None:
    version = _docker("run", "--rm", "--network", "none", image.tag, "--version")
    assert version.returncode == 0 and version.stdout.split() == ["erpops", erpops.__version__], version
    who = _docker("run", "--rm", "--network", "none", "--entrypoint", "id", image.tag)
    assert who.stdout.startswith("uid=10001(erpops) gid=10001(erpops)"), who.stdout
    leftover = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image.tag, "-c",
                       'test ! -e /tmp/ca && test -z "$SSL_CERT_FILE" && echo clean')  # fmt: skip
    assert leftover.stdout.strip() == "clean", leftover  # the build's certificate authorities stay in the build


def test_a_backup_and_a_drill_in_the_image_store_their_evidence(
    image: erpops_image.Built, seeded_db, tmp_path: Path
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(seeded_db.server_dsn)
    socket = Path(str(params["host"])) / f".s.PGSQL.{params['port']}"
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o777)  # the image's user writes here
    env = {
        "database": {"dsn": f"postgresql://postgres@/postgres?host=/run/pg&port={params['port']}",
                     "name": seeded_db.dbname},
        "storage": {"url": "file:///store"},
        "odoo": {"filestore": "/filestore"},
    }  # fmt: skip
    config = tmp_path / "erpops.yaml"
    config.write_text(yaml.safe_dump({"environments": {"img": env}}))
    config.chmod(0o644)
    run = ["run", "--rm", "--network", "none", "-e", "ERPOPS_CONFIG=/etc/erpops/erpops.yaml", "-e", "COLUMNS=200",
           "-v", f"{config}:/etc/erpops/erpops.yaml:ro", "-v", f"{socket}:/run/pg/{socket.name}",
           "-v", f"{seeded_db.filestore}:/filestore:ro", "-v", f"{store}:/store", image.tag]  # fmt: skip

    backup = _docker(*run, "backup", "--env", "img", "--yes", "--json")
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-3000:]
    (backup_id,) = [p.name for p in (store / "img").iterdir()]
    drill = _docker(*run, "restore-test", "--env", "img", "--yes", "--json", "--store-reports")
    assert drill.returncode == 0, drill.stdout[-3000:] + drill.stderr[-3000:]
    events = [json.loads(x) for x in drill.stdout.splitlines() if x.startswith("{")]
    run_id = next(e for e in reversed(events) if e["event"] == "run.finished" and not e.get("depth"))["run_id"]

    marker = json.loads((store / "img" / backup_id / "restore-test.json").read_text())
    assert marker["ok"] is True and marker["run_id"] == run_id
    folder = store / "img" / "drills" / run_id
    assert sorted(p.name for p in folder.iterdir()) == ["erpops.prom", "junit.xml", "report.json"]
    report = json.loads((folder / "report.json").read_text())
    assert report["passed"] is True and report["backup_id"] == backup_id and report["environment"] == "img"
    assert drill_databases(seeded_db) == []  # the scratch database was dropped
