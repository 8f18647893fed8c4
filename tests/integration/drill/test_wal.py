"""Continuous WAL archiving (issue 14, item 2) with a real PostgreSQL whose ``archive_command`` is
``erpops wal push``: segments land compressed under ``<env>/wal/<timeline>/`` named with their
SHA-256, ``wal status`` reports the newest and its age (JSON, Prometheus, exit 1 when stale),
``wal fetch`` gives back exactly what was archived and refuses a corrupted object with exit 126; a
second push of the same segment succeeds, one with different content fails; a push killed -9
never leaves anything that is listed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import yaml
import zstandard

from tests.fixtures.archiving import Archiving


def _switch(a: Archiving) -> str:
    """Write something, switch to a new segment; the name of the one just finished."""
    a.sql("CREATE TABLE IF NOT EXISTS t (id serial, at timestamptz DEFAULT clock_timestamp())")
    a.sql("INSERT INTO t DEFAULT VALUES")
    ((name,),) = a.sql("SELECT pg_walfile_name(pg_switch_wal())")
    return str(name)


def test_archive_command_stores_segments_and_status_fetch_and_refusals(archiving: Archiving) -> None:
    a = archiving
    names = [_switch(a) for _ in range(3)]
    a.wait_archived(names[-1])
    folder = a.store / "w" / "wal" / "00000001"
    stored = sorted(p.name for p in folder.iterdir())
    for name in names:
        (key,) = [s for s in stored if s.startswith(name + "-")]
        data = zstandard.ZstdDecompressor().decompress((folder / key).read_bytes(), max_output_size=1 << 30)
        assert len(data) == 16 * 1024 * 1024 and key == f"{name}-{hashlib.sha256(data).hexdigest()}.zst"

    status = a.erpops("wal", "status", "--env", "w", "--json", "--metrics-file", str(a.root / "wal.prom"))
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["newest"] == max(s.split("-")[0] for s in stored) and report["ok"] is True
    assert 0 <= report["age_seconds"] < 60 and report["timelines"] == [1]
    assert report["archiver"]["archive_mode"] == "on" and report["archiver"]["failing"] is False
    prom = (a.root / "wal.prom").read_text()
    assert 'erpops_wal_archive_ok{environment="w"} 1' in prom and "erpops_wal_newest_archived_age_seconds{" in prom

    # fetch: exactly what was archived; the end of the archive is exit 1
    out = a.root / "fetched" / names[0]
    out.parent.mkdir()
    got = a.erpops("wal", "fetch", "--env", "w", names[0], str(out))
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() in next(s for s in stored if s.startswith(names[0]))
    assert a.erpops("wal", "fetch", "--env", "w", "0000000100000000000000FF", str(a.root / "none")).returncode == 1
    assert not (a.root / "none").exists()

    # the same segment pushed again: success; a different file of that name: refused, nothing overwritten
    again = a.erpops("wal", "push", "--env", "w", str(out))
    assert again.returncode == 0 and "archived already" in again.stderr, again.stderr
    forged = a.root / "forge" / names[0]
    forged.parent.mkdir()
    forged.write_bytes(b"\0" * 1024)
    refused = a.erpops("wal", "push", "--env", "w", str(forged))
    assert refused.returncode == 1 and "different content" in refused.stderr, refused.stderr
    assert sorted(p.name for p in folder.iterdir()) == stored

    # a corrupted object: refused with 126 (PostgreSQL then stops its recovery), nothing written
    victim = folder / next(s for s in stored if s.startswith(names[1]))
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    bad = a.erpops("wal", "fetch", "--env", "w", names[1], str(a.root / "bad"))
    assert bad.returncode == 126 and "corrupt" in bad.stderr, bad.stderr
    assert not (a.root / "bad").exists()


def test_status_is_a_warning_when_the_archive_is_stale_or_empty(archiving: Archiving) -> None:
    a = archiving
    empty = a.erpops("wal", "status", "--env", "w")
    assert empty.returncode == 1 and "nothing is archived" in empty.stdout, empty.stdout + empty.stderr
    name = _switch(a)
    a.wait_archived(name)
    raw = yaml.safe_load(a.config.read_text())
    raw["environments"]["w"]["backup"]["wal_max_age"] = "1s"
    a.config.write_text(yaml.safe_dump(raw))
    time.sleep(1.5)
    stale = a.erpops("wal", "status", "--env", "w")
    assert stale.returncode == 1 and "old (more than 1s)" in stale.stdout, stale.stdout
    check = a.erpops("env", "check", "--env", "w", "--json")
    rows = {r["target"]: r for r in map(json.loads, check.stdout.splitlines())}
    assert rows["wal archive"]["status"] == "warning" and "archiving is behind" in rows["wal archive"]["detail"]
    assert check.returncode == 0, check.stdout + check.stderr  # a warning, not an unreachable target


def test_a_push_killed_midway_leaves_nothing_listed(archiving: Archiving) -> None:
    a = archiving
    segment = a.root / "spool" / "000000010000000000000042"
    segment.parent.mkdir()
    segment.write_bytes(os.urandom(16 * 1024 * 1024))  # incompressible: the push takes a while
    argv = [sys.executable, "-m", "erpops", "wal", "push", "--config", str(a.config), "--env", "w", str(segment)]
    for delay in (0.3, 0.5, 0.7, 0.9):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        listed = a.erpops("wal", "status", "--env", "w", "--json")
        report = json.loads(listed.stdout)
        if report["segments"]:  # finished before the kill: whole and right
            got = a.erpops("wal", "fetch", "--env", "w", segment.name, str(a.root / "check"))
            assert got.returncode == 0 and (a.root / "check").read_bytes() == segment.read_bytes()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
