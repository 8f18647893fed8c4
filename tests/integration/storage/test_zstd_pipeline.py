"""The way the backup pipeline uses a store: a stream compressed by zstd straight into a writer."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import pytest
import zstandard

from erpops.backends.storage import ObjectStore, ObjectWriter, open_store
from erpops.backends.storage.local import LocalStore
from erpops.backends.storage.s3 import S3Store
from erpops.environments import Storage
from tests.fixtures.s3 import S3Server


def _binary(writer: ObjectWriter) -> IO[bytes]:
    """zstandard's stream_writer only calls write/flush on its target, which an ObjectWriter has."""
    return cast(IO[bytes], writer)


def _source(total: int) -> Iterator[bytes]:
    """Data that compresses about 2:1, like a pg_dump stream."""
    sent = 0
    while sent < total:
        chunk = (os.urandom(16384) * 2)[: total - sent]
        sent += len(chunk)
        yield chunk


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(Storage(url=f"file://{tmp_path}/store"), lambda v: v)
    server: S3Server = request.getfixturevalue("s3_server")
    request.getfixturevalue("s3_small_parts")
    bucket = server.new_bucket()
    return open_store(server.storage(bucket, "bk"), lambda v: v, part_size=64 * 1024)


def test_stream_through_zstd_and_back(store: ObjectStore) -> None:
    raw = hashlib.sha256()
    cctx = zstandard.ZstdCompressor(level=3, threads=2)
    with (
        store.writer("prod/20261123T020000Z-ab12/db.dump.zst") as w,
        cctx.stream_writer(_binary(w), closefd=False) as z,
    ):
        for chunk in _source(3 * 1024 * 1024):
            raw.update(chunk)
            z.write(chunk)
    assert w.info is not None and 0 < w.info.size < 3 * 1024 * 1024
    assert store.sha256("prod/20261123T020000Z-ab12/db.dump.zst") == w.info.sha256
    back = hashlib.sha256()
    with (
        store.reader("prod/20261123T020000Z-ab12/db.dump.zst") as r,
        zstandard.ZstdDecompressor().stream_reader(r) as z,
    ):
        for chunk in iter(lambda: z.read(1 << 20), b""):
            back.update(chunk)
    assert back.hexdigest() == raw.hexdigest()


def test_failure_inside_the_pipeline_leaves_nothing(store: ObjectStore) -> None:
    cctx = zstandard.ZstdCompressor(level=3)
    with (
        pytest.raises(RuntimeError, match="pg_dump exited 1"),
        store.writer("prod/x/db.dump.zst") as w,
        cctx.stream_writer(_binary(w), closefd=False) as z,
    ):
        for i, chunk in enumerate(_source(2 * 1024 * 1024)):
            z.write(chunk)
            if i == 40:
                raise RuntimeError("pg_dump exited 1")
    if isinstance(store, S3Store):
        assert w._upload_id is not None  # type: ignore[attr-defined]  # several parts had been sent
    assert store.head("prod/x/db.dump.zst") is None
    assert store.list("prod/") == []
    if isinstance(store, LocalStore):
        assert [p for p in store.root.rglob("*") if p.is_file()] == []  # no temporary file left
    else:
        assert isinstance(store, S3Store)
        assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
