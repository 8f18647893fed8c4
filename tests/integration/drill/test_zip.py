"""Odoo database-manager zip: export then import round trip, through runbooks on the CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest

from erpops.backends.odoo import db as odoo_db
from erpops.backends.postgres import client as pg
from erpops.errors import InvalidInput
from tests.fixtures.postgres import SeededDb
from tests.integration.drill.conftest import Drill, drill_databases, local_env

ROUND_TRIP = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: zip-round-trip, version: 1.0.0}
params:
  zip: {type: string, required: true}
  target: {type: string, required: true}
steps:
  - id: export
    action: odoo.export_zip
    with: {path: "{{ params.zip }}"}
  - id: import
    action: odoo.import_zip
    with: {path: "{{ steps.export.outputs.path }}", database: "{{ params.target }}", mode: move}
"""


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class _OdooVersion(http.server.BaseHTTPRequestHandler):
    """What an Odoo 18 Enterprise server answers on /web/webclient/version_info (a JSON route)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/web/webclient/version_info":
            self.send_error(404)
            return
        body = json.dumps({"jsonrpc": "2.0", "id": None, "result": {
            "server_version": "18.0+e", "server_version_info": [18, 0, 0, "final", 0, "e"],
            "server_serie": "18.0", "protocol_version": 1}}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_export_then_import_round_trip(drill: Drill, seeded_db) -> None:
    odoo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OdooVersion)
    threading.Thread(target=odoo.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{odoo.server_address[1]}"
    drill.add("local", **local_env(seeded_db, drill.root / "store", odoo={"filestore": str(seeded_db.filestore),
                                                                          "url": url}))  # fmt: skip
    book = drill.runbook("zip", ROUND_TRIP)
    out = drill.root / "odoo.zip"
    target = "odoo_seed_drill_zip"
    res = drill.run("run", str(book), "--env", "local", "--param", f"zip={out}", "--param", f"target={target}")
    try:
        assert res.code == 0, res.stdout[-3000:] + res.stderr
        with zipfile.ZipFile(out) as zf:
            names = zf.namelist()
            manifest = json.loads(zf.read("manifest.json"))
            head = zf.open("dump.sql").read(4096).decode()
        assert "dump.sql" in names and any(n.startswith("filestore/") for n in names)
        assert set(manifest) == {"odoo_dump", "db_name", "version", "version_info", "major_version", "pg_version",
                                 "modules"}  # fmt: skip
        assert manifest["odoo_dump"] == "1" and manifest["db_name"] == seeded_db.dbname
        # issue 17 item 3: the server's full version string, as Odoo's own export writes it
        assert manifest["version"] == "18.0+e" and manifest["version_info"] == [18, 0, 0, "final", 0, "e"]
        assert manifest["major_version"] == "18.0"
        assert manifest["pg_version"] == "18.0"
        assert manifest["modules"]["base"].startswith("18.0")
        assert "\\restrict" not in head  # older psql could not read it
        imported = res.step("import")["outputs"]
        assert imported["database"] == target
        assert _files(Path(imported["filestore"])) == _files(seeded_db.filestore)
        with pg.connect(seeded_db.server_dsn, target) as conn:
            copy_counts = odoo_db.row_counts(conn)
            copy_modules = odoo_db.installed_modules(conn)
        with pg.connect(seeded_db.dsn) as conn:
            assert copy_counts == odoo_db.row_counts(conn)
            assert copy_modules == odoo_db.installed_modules(conn) == manifest["modules"]

        odoo.shutdown()
        odoo.server_close()
        again = drill.run("run", str(book), "--env", "local", "--param", f"zip={out}", "--param", f"target={target}")
        assert again.code == 2 and "already exists" in again.step("import")["error"]
        # the server down: the export still happens, with the series only, and says why
        with zipfile.ZipFile(out) as zf:
            assert json.loads(zf.read("manifest.json"))["version"] == "18.0"
        warned = [e for e in again.events if e.get("event") == "step.log" and e.get("level") == "warning"]
        assert any("did not say its own" in e["message"] for e in warned), warned
    finally:
        from erpops.backends.odoo import restore as odoo_restore

        odoo_restore.drop_database(seeded_db.server_dsn, target, run_id=None)
    assert drill_databases(seeded_db) == []


def test_import_refuses_an_entry_outside_the_filestore(tmp_path: Path, seeded_db) -> None:
    from erpops.backends.odoo.dbzip import import_zip

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("dump.sql", "CREATE TABLE t (id int);\n")
        zf.writestr("manifest.json", json.dumps({"odoo_dump": "1", "db_name": "x"}))
        zf.writestr("filestore/../../escape.txt", "nope")
    created: list[str] = []

    def create(name: str) -> None:
        from erpops.backends.odoo import restore as odoo_restore

        odoo_restore.create_database(seeded_db.server_dsn, name, run_id="test-zip")
        created.append(name)

    try:
        with pytest.raises(InvalidInput, match="outside the filestore"):
            import_zip(bad, seeded_db.server_dsn, "odoo_drill_zipslip", tmp_path / "fs", create=create)
        assert not (tmp_path / "escape.txt").exists()
        assert created == []  # refused before any database was created
    finally:
        from erpops.backends.odoo import restore as odoo_restore

        for name in created:
            odoo_restore.drop_database(seeded_db.server_dsn, name, run_id=None)


def test_not_an_odoo_zip(tmp_path: Path, seeded_db) -> None:
    from erpops.backends.odoo.dbzip import import_zip

    bad = tmp_path / "x.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(InvalidInput, match=r"no dump\.sql"):
        import_zip(bad, seeded_db.server_dsn, "odoo_drill_nozip", None, create=lambda name: None)


IMPORT_ONLY = """
apiVersion: erpops/v1
kind: Runbook
metadata: {name: zip-import, version: 1.0.0}
params:
  zip: {type: string, required: true}
  target: {type: string, required: true}
