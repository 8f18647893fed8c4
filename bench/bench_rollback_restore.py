"""``erpops rollback --restore-backup`` on the real Docker engine and a seeded Odoo-shaped database
(embedded PostgreSQL, local object store). Prints figures; it is not a test.

1. v1 then v2 deployed with pre-deploy backups; ``erpops rollback --restore-backup`` back to v1.
   Reported: the whole run, what ran while the application still served (fetch + checksum +
   restore into the new database, verification against the manifest), and the time it was down
   (services stopped, database swapped, services started, health gate passed).
2. Reference in the same invocation: the same restore done by hand from the same backup with the
   stock tools (``zstd -d`` the dump to a file, then ``pg_restore -j2`` into a new database beside
   ``zstd -dc | tar -x`` of the filestore) — ratio of erpops's restore step to it.
3. The rollback without ``--restore-backup`` (images only, rolling, no downtime) for scale.

    uv run python bench/bench_rollback_restore.py [--scale 1]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.docker import build_images, cleanup, docker_environment, engine_client, free_port  # noqa: E402

DOWN = ("stop", "swap", "start", "gate")


def erpops(cli_env: dict[str, str], name: str, *args: str) -> tuple[float, dict[str, float], dict[str, Any]]:
    """Run ``erpops ARGS --env NAME --json``; wall seconds, step durations, run outputs."""
    exe = str(Path(sys.executable).parent / "erpops")
    t = time.perf_counter()
    res = subprocess.run([exe, *args, "--env", name, "--json", "--yes"], env=cli_env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"erpops {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr}")
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    steps = {e["step"]: float(e.get("duration") or 0) for e in events if e.get("event") == "step.finished"}
    outputs = next(e for e in events if e.get("event") == "run.finished").get("outputs") or {}
    return wall, steps, outputs


def by_hand(server: str, backup_dir: Path, scratch: Path) -> float:
    """zstd -d the dump, then pg_restore -j2 into a new database beside unpacking the filestore."""
    from erpops.backends.postgres import client as pg

    with pg.connect(server) as conn:
        pg_restore = str(pg.client_for(conn, "pg_restore").path)
        conn.execute("CREATE DATABASE by_hand")
    scratch.mkdir(parents=True)
    (scratch / "fs").mkdir()
    t = time.perf_counter()
    subprocess.run(
        ["zstd", "-q", "-d", "-f", str(backup_dir / "db.dump.zst"), "-o", str(scratch / "db.dump")], check=True
    )
    unzstd = subprocess.Popen(["zstd", "-dc", str(backup_dir / "filestore.tar.zst")], stdout=subprocess.PIPE)
    tar = subprocess.Popen(["tar", "-x", "-C", str(scratch / "fs")], stdin=unzstd.stdout)
    assert unzstd.stdout is not None
    unzstd.stdout.close()  # tar owns the read end
    subprocess.run(
        [pg_restore, "--no-owner", "--no-acl", "--exit-on-error", "-j2", "-d", "by_hand", str(scratch / "db.dump")],
        env={**os.environ, **pg.libpq_env(server, "by_hand")},
        check=True,
    )
    assert tar.wait() == 0 and unzstd.wait() == 0
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="seed scale (1 = the sandbox's database)")
    args = ap.parse_args()

    import yaml

    from erpops.backends.odoo import seed
    from erpops.backends.postgres import local_server as pgserver

    client = engine_client()
    prefix = f"erpops-b{secrets.token_hex(3)}"
    repo = f"{prefix}-odoo"
    build_images(client, repo)
    v1, v2 = f"{repo}:healthy-v1", f"{repo}:healthy-v2"

    class Images:
        healthy, front = v1, f"{repo}:front"

    tmp = Path(tempfile.mkdtemp(prefix="erpops-bench-", dir="/tmp"))
    try:
        info = pgserver.start_primary(tmp / "pg", port=free_port(), sync=False)
        server = info.dsn("postgres")
        filestore = tmp / "data" / "filestore" / "shop"
        seeded = seed.seed(server, "shop", filestore, scale=args.scale)
        name = f"{prefix}-rb"
        raw = docker_environment(name, Images)  # type: ignore[arg-type]  # the bench's own image names, shaped like an ImageSet
        raw["database"] = {"dsn": server, "name": "shop"}
        raw["storage"] = {"url": f"file://{tmp / 'storage'}"}
        raw["odoo"]["filestore"] = str(filestore)
        (tmp / "erpops.yaml").write_text(yaml.safe_dump({"environments": {name: raw}}))
        cli_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cli_env |= {"ERPOPS_CONFIG": str(tmp / "erpops.yaml"), "ERPOPS_STATE": f"sqlite:///{tmp}/s.db",
                    "ERPOPS_SCRATCH_DIR": str(tmp / "scratch")}  # fmt: skip
        migrate = ("--param", "migrate_command=/bin/migrate")
        erpops(cli_env, name, "deploy", "--image", v1, *migrate)
        erpops(cli_env, name, "deploy", "--image", v2, *migrate)

        wall, steps, out = erpops(cli_env, name, "rollback", "--restore-backup")
        serving = steps["restore"] + steps["verify"]
        down = sum(steps[s] for s in DOWN)
        backup_dir = tmp / "storage" / name / out["restored_backup"]
        hand = by_hand(server, backup_dir, tmp / "by-hand")

        erpops(cli_env, name, "deploy", "--image", v2, "--skip-backup", *migrate)
        plain, _, _ = erpops(cli_env, name, "rollback")

        size = sum(f.stat().st_size for f in backup_dir.iterdir())
        print(
            f"seeded database at scale {args.scale:g}: {seeded.db_size_bytes / 1e6:.0f} MB, "
            f"{seeded.files} filestore files; backup {size / 1e6:.1f} MB compressed"
        )
        print("erpops rollback --restore-backup (release v2 -> v1, its database and filestore back):")
        print(f"  whole run                          {wall:6.2f} s")
        print(f"  while the application served      {serving:6.2f} s  (restore {steps['restore']:.2f}, "
              f"verify {steps['verify']:.2f})")  # fmt: skip
        parts = ", ".join(f"{s} {steps[s]:.2f}" for s in DOWN)
        print(f"  application down                   {down:6.2f} s  ({parts})")
        ratio = steps["restore"] / hand
        print(f"  restore step vs by hand            {steps['restore']:6.2f} s vs {hand:.2f} s   ratio {ratio:4.2f}x")
        print(f"erpops rollback (images only, rolling, no downtime): {plain:6.2f} s")
    finally:
        cleanup(client, prefix, repo)
        client.close()
        from erpops.backends.postgres import local_server as pgserver

        pgserver.destroy(tmp / "pg")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
