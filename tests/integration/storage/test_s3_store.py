"""The S3 store against a real S3 API server over HTTP (moto server mode)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from erpops.backends.storage import ObjectLocked, ObjectNotFound, Retention, open_store
from erpops.backends.storage.s3 import (
    DEFAULT_PART,
    MAX_PARTS,
    S3Store,
    part_size_for_part,
    part_size_for_size,
)
from erpops.environments import Storage
from erpops.errors import ExitCode, InvalidInput, TargetUnreachable
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.s3

KiB = 1024


def _store(server: S3Server, bucket: str, prefix: str = "backups", **tuning: object) -> S3Store:
    store = open_store(server.storage(bucket, prefix), lambda v: v, **tuning)
    assert isinstance(store, S3Store)
    return store


def _stream(store: S3Store, key: str, data: bytes, chunk: int = 3000, **kw: Any):
    with store.writer(key, **kw) as w:
        for i in range(0, len(data), chunk):
            w.write(data[i : i + chunk])
    return w.info


def _fail_uploads(store: S3Store, *, from_part: int, times: int | None = None) -> list[int]:
    """Make UploadPart requests for parts >= from_part fail with a dropped connection (``times``
    times, or always), by a hook on the client's send path; the server stays real."""
    calls: list[int] = []

    def hook(request, **kwargs):
        number = int(request.url.split("partNumber=")[1].split("&")[0])
        if number >= from_part and (times is None or len(calls) < times):
            calls.append(number)
            raise ConnectionClosedError(endpoint_url=request.url)
        return None

    store.client.meta.events.register("before-send.s3.UploadPart", hook)
    return calls


# --- part sizes (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, DEFAULT_PART),
        (100 * 1024 * 1024, DEFAULT_PART),
        (9_000 * DEFAULT_PART, DEFAULT_PART),
        (9_000 * DEFAULT_PART + 1, DEFAULT_PART + 1),
        (5 * 1024**4, -(-5 * 1024**4 // 9_000)),
    ],
)
def test_part_size_for_known_size(size: int, expected: int) -> None:
    part = part_size_for_size(size)
    assert part == expected
    assert -(-size // part) <= MAX_PARTS


def test_unknown_size_schedule_reaches_5_tib_within_10000_parts() -> None:
    total = sum(part_size_for_part(n) for n in range(1, MAX_PARTS + 1))
    assert total >= 5 * 1024**4
    assert part_size_for_part(1) == part_size_for_part(1000) == DEFAULT_PART
    assert part_size_for_part(1001) == 2 * DEFAULT_PART
    assert max(part_size_for_part(n) for n in range(1, MAX_PARTS + 1)) <= 5 * 1024**3


# --- round trips ------------------------------------------------------------------------------------


def test_small_object_round_trip_single_put(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    store = _store(s3_server, s3_bucket)
    data = os.urandom(10_000)
    info = _stream(store, "prod/x/manifest.json", data)
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    raw = s3_server.client().get_object(Bucket=s3_bucket, Key="backups/prod/x/manifest.json")["Body"].read()
    assert raw == data
    assert store.sha256("prod/x/manifest.json") == info.sha256
    out = tmp_path / "dl" / "m.json"
    got = store.get_file("prod/x/manifest.json", out)
    assert out.read_bytes() == data and got.sha256 == info.sha256
    assert out.stat().st_mode & 0o777 == 0o600
    head = store.head("prod/x/manifest.json")
    assert head is not None and head.size == len(data)
    assert store.head("prod/x/nothing") is None
    with pytest.raises(ObjectNotFound):
        store.reader("prod/x/nothing")


def test_multipart_upload_of_unknown_size_grows_parts(s3_server: S3Server, s3_bucket: str, s3_small_parts: int) -> None:
    store = _store(s3_server, s3_bucket, part_size=4 * KiB, parts_per_step=2)
    data = os.urandom(40 * KiB)
    info = _stream(store, "prod/b/db.dump.zst", data, chunk=1500)
    # parts: 4,4,8,8,16 KiB = 40 KiB -> 5 parts of growing size
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="backups/prod/b/db.dump.zst", PartNumber=3)
    assert head["PartsCount"] == 5
    assert head["ContentLength"] == 8 * KiB
    assert info.etag is not None and info.etag.strip('"').endswith("-5")
    assert store.sha256("prod/b/db.dump.zst") == hashlib.sha256(data).hexdigest() == info.sha256
    with store.reader("prod/b/db.dump.zst") as r:
        assert r.read() == data


def test_put_file_known_size_multipart(
    s3_server: S3Server, s3_bucket: str, s3_small_parts: int, tmp_path: Path
) -> None:
    store = _store(s3_server, s3_bucket, prefix="", part_size=5 * KiB)
    src = tmp_path / "f.bin"
    data = os.urandom(23 * KiB)
    src.write_bytes(data)
    seen: list[int] = []
    info = store.put_file("prod/f.bin", src, progress=seen.append)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert seen[-1] == len(data)
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="prod/f.bin", PartNumber=1)
    assert head["PartsCount"] == 5  # ceil(23/5)
    assert [o.key for o in store.list("prod/")] == ["prod/f.bin"]