steps:
  - id: import
    action: odoo.import_zip
    with: {path: "{{ params.zip }}", database: "{{ params.target }}"}
"""


@pytest.mark.parametrize("dump", ["", "-- pg_dump output that was cut off\nSET client_encoding = 'UTF8';\n"])
def test_a_zip_without_a_database_in_its_dump_is_refused_leaving_nothing(
    drill: Drill, seeded_db: SeededDb, dump: str
) -> None:
    """Regression (issue 17 item 3): a zip whose dump.sql is empty exited 0 ("imported") leaving a
    database with 0 tables."""
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    bad = drill.root / "empty.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("dump.sql", dump)
        zf.writestr("manifest.json", json.dumps({"odoo_dump": "1", "db_name": "x"}))
        zf.writestr("filestore/ab/abcdef", "file")
    book = drill.runbook("zip-import", IMPORT_ONLY)
    target = "odoo_drill_emptyzip"
    res = drill.run("run", str(book), "--env", "local", "--param", f"zip={bad}", "--param", f"target={target}")
    assert res.code == 1, res.stdout[-2000:]
    error = res.step("import")["error"] or ""
    assert "dump.sql is empty" in error or "created no table" in error, error
    with pg.connect(seeded_db.server_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone() is None
    assert not (drill.scratch / f"erpops-scratch-{target}").exists()  # nor its scratch directory


def _identity(dsn: str, database: str) -> tuple[dict[str, str], list[tuple[str, bool]]]:
    with pg.connect(dsn, database) as conn:
        params = dict(conn.execute(
            "SELECT key, value FROM ir_config_parameter WHERE key IN ('database.uuid', 'database.secret')"
        ).fetchall())  # fmt: skip
        crons = [(str(r[0]), bool(r[1])) for r in conn.execute("SELECT cron_name, active FROM ir_cron ORDER BY id")]
    return params, crons


def test_the_shipped_runbooks_import_a_copy_by_default_and_a_move_when_asked(drill: Drill, seeded_db) -> None:
    """Issue 17 item 3: an imported database kept the live uuid, secret and active crons (Odoo's own
    import offers "copy" and "move"); now copy is the default, move explicit; runbooks ship both ways."""
    from erpops.backends.odoo import restore as odoo_restore

    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    out = drill.root / "odoo.zip"
    exported = drill.run("run", "odoo-export", "--env", "local", "--param", f"path={out}")
    assert exported.code == 0, exported.stdout[-2000:] + exported.stderr
    live_params, live_crons = _identity(seeded_db.server_dsn, seeded_db.dbname)
    assert any(active for _, active in live_crons)
    try:
        copy = drill.run("run", "odoo-import", "--env", "local", "--param", f"path={out}",
                         "--param", "database=odoo_seed_drill_copy")  # fmt: skip
        assert copy.code == 0, copy.stdout[-2000:] + copy.stderr
        params, crons = _identity(seeded_db.server_dsn, "odoo_seed_drill_copy")
        assert params["database.uuid"] != live_params["database.uuid"]
        assert params["database.secret"] != live_params["database.secret"]
        assert [c for c in crons if c[1]] == [c for c in crons if c[1] and "vacuum" in c[0].lower()]
        assert copy.step("import")["outputs"]["neutralized"]["new_database_secret"] is True

        move = drill.run("run", "odoo-import", "--env", "local", "--param", f"path={out}",
                         "--param", "database=odoo_seed_drill_move", "--param", "mode=move")  # fmt: skip
        assert move.code == 0, move.stdout[-2000:] + move.stderr
        assert _identity(seeded_db.server_dsn, "odoo_seed_drill_move") == (live_params, live_crons)
        assert move.step("import")["outputs"]["neutralized"] is None
    finally:
        for name in ("odoo_seed_drill_copy", "odoo_seed_drill_move"):
            odoo_restore.drop_database(seeded_db.server_dsn, name, run_id=None)
