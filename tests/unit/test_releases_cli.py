"""`erpops releases list` reads the release history from the configured state store."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_releases_list_reads_the_state_store(tmp_path):
    from erpops.engine.store import open_state_store
    from erpops.environments import Config

    db = tmp_path / "state.db"
    (tmp_path / "erpops.yaml").write_text(f"state: sqlite:///{db}\nenvironments:\n  qa: {{}}\n")
    store = open_state_store(Config(state=f"sqlite:///{db}"))
    store.put_record(
        "release",
        "qa",
        "r1",
        {"time": "2026-11-20T10:00:00+00:00", "status": "good", "images": {"web": "odoo:1"}, "run_id": "r1"},
    )
    store.put_record(
        "release",
        "qa",
        "r2",
        {"time": "2026-11-21T10:00:00+00:00", "status": "failed", "images": {"web": "odoo:2"}, "run_id": "r2"},
    )
    store.put_record(
        "release",
        "qa",
        "r4",
        {
            "time": "2026-11-22T09:00:00+00:00",
            "status": "good",
            "images": {"web": "odoo:1"},
            "rollback_to": "r1",
            "restored_backup": "b-20261121",
        },
    )
    store.put_record("release", "other", "r3", {"time": "2026-11-22T10:00:00+00:00", "status": "good"})
    store.close()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    env.pop("ERPOPS_CONFIG", None)
    res = subprocess.run(
        [sys.executable, "-m", "erpops", "releases", "list", "--env", "qa", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["id"], r["status"]) for r in rows] == [("r4", "good"), ("r2", "failed"), ("r1", "good")]
    res = subprocess.run(
        [sys.executable, "-m", "erpops", "releases", "list", "--env", "qa"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and "odoo:2" in res.stdout and "failed" in res.stdout
    assert "rollback to r1" in res.stdout and "restored b-20261121" in res.stdout