def test_list_is_relative_to_prefix_and_paginates(s3_server: S3Server, s3_bucket: str) -> None:
    store = _store(s3_server, s3_bucket, prefix="deep/prefix")
    other = _store(s3_server, s3_bucket, prefix="deep/prefixother")
    for i in range(3):
        store.put_bytes(f"prod/a{i}", b"x" * i)
    other.put_bytes("prod/zzz", b"y")
    listed = store.list("prod/")
    assert [(o.key, o.size) for o in listed] == [("prod/a0", 0), ("prod/a1", 1), ("prod/a2", 2)]
    assert [o.key for o in store.list()] == ["prod/a0", "prod/a1", "prod/a2"]
    assert store.delete("prod/a1") is True
    assert store.delete("prod/a1") is False
    assert [o.key for o in store.list("prod/a")] == ["prod/a0", "prod/a2"]


# --- failures ---------------------------------------------------------------------------------------


def test_source_failure_mid_stream_aborts_multipart_upload(
    s3_server: S3Server, s3_bucket: str, s3_small_parts: int
) -> None:
    store = _store(s3_server, s3_bucket, part_size=4 * KiB)
    client = s3_server.client()
    with pytest.raises(RuntimeError, match="pg_dump died"), store.writer("prod/c/db.dump.zst") as w:
        w.write(os.urandom(10 * KiB))
        assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
        raise RuntimeError("pg_dump died")
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert store.head("prod/c/db.dump.zst") is None


def test_transient_part_failures_are_retried(s3_server: S3Server, s3_bucket: str, s3_small_parts: int) -> None:
    store = _store(s3_server, s3_bucket, part_size=4 * KiB, retry_backoff=0.01)
    calls = _fail_uploads(store, from_part=2, times=3)  # botocore tries twice, then our retry
    data = os.urandom(17 * KiB)
    info = _stream(store, "prod/d/db.dump.zst", data)
    assert len(calls) == 3
    assert store.sha256("prod/d/db.dump.zst") == info.sha256 == hashlib.sha256(data).hexdigest()


def test_persistent_part_failure_aborts_upload(s3_server: S3Server, s3_bucket: str, s3_small_parts: int) -> None:
    store = _store(s3_server, s3_bucket, part_size=4 * KiB, retry_backoff=0.01, part_attempts=3)
    calls = _fail_uploads(store, from_part=2)
    client = s3_server.client()
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as err:
        _stream(store, "prod/e/db.dump.zst", os.urandom(30 * KiB))
    assert time.monotonic() - started < 10
    assert "part 2" in str(err.value) and "s3://" in str(err.value)
    assert calls.count(2) == 6  # 3 attempts of ours x 2 tries of botocore
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert store.head("prod/e/db.dump.zst") is None


def test_unreachable_endpoint_is_reported_quickly() -> None:
    storage = Storage(url="s3://bucket/prefix", endpoint="http://127.0.0.1:9", access_key="k" * 8, secret_key="s" * 8)
    store = open_store(storage, lambda v: v)
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as err:
        store.list("prod/")
    assert err.value.exit_code == ExitCode.UNREACHABLE
    assert "127.0.0.1:9" in str(err.value) and "s" * 8 not in str(err.value)
    with pytest.raises(TargetUnreachable):
        store.put_bytes("prod/x", b"data")
    assert time.monotonic() - started < 3


