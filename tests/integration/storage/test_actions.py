"""The storage.* actions called as the engine calls them: ``Action().apply(Params(...), ctx)``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from erpops.actions.base import Action, Change
from erpops.actions.storage import Delete, Get, List, Prune, Put, Verify
from erpops.backends.storage import ObjectLocked, Retention, open_store
from erpops.backends.storage.base import TMP_PREFIX
from erpops.backends.storage.catalog import Catalog
from erpops.environments import Environment, Storage
from erpops.errors import ExitCode, InvalidInput, PermanentError, TargetUnreachable
from erpops.manifest import VerifyMarker, object_key
from tests.fixtures.s3 import S3Server
from tests.integration.storage.helpers import (
    FakeCtx,
    bid,
    env_with,
    local_env,
    make_backup,
    mark_restore_tested,
    storage_of,
)


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_actions_are_registered() -> None:
    for name in ("storage.put", "storage.get", "storage.list", "storage.verify", "storage.delete", "storage.prune"):
        cls = Action._registry.get(name)  # registered on import (other families not needed)
        assert cls is not None and cls.__doc__ and "```yaml" in cls.__doc__


def test_importing_the_actions_imports_no_sdk() -> None:
    code = (
        "import sys, erpops.actions.storage; bad = [m for m in ('boto3', 'botocore') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_put_get_list_on_local_store(tmp_path: Path) -> None:
    ctx = FakeCtx(local_env(tmp_path / "store"))
    src = tmp_path / "report.json"
    src.write_bytes(b"x" * 300_000)
    plan = Put().plan(Put.Params(key="reports/r1.json", path=str(src)), ctx)
    assert plan.change == Change.WILL and "reports/r1.json" in plan.summary
    out = Put().apply(Put.Params(key="reports/r1.json", path=str(src)), ctx)
    assert out["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() and out["size"] == 300_000
    assert out["url"] == f"file://{tmp_path}/store/reports/r1.json" and out["retain_until"] is None
    assert ctx.progress_events and ctx.progress_events[-1][1] == 300_000

    dest = tmp_path / "back" / "r1.json"
    got = Get().apply(Get.Params(key="reports/r1.json", path=str(dest), sha256=out["sha256"]), ctx)
    assert dest.read_bytes() == src.read_bytes() and got["sha256"] == out["sha256"]
    with pytest.raises(PermanentError, match="expected"):
        Get().apply(Get.Params(key="reports/r1.json", path=str(dest), sha256="0" * 64), ctx)
    assert not dest.exists()
    with pytest.raises(PermanentError, match="no object"):
        Get().apply(Get.Params(key="reports/none.json", path=str(dest)), ctx)

    listed = List().apply(List.Params(prefix="reports/"), ctx)
    assert [o["key"] for o in listed["objects"]] == ["reports/r1.json"] and listed["count"] == 1
    assert List.read_only and List().plan(List.Params(), ctx).change == Change.NONE

    with pytest.raises(InvalidInput, match="not a file"):
        Put().apply(Put.Params(key="x", path=str(tmp_path / "missing")), ctx)
    with pytest.raises(InvalidInput, match="needs S3"):
        Put().apply(Put.Params(key="x", path=str(src), object_lock="compliance", retention_days=3), ctx)


def test_list_backups_and_newest(tmp_path: Path) -> None:
    ctx = FakeCtx(local_env(tmp_path))
    store = open_store(storage_of(ctx), lambda v: v)
    tested, complete, running = bid(3), bid(1), bid(0.01)
    make_backup(store, "prod", tested)
    mark_restore_tested(store, "prod", tested)
    make_backup(store, "prod", complete)
    make_backup(store, "prod", running, complete=False)
    out = List().apply(List.Params(), ctx)
    assert [b["backup_id"] for b in out["backups"]] == [running, complete, tested]
    assert [b["state"] for b in out["backups"]] == ["incomplete", "complete", "restore-tested"]
    assert out["newest_complete"] == complete
    assert out["newest_verified"] == tested and out["newest_restore_tested"] == tested
    json.dumps(out)  # outputs are JSON


def test_verify_detects_a_flipped_byte(tmp_path: Path) -> None:
    ctx = FakeCtx(local_env(tmp_path))
    store = open_store(storage_of(ctx), lambda v: v)
    good, bad = bid(2), bid(1)
    make_backup(store, "prod", good, size=50_000)
    make_backup(store, "prod", bad, size=50_000)

    out = Verify().apply(Verify.Params(key=f"prod/{good}/manifest.json"), ctx)
    assert out["ok"] is True and out["backup_id"] == good and out["bytes"] == 100_000
    assert {a["name"] for a in out["artifacts"]} == {"db", "filestore"}
    marker = VerifyMarker.from_json(store.get_bytes(object_key("prod", good, "verify.json")))
    assert marker.ok and marker.run_id == ctx.run.id

    _flip_byte(tmp_path / "prod" / bad / "filestore.tar.zst")
    with pytest.raises(PermanentError) as err:
        Verify().apply(Verify.Params(), ctx)  # newest complete backup: `bad`
    assert err.value.exit_code == ExitCode.STEP_FAILED
    assert "filestore" in str(err.value) and bad in str(err.value) and "sha256" in str(err.value)
    states = {e.backup_id: e.state for e in Catalog(store, "prod").list()}
    assert states == {good: "verified", bad: "corrupt"}
    assert Catalog(store, "prod").choose().backup_id == good  # a corrupt backup is never chosen

    with pytest.raises(InvalidInput):
        Verify().apply(Verify.Params(backup="not-an-id"), ctx)
    incomplete = bid(0.5)
    make_backup(store, "prod", incomplete, complete=False)
    with pytest.raises(PermanentError, match="incomplete"):
        Verify().apply(Verify.Params(backup=incomplete), ctx)


def test_verify_on_s3_reports_missing_artifact(s3_server: S3Server, s3_bucket: str) -> None:
    ctx = FakeCtx(env_with(s3_server.storage(s3_bucket, "backups")))
    store = open_store(storage_of(ctx), lambda v: v)
    b = bid(1)
    make_backup(store, "prod", b, size=10_000)
    assert Verify().apply(Verify.Params(backup=b), ctx)["ok"] is True
    assert Catalog(store, "prod").get(b).state == "verified"
    store.delete(object_key("prod", b, "db.dump.zst"))
    with pytest.raises(PermanentError, match=r"artifact db .* missing"):
        Verify().apply(Verify.Params(backup=b, write_marker=False), ctx)


def test_delete_object_backup_and_locked(s3_server: S3Server, s3_locked_bucket: str) -> None:
    ctx = FakeCtx(env_with(s3_server.storage(s3_locked_bucket, "bk")))
    store = open_store(storage_of(ctx), lambda v: v)
    one, two, locked = bid(3), bid(2), bid(1)
    for b in (one, two):
        make_backup(store, "prod", b)
    make_backup(store, "prod", locked, retention=Retention("compliance", 1))

    plan = Delete().plan(Delete.Params(backup=one), ctx)
    assert plan.change == Change.WILL and one in plan.summary
    assert Delete().apply(Delete.Params(backup=one), ctx)["count"] == 3
    out = Delete().apply(Delete.Params(key=f"prod/{two}/"), ctx)  # a backup prefix: the whole backup
    assert out["deleted"][0].endswith("manifest.json") and out["count"] == 3
    assert Delete().apply(Delete.Params(backup=two), ctx)["count"] == 0  # missing_ok
    with pytest.raises(PermanentError):
        Delete().apply(Delete.Params(backup=two, missing_ok=False), ctx)
    with pytest.raises(ObjectLocked, match="Object Lock") as err:
        Delete().apply(Delete.Params(backup=locked), ctx)
    assert err.value.exit_code == ExitCode.STEP_FAILED
    with pytest.raises(ObjectLocked):
        Delete().apply(Delete.Params(key=f"prod/{locked}/db.dump.zst"), ctx)
    for bad in ({}, {"key": "a", "backup": one}, {"key": "prod/"}, {"backup": "nope"}):
        with pytest.raises(InvalidInput):
            Delete().plan(Delete.Params(**bad), ctx)


def test_prune_plans_then_deletes_with_reasons(tmp_path: Path) -> None:
    ctx = FakeCtx(local_env(tmp_path))
    store = open_store(storage_of(ctx), lambda v: v)
    now = datetime.now(UTC)
    daily = [bid(d + 0.1, now=now, suffix=f"d{d:03d}") for d in range(5)]
    for b in daily:
        make_backup(store, "prod", b, size=100)
    old_incomplete = bid(3, now=now, suffix="i003")
    young_incomplete = bid(0.01, now=now, suffix="i000")
    make_backup(store, "prod", old_incomplete, complete=False, size=100)
    make_backup(store, "prod", young_incomplete, complete=False, size=100)
    # A verified backup older than the daily window stays (newest verified).
    verified = bid(10, now=now, suffix="v010")
    make_backup(store, "prod", verified, size=100)
    Verify().apply(Verify.Params(backup=verified), ctx)
    # Leftover of a killed upload, older than the grace period.
    leftover = tmp_path / "prod" / old_incomplete / f"{TMP_PREFIX}manifest.json-dead"
    leftover.write_bytes(b"partial")
    past = time.time() - 3 * 86400
    for f in (tmp_path / "prod" / old_incomplete).iterdir():  # the killed backup last wrote 3 days ago
        os.utime(f, (past, past))

    params = Prune.Params(daily=3, weekly=0, monthly=0, grace="1d")
    plan = Prune().plan(params, ctx)
    assert plan.change == Change.WILL
    doomed = {daily[3], daily[4], old_incomplete}
    assert all(b in plan.summary for b in doomed) and "3 of 8" in plan.summary
    assert len(Catalog(store, "prod").list()) == 8  # plan deleted nothing

    out = Prune().apply(params, ctx)
    assert {d["backup_id"] for d in out["deleted"]} == doomed
    kept = {d["backup_id"]: d["reasons"] for d in out["kept"]}
    assert set(kept) == {daily[0], daily[1], daily[2], young_incomplete, verified}
    assert "newest verified backup" in kept[verified]
    assert any("may be running" in r for r in kept[young_incomplete])
    assert out["failed"] == [] and out["policy"] == "3 daily"
    assert out["cleaned"] == [f"prod/{old_incomplete}/{leftover.name}"]
    assert not (tmp_path / "prod" / old_incomplete).exists()
    json.dumps(out)

    # nothing to delete now, but a backup made before the step runs may push one out: "may change"
    # (regression: the plan said "no change — keep all 1 backups" and the run deleted one)
    again = Prune().plan(params, ctx)
    assert again.change == Change.MAY and "applied again when the step runs" in again.summary
    with pytest.raises(InvalidInput):
        Prune().plan(Prune.Params(daily=0, weekly=0, monthly=0), ctx)


def test_prune_keeps_locked_backups_on_s3(s3_server: S3Server, s3_locked_bucket: str) -> None:
    ctx = FakeCtx(env_with(s3_server.storage(s3_locked_bucket, "bk")))
    store = open_store(storage_of(ctx), lambda v: v)
    newest, locked, old = bid(0.1), bid(5), bid(6)
    make_backup(store, "prod", newest)
    make_backup(store, "prod", locked, retention=Retention("governance", 2))
    make_backup(store, "prod", old)
    out = Prune().apply(Prune.Params(daily=1, weekly=0, monthly=0), ctx)
    assert [d["backup_id"] for d in out["deleted"]] == [old]
    kept = {d["backup_id"]: d["reasons"] for d in out["kept"]}
    assert any("but kept: under Object Lock retention" in r for r in kept[locked])
    assert {e.backup_id for e in Catalog(store, "prod").list()} == {newest, locked}


def test_put_with_environment_retention_on_s3(s3_server: S3Server, s3_locked_bucket: str, tmp_path: Path) -> None:
    storage = s3_server.storage(s3_locked_bucket, "bk", object_lock="compliance", retention_days=2)
    ctx = FakeCtx(env_with(storage))
    src = tmp_path / "f"
    src.write_bytes(b"data")
    out = Put().apply(Put.Params(key="prod/x/f", path=str(src)), ctx)
    until = datetime.fromisoformat(out["retain_until"])
    assert timedelta(days=1.9) < until - datetime.now(UTC) < timedelta(days=2.1)
    assert out["version_id"]
    none = Put().apply(Put.Params(key="prod/x/g", path=str(src), object_lock="none"), ctx)
    assert none["retain_until"] is None
    assert open_store(storage, lambda v: v).head("prod/x/g").retain_until is None  # type: ignore[union-attr]  # the object was just written: head finds it


def test_url_override_and_unreachable_storage(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    ctx = FakeCtx(Environment(name="prod"))  # no storage configured
    with pytest.raises(InvalidInput, match="no storage"):
        List().apply(List.Params(), ctx)
    other = tmp_path / "other"
    make_backup(open_store(Storage(url=str(other)), lambda v: v), "prod", bid(1))
    out = List().apply(List.Params(url=f"file://{other}"), ctx)
    assert out["count"] == 1
    s3 = List().apply(
        List.Params(url=f"s3://{s3_bucket}/p", endpoint=s3_server.endpoint),
        FakeCtx(env_with(s3_server.storage("some-other-bucket"))),
    )
    assert s3["count"] == 0

    down = FakeCtx(env_with(Storage(url="s3://b/p", endpoint="http://127.0.0.1:9", access_key="ak", secret_key="sk")))
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as err:
        Verify().apply(Verify.Params(), down)
    assert err.value.exit_code == ExitCode.UNREACHABLE and time.monotonic() - started < 3
    plan = Prune().plan(Prune.Params(), down)
    assert plan.change == Change.MAY and "cannot list" in plan.summary


def test_secret_references_go_through_ctx(s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPOPS_TEST_AK", s3_server.access_key)
    monkeypatch.setenv("ERPOPS_TEST_SK", "testing-secret-value")
    ctx = FakeCtx(
        env_with(s3_server.storage(s3_bucket, access_key="env:ERPOPS_TEST_AK", secret_key="env:ERPOPS_TEST_SK"))
    )
    assert List().apply(List.Params(prefix=""), ctx)["count"] == 0
    assert ctx.resolved == ["env:ERPOPS_TEST_AK", "env:ERPOPS_TEST_SK"]
    from erpops.secrets import redact

    assert redact("key testing-secret-value") == "key ***"


def test_delete_by_bare_prefix_uses_the_run_environment(tmp_path: Path) -> None:
    ctx = FakeCtx(local_env(tmp_path, name="staging"))
    store = open_store(storage_of(ctx), lambda v: v)
    b = bid(1)
    make_backup(store, "staging", b)
    make_backup(store, "prod", b)
    assert Delete().apply(Delete.Params(key=f"{b}/"), ctx)["count"] == 3
    assert [e.backup_id for e in Catalog(store, "prod").list()] == [b]
    assert Catalog(store, "staging").list() == []
