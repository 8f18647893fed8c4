"""The object-store interface every backup goes through, and what both implementations share.

An :class:`ObjectStore` holds objects under ``/``-separated keys relative to its root (a local
directory or an S3 ``bucket/prefix``). Uploads stream: :meth:`ObjectStore.writer` returns an
:class:`ObjectWriter` that takes bytes as they come (from ``pg_dump`` through zstd, say), computes
their SHA-256 on the way and makes the object appear only when it is closed — an aborted or killed
upload never leaves a half-written object under its key.

```python
store = open_store(env.storage, ctx.resolve_secret)
with store.writer("prod/20261123T020000Z-ab12/db.dump.zst", retention=Retention("compliance", 30)) as w:
    for chunk in source:
        w.write(chunk)
print(w.info.sha256, w.info.size)
```
"""

from __future__ import annotations

import builtins
import hashlib
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from erpops.errors import InvalidInput, PermanentError
from erpops.files import atomic_file

CHUNK = 1024 * 1024
#: Name prefix of temporary files (local store); never listed, removed by ``cleanup_partial``.
TMP_PREFIX = ".erpops-tmp-"

Progress = Callable[[int], None]
LockMode = Literal["compliance", "governance"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ObjectNotFound(PermanentError):
    """The key does not exist in the store."""


class ObjectLocked(PermanentError):
    """The object is under Object Lock retention (or legal hold) and cannot be deleted yet."""


@dataclass(frozen=True)
class Retention:
    """Object Lock retention asked for on upload: ``mode`` for ``days`` from now."""

    mode: LockMode
    days: int

    def __post_init__(self) -> None:
        if self.mode not in ("compliance", "governance"):
            raise InvalidInput(f"Object Lock mode must be compliance or governance, not {self.mode!r}")
        if self.days < 1:
            raise InvalidInput(f"Object Lock retention must be at least 1 day, not {self.days}")

    def until(self, now: datetime | None = None) -> datetime:
        return (now or utcnow()) + timedelta(days=self.days)


@dataclass(frozen=True)
class ObjectInfo:
    """What is known about one stored object. ``sha256`` is set when it was computed (upload,
    download, :meth:`ObjectStore.sha256`); listing does not read objects."""

    key: str
    size: int
    sha256: str | None = None
    modified: datetime | None = None
    version_id: str | None = None
    etag: str | None = None
    retain_until: datetime | None = None
    lock_mode: str | None = None
    legal_hold: bool = False

    def locked(self, now: datetime | None = None) -> bool:
        """True while Object Lock forbids deleting this object."""
        if self.legal_hold:
            return True
        return self.retain_until is not None and self.retain_until > (now or utcnow())


def validate_key(key: str) -> str:
    """Refuse keys that could escape the store's root or that no S3 tool would show sanely."""
    if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/") or "\x00" in key:
        raise InvalidInput(f"bad object key {key!r}: expected a relative path like 'env/id/file'")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[-1].startswith(TMP_PREFIX):
        raise InvalidInput(f"bad object key {key!r}: empty, '.' or '..' parts are not allowed")
    return key


def validate_prefix(prefix: str) -> str:
    if prefix in ("", "/"):
        return ""
    validate_key(prefix.rstrip("/") or "x")
    return prefix


def join_key(prefix: str, key: str) -> str:
    return posixpath.join(prefix, key) if prefix else key


class ObjectWriter(ABC):
    """A streaming upload: ``write(bytes)`` as data comes, then ``close()`` (or leave the ``with``
    block) to publish the object, or ``abort()`` to drop it. Leaving the ``with`` block with an
    exception aborts. SHA-256 and size are computed while streaming.

    ``close()`` publishes: wrappers that close their sink even on error must not be given the
    writer to close — e.g. ``zstandard``'s ``stream_writer(w, closefd=False)``, then let this
    writer's own ``with`` block decide between close and abort."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.size = 0
        self._hash = hashlib.sha256()
        self._closed = False
        self.info: ObjectInfo | None = None

    # file-like surface (enough for shutil.copyfileobj, tarfile "w|", zstandard stream_writer)
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        return None

    def tell(self) -> int:
        return self.size

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError(f"write to closed object writer for {self.key}")
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if n:
            self._hash.update(data)
            self._write(data)
            self.size += n
        return n

    def close(self) -> ObjectInfo:
        """Publish the object; returns its :class:`ObjectInfo` (also kept as ``self.info``)."""
        if self.info is not None:
            return self.info
        if self._closed:
            raise ValueError(f"object writer for {self.key} was aborted")
        self._closed = True
        try:
            self.info = self._finish(self._hash.hexdigest())
        except BaseException:
            self._abort()
            raise
        return self.info

    def abort(self) -> None:
        """Drop everything written; the key is left as it was before."""
        if self._closed:
            return
        self._closed = True
        self._abort()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @abstractmethod
    def _write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def _finish(self, sha256: str) -> ObjectInfo: ...

    @abstractmethod
    def _abort(self) -> None: ...


class ObjectStore(ABC):
    """One place holding objects: a local directory or an S3 bucket/prefix."""

    #: True when the store can keep objects under Object Lock retention.
    supports_retention: bool = False

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the store is, for messages (never holds a secret)."""

    def location(self, key: str) -> str:
        return join_key(self.url.rstrip("/"), key)

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`erpops.errors.TargetUnreachable` unless the store answers."""

    @abstractmethod
    def writer(self, key: str, retention: Retention | None = None, *, size: int | None = None) -> ObjectWriter:
        """A streaming writer for ``key``; ``size`` (when known) lets S3 pick its part size."""

    @abstractmethod
    def reader(self, key: str) -> IO[bytes]:
        """A streaming binary file object reading ``key``; raises :class:`ObjectNotFound`."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """What is known about ``key`` (retention included), or None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "", *, with_retention: bool = False) -> list[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted by key. ``with_retention`` also fills
        ``retain_until``/``lock_mode`` where the store has Object Lock (one request per object)."""

    @abstractmethod
    def delete(self, key: str, *, bypass_governance: bool = False) -> bool:
        """Delete ``key`` (every version of it on a versioned bucket). Returns False when it did not
        exist. Raises :class:`ObjectLocked` while the object is under retention."""

    @abstractmethod
    def cleanup_partial(self, prefix: str, older_than: datetime) -> builtins.list[str]:
        """Remove leftovers of uploads that were killed (temporary files, unfinished multipart
        uploads) started before ``older_than`` under ``prefix``. Returns what was removed."""

    # --- shared on top of the primitives ---------------------------------------------------------

    def put_file(
        self, key: str, path: str | Path, retention: Retention | None = None, *, progress: Progress | None = None
    ) -> ObjectInfo:
        """Upload a local file, streaming; returns size and SHA-256."""
        path = Path(path)
        try:
            src = path.open("rb")
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
        with src, self.writer(key, retention, size=path.stat().st_size) as w:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                w.write(chunk)
                if progress:
                    progress(w.size)
        assert w.info is not None
        return w.info

    def get_file(self, key: str, path: str | Path, *, progress: Progress | None = None) -> ObjectInfo:
        """Download ``key`` to ``path`` (mode 0600, via a temporary file renamed into place)."""

        digest = hashlib.sha256()
        size = 0
        with atomic_file(path, 0o600, prefix=TMP_PREFIX) as out, self.reader(key) as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if progress:
                    progress(size)
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), modified=utcnow())

    def sha256(self, key: str, *, progress: Progress | None = None) -> str:
        """SHA-256 (hex) of the object, computed by streaming it."""
        return self.digest(key, progress=progress)[0]

    def digest(self, key: str, *, progress: Progress | None = None) -> tuple[str, int]:
        """(SHA-256 hex, size in bytes) of the object, computed by streaming it."""
        digest = hashlib.sha256()
        size = 0
        with self.reader(key) as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                if progress:
                    progress(size)
        return digest.hexdigest(), size

    def put_bytes(self, key: str, data: bytes, retention: Retention | None = None) -> ObjectInfo:
        """Store a small object (markers, manifests) in one go."""
        with self.writer(key, retention, size=len(data)) as w:
            w.write(data)
        assert w.info is not None
        return w.info

    def get_bytes(self, key: str, *, limit: int = 16 * 1024 * 1024) -> bytes:
        """Read a small object whole; refuses objects bigger than ``limit``."""
        with self.reader(key) as src:
            data = src.read(limit + 1)
        if len(data) > limit:
            raise PermanentError(f"{self.location(key)} is larger than {limit} bytes; not reading it whole")
        return data

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        for info in self.list(prefix):
            yield info.key