@pytest.fixture
def unanswered_endpoint() -> Iterator[str]:
    """A local port whose accept queue is full: new connections hang until their connect timeout
    (what a firewalled or dead S3 host looks like)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    for c in [*fillers, srv]:
        c.close()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


def test_endpoint_that_does_not_answer_times_out_within_seconds(unanswered_endpoint: str) -> None:
    storage = Storage(url="s3://bucket", endpoint=unanswered_endpoint, access_key="kkkk", secret_key="ssss")
    store = open_store(storage, lambda v: v, connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="cannot reach S3"):
        store.check()
    assert time.monotonic() - started < 5


def test_endpoint_that_hangs_after_connecting_times_out(silent_endpoint: str) -> None:
    storage = Storage(url="s3://bucket", endpoint=silent_endpoint, access_key="kkkk", secret_key="ssss")
    store = open_store(storage, lambda v: v, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="cannot reach S3"):
        store.list("prod/")
    assert time.monotonic() - started < 5


def test_missing_bucket_is_unreachable(s3_server: S3Server) -> None:
    store = _store(s3_server, "no-such-bucket-here")
    with pytest.raises(TargetUnreachable, match="no-such-bucket-here"):
        store.list("prod/")
    with pytest.raises(TargetUnreachable, match="does not exist"):
        store.put_bytes("prod/x", b"abc")


def test_credentials_from_secret_references_and_chain(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEST_S3_KEY", s3_server.access_key)
    monkeypatch.setenv("TEST_S3_SECRET", s3_server.secret_key)
    resolved: list[str] = []

    def resolve(v: str) -> str:
        resolved.append(v)
        return os.environ[v.removeprefix("env:")]

    storage = s3_server.storage(s3_bucket, access_key="env:TEST_S3_KEY", secret_key="env:TEST_S3_SECRET")
    open_store(storage, resolve).put_bytes("a", b"1")
    assert resolved == ["env:TEST_S3_KEY", "env:TEST_S3_SECRET"]

    # No keys in the environment's storage: the standard AWS chain (environment variables).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    chain = Storage(url=f"s3://{s3_bucket}", endpoint=s3_server.endpoint, region="us-east-1")
    assert [o.key for o in open_store(chain, resolve).list()] == ["a"]

    # Nothing anywhere: a clear unreachable error, fast.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    with pytest.raises(TargetUnreachable, match="no AWS credentials"):
        open_store(chain, resolve).list()
    profiled = chain.model_copy(update={"profile": "nope"})
    with pytest.raises(TargetUnreachable, match="profile 'nope'"):
        open_store(profiled, resolve).list()
    with pytest.raises(InvalidInput):
        open_store(chain.model_copy(update={"access_key": "only-key"}), resolve)


# --- Object Lock ------------------------------------------------------------------------------------


def test_object_lock_retention_refuses_delete(s3_server: S3Server, s3_locked_bucket: str) -> None:
    store = _store(s3_server, s3_locked_bucket)
    info = store.put_bytes("prod/l/db.dump.zst", b"locked bytes", Retention("compliance", 3))
    assert info.retain_until is not None and info.lock_mode == "compliance"
    head = store.head("prod/l/db.dump.zst")
    assert head is not None and head.lock_mode == "compliance"
    assert head.retain_until is not None and head.retain_until > datetime.now(UTC) + timedelta(days=2)
    listed = store.list("prod/", with_retention=True)
    assert listed[0].locked()
    with pytest.raises(ObjectLocked, match="compliance retention until"):
        store.delete("prod/l/db.dump.zst")
    with pytest.raises(ObjectLocked):
        store.delete("prod/l/db.dump.zst", bypass_governance=True)
    # The object is still there, with no delete marker hiding it.
    assert store.get_bytes("prod/l/db.dump.zst") == b"locked bytes"


def test_governance_lock_can_be_bypassed_and_multipart_lock(
    s3_server: S3Server, s3_locked_bucket: str, s3_small_parts: int
) -> None:
    store = _store(s3_server, s3_locked_bucket, part_size=4 * KiB)
    _stream(store, "prod/g/db.dump.zst", os.urandom(9 * KiB), retention=Retention("governance", 1))
    head = store.head("prod/g/db.dump.zst")
    assert head is not None and head.lock_mode == "governance" and head.locked()
    with pytest.raises(ObjectLocked, match="governance"):
        store.delete("prod/g/db.dump.zst")
    assert store.delete("prod/g/db.dump.zst", bypass_governance=True) is True
    assert store.head("prod/g/db.dump.zst") is None
    versions = s3_server.client().list_object_versions(Bucket=s3_locked_bucket)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")


def test_delete_on_versioned_bucket_removes_every_version(s3_server: S3Server, s3_versioned_bucket: str) -> None:
    store = _store(s3_server, s3_versioned_bucket, prefix="")
    store.put_bytes("prod/v/verify.json", b"one")
    store.put_bytes("prod/v/verify.json", b"two")
    store.put_bytes("prod/v/verify.jsonx", b"keep me")
    assert store.delete("prod/v/verify.json") is True
    versions = s3_server.client().list_object_versions(Bucket=s3_versioned_bucket)
    assert [v["Key"] for v in versions.get("Versions", [])] == ["prod/v/verify.jsonx"]
    assert not versions.get("DeleteMarkers")


def test_retention_on_bucket_without_lock_is_a_clear_error(s3_server: S3Server, s3_bucket: str) -> None:
    store = _store(s3_server, s3_bucket)
    with pytest.raises(Exception, match=r"InvalidRequest.*ObjectLockConfiguration"):
        store.put_bytes("prod/x", b"abc", Retention("compliance", 1))


def test_cleanup_partial_aborts_stale_uploads(s3_server: S3Server, s3_bucket: str, s3_small_parts: int) -> None:
    store = _store(s3_server, s3_bucket, part_size=4 * KiB)
    w = store.writer("prod/k/db.dump.zst")
    w.write(os.urandom(5 * KiB))  # a backup killed after its first part: the upload stays open
    client = s3_server.client()
    assert len(client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]) == 1
    # moto reports every upload as initiated in 2010, so only the cutoff's effect can be checked.
    assert store.cleanup_partial("other/", datetime.now(UTC) + timedelta(seconds=5)) == []
    removed = store.cleanup_partial("prod/", datetime.now(UTC) + timedelta(seconds=5))
    assert len(removed) == 1 and removed[0].startswith("prod/k/db.dump.zst")
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


@pytest.mark.parametrize("versioned", [False, True])
def test_reader_resumes_after_the_connection_drops(s3_server: S3Server, versioned: bool) -> None:
    store = _store(s3_server, s3_server.new_bucket(versioned=versioned), retry_backoff=0.01)
    data = os.urandom(3 * 1024 * 1024 + 5)
    store.put_bytes("prod/r/db.dump.zst", data)
    with store.reader("prod/r/db.dump.zst") as r:
        first = r.read(100_000)
        r.raw._body._raw_stream.close()  # type: ignore[attr-defined]  # the connection drops mid-object
        rest = r.read()
        assert r.raw.resumed == 1  # type: ignore[attr-defined]  # the S3 reader's own counter
    assert first + rest == data


def test_server_gone_mid_upload_fails_cleanly(s3_server: S3Server, s3_bucket: str, s3_small_parts: int) -> None:
    """A second server over the same moto backend is stopped after the first part: the upload
    fails as unreachable after its retries; the unfinished upload (which could not be aborted
    while the server was away) is removed later by cleanup_partial, as prune does."""
    from moto.server import ThreadedMotoServer

    from tests.fixtures.s3 import _free_port

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    gone = S3Server(endpoint=f"http://127.0.0.1:{port}")
    store = _store(gone, s3_bucket, part_size=4 * KiB, retry_backoff=0.05)
    w = store.writer("prod/s/db.dump.zst")
    w.write(os.urandom(9 * KiB))  # two parts sent
    w._pending[-1].result()  # type: ignore[attr-defined]  # the S3 writer's in-flight parts
    server.stop()
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="cannot reach S3"), w:
        w.write(os.urandom(9 * KiB))
    assert time.monotonic() - started < 10
    main = _store(s3_server, s3_bucket)
    assert main.head("prod/s/db.dump.zst") is None
    assert len(main.cleanup_partial("prod/", datetime.now(UTC) + timedelta(seconds=5))) == 1
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


def test_bad_credentials_are_unreachable_without_leaking_them(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks credentials now
    storage = s3_server.storage(s3_bucket, access_key="AKIAWRONGWRONGWRONG1", secret_key="wrong-secret-value-123")
    store = open_store(storage, lambda v: v)
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="check credentials") as err:
        store.list("prod/")
    with pytest.raises(TargetUnreachable, match="check credentials"):
        store.put_bytes("prod/x", b"abc")
    assert time.monotonic() - started < 3
    assert "wrong-secret-value-123" not in str(err.value) and s3_bucket in str(err.value)
