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
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
import zstandard

from erpops.backends.postgres import local_server
from tests.fixtures.postgres import free_port


@dataclass
class Archiving:
    root: Path
    config: Path
    store: Path
    info: local_server.ServerInfo

    def erpops(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERPOPS_")}
        argv = [sys.executable, "-m", "erpops", *args, "--config", str(self.config)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)

    def sql(self, query: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.info.dsn(), autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def wait_archived(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (row,) = self.sql("SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver")
            if row[0] is not None and str(row[0]) >= name:
                return
            time.sleep(0.1)
        log = "\n".join(p.read_text()[-3000:] for p in (self.info.datadir / "log").glob("*") if p.is_file())
        raise AssertionError(f"{name} not archived within {timeout}s: {row}\n{log}")


@pytest.fixture
def archiving() -> Iterator[Archiving]:
    root = Path(tempfile.mkdtemp(prefix="erwal-", dir="/tmp"))
    root.chmod(0o755)  # the server's OS user runs archive_command: it reads the config, writes the store
    store = root / "store"
    store.mkdir(mode=0o777)
    store.chmod(0o777)
    config = root / "erpops.yaml"
    port = free_port()
    datadir = root / "data"
    env = {"database": {"dsn": f"postgresql://postgres@/postgres?host={datadir}&port={port}", "name": "postgres"},
           "storage": {"url": f"file://{store}"}, "backup": {"method": "physical", "wal_max_age": "1h"}}  # fmt: skip
    config.write_text(yaml.safe_dump({"environments": {"w": env}}))
    config.chmod(0o644)
    command = shlex.join([sys.executable, "-m", "erpops", "wal", "push", "--config", str(config), "--env", "w"])
    local_server.init_primary(datadir, port, sync=False)
    local_server.configure(datadir, {"archive_mode": "on", "archive_command": "'" + command + " %p'"})
    info = local_server.start(datadir)
    try:
        yield Archiving(root, config, store, info)
    finally:
        local_server.stop(datadir, mode="immediate")
        import shutil

        shutil.rmtree(root, ignore_errors=True)


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
