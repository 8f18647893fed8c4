"""Streaming transfers to and from S3: the multipart writer and the resuming reader.

Part sizes keep an upload under S3's 10,000-part limit: for a known size
``max(8 MiB, ceil(size / 9000))``; for a stream of unknown size 8 MiB, doubling every 1,000 parts
(8 TiB reachable; S3's object limit is 5 TiB). At most ``concurrency`` parts are in flight while the
next one fills, so memory stays at a few parts whatever the object size.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from botocore.exceptions import ConnectionClosedError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError

from erpops.backends.storage.base import ObjectInfo, ObjectWriter, Retention, utcnow
from erpops.errors import ErpopsError, PermanentError, TargetUnreachable

T = TypeVar("T")


class TransferStore(Protocol):
    """What a multipart upload or a ranged download needs of its S3 store (``S3Store`` has it)."""

    bucket: str
    part_size: int
    parts_per_step: int
    concurrency: int
    part_attempts: int
    retry_backoff: float

    @property
    def client(self) -> Any: ...

    def full_key(self, key: str) -> str: ...

    def location(self, key: str) -> str: ...

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None: ...

    def lock_args(self, retention: Retention | None) -> dict[str, Any]: ...

    def call(self, what: str, key: str | None, fn: Callable[..., T], **kwargs: Any) -> T: ...

    def with_retries(
        self,
        what: str,
        key: str,
        fn: Callable[[], T],
        *,
        attempts: int | None = None,
        stop: threading.Event | None = None,
    ) -> T: ...


log = logging.getLogger("erpops.storage.s3")

MiB = 1024 * 1024
MIN_PART = 5 * MiB
DEFAULT_PART = 8 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
#: Parts aimed at when the size is known: leaves headroom under MAX_PARTS.
KNOWN_SIZE_PARTS = 9_000
#: Parts of one size before the part size doubles, when the size is unknown.
PARTS_PER_STEP = 1_000
_STREAM_ERRORS = (ReadTimeoutError, IncompleteReadError, ResponseStreamingError, ConnectionClosedError, OSError)


def part_size_for_size(size: int, base: int = DEFAULT_PART) -> int:
    """Part size for an upload of known ``size``: ``max(base, ceil(size / 9000))``."""
    return min(max(base, math.ceil(size / KNOWN_SIZE_PARTS)), MAX_PART)


def part_size_for_part(number: int, base: int = DEFAULT_PART, per_step: int = PARTS_PER_STEP) -> int:
    """Size of part ``number`` (1-based) of an upload of unknown size: doubles every ``per_step``."""
    return min(base << ((number - 1) // per_step), MAX_PART)


class S3Writer(ObjectWriter):
    def __init__(self, store: TransferStore, key: str, retention: Retention | None, size: int | None) -> None:
        super().__init__(key)
        self._store = store
        self._full_key = store.full_key(key)
        self._retention = retention
        self._lock_args = store.lock_args(retention)
        self._known_size = size
        self._fixed_part = part_size_for_size(size, store.part_size) if size is not None else None
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: dict[int, dict[str, Any]] = {}
        self._next_part = 1
        self._pending: list[Future[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()

    def _current_part_size(self) -> int:
        if self._fixed_part is not None:
            return self._fixed_part
        return part_size_for_part(self._next_part, self._store.part_size, self._store.parts_per_step)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            room = self._current_part_size() - len(self._buf)
            self._buf += view[:room]
            view = view[room:]
            if len(self._buf) >= self._current_part_size():
                self._flush_part()

    def _flush_part(self) -> None:
        if self._next_part > MAX_PARTS:
            raise PermanentError(f"upload of {self._store.location(self.key)} exceeds {MAX_PARTS} parts")
        if self._upload_id is None:
            resp = self._store.call(
                "start upload of",
                self.key,
                self._store.client.create_multipart_upload,
                Bucket=self._store.bucket,
                Key=self._full_key,
                ChecksumAlgorithm="SHA256",
                **self._lock_args,
            )
            self._upload_id = resp["UploadId"]
            self._pool = ThreadPoolExecutor(self._store.concurrency, thread_name_prefix="erpops-s3-part")
        part = bytes(self._buf)
        self._buf.clear()
        number = self._next_part
        self._next_part += 1
        # Bound memory: wait for the oldest upload when `concurrency` parts are in flight.
        while len(self._pending) >= self._store.concurrency:
            self._pending.pop(0).result()
        assert self._pool is not None
        self._pending.append(self._pool.submit(self._upload_part, number, part))

    def _upload_part(self, number: int, data: bytes) -> None:
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        resp = self._store.with_retries(
            f"upload part {number} of",
            self.key,
            lambda: self._store.client.upload_part(
                Bucket=self._store.bucket,
                Key=self._full_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=checksum,
            ),
            stop=self._stop,
        )
        self._parts[number] = {"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum}

    def _finish(self, sha256: str) -> ObjectInfo:
        client = self._store.client
        if self._upload_id is None:
            data = bytes(self._buf)
            self._buf.clear()
            resp = self._store.with_retries(
                "upload",
                self.key,
                lambda: client.put_object(
                    Bucket=self._store.bucket,
                    Key=self._full_key,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                    **self._lock_args,
                ),
            )
        else:
            if self._buf:
                self._flush_part()
            for fut in self._pending:
                fut.result()
            self._pending.clear()
            self._shutdown_pool()
            parts = [self._parts[n] for n in sorted(self._parts)]
            resp = self._store.with_retries(
                "complete upload of",
                self.key,
                lambda: client.complete_multipart_upload(
                    Bucket=self._store.bucket,
                    Key=self._full_key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        until = self._lock_args.get("ObjectLockRetainUntilDate")
        if until is not None and self._upload_id is not None:
            self._ensure_retention(resp.get("VersionId"), until)
        return ObjectInfo(
            key=self.key,
            size=self.size,
            sha256=sha256,
            modified=utcnow(),
            version_id=resp.get("VersionId"),
            etag=resp.get("ETag"),
            retain_until=until,
            lock_mode=self._retention.mode if self._retention else None,
        )

    def _ensure_retention(self, version_id: str | None, until: datetime) -> None:
        """Some S3-compatible servers ignore Object Lock headers on multipart uploads: check the
        stored object and set its retention explicitly when it is missing."""
        head = self._store.head(self.key, version_id=version_id)
        if head is not None and head.retain_until is not None and head.retain_until >= until - timedelta(seconds=1):
            return
        assert self._retention is not None
        args: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._full_key,
            "Retention": {"Mode": self._retention.mode.upper(), "RetainUntilDate": until},
        }
        if version_id:
            args["VersionId"] = version_id
        self._store.call("set Object Lock retention on", self.key, self._store.client.put_object_retention, **args)

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _abort(self) -> None:
        self._stop.set()
        self._buf = bytearray()
        for fut in self._pending:
            fut.cancel()
        self._shutdown_pool()
        self._pending.clear()
        if self._upload_id is None:
            return
        try:
            self._store.with_retries(
                "abort upload of",
                self.key,
                lambda: self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._full_key, UploadId=self._upload_id
                ),
                attempts=3,
            )
        except ErpopsError as exc:
            log.warning("could not abort multipart upload %s of %s: %s", self._upload_id, self.key, exc)


class S3Reader(io.RawIOBase):
    """A GET stream that resumes with a ranged GET (pinned to the same version) when it breaks."""

    def __init__(self, store: TransferStore, key: str) -> None:
        self._store = store
        self._key = key
        self._pos = 0
        resp = store.call("read", key, store.client.get_object, Bucket=store.bucket, Key=store.full_key(key))
        self._body = resp["Body"]
        self._version = resp.get("VersionId")
        self._etag = resp.get("ETag")
        self.size = int(resp.get("ContentLength", 0))
        #: How many times the stream broke and was resumed with a ranged GET.
        self.resumed = 0

    def readable(self) -> bool:
        return True

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        args: dict[str, Any] = {"Bucket": self._store.bucket, "Key": self._store.full_key(self._key)}
        args["Range"] = f"bytes={self._pos}-"
        self.resumed += 1
        if self._version and self._version != "null":
            args["VersionId"] = self._version
        elif self._etag:
            args["IfMatch"] = self._etag
        self._body = self._store.call("read", self._key, self._store.client.get_object, **args)["Body"]

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        if want == 0 or self._pos >= self.size:
            return 0
        for attempt in range(1, self._store.part_attempts + 1):
            try:
                data = self._body.read(want)
                if not data and self._pos < self.size:
                    raise IncompleteReadError(actual_bytes=self._pos, expected_bytes=self.size)
                break
            except _STREAM_ERRORS as exc:
                if attempt == self._store.part_attempts:
                    raise TargetUnreachable(
                        f"reading {self._store.location(self._key)} failed at byte {self._pos}: {exc}"
                    ) from None
                time.sleep(self._store.retry_backoff * 2 ** (attempt - 1))
                self._reopen()
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()
