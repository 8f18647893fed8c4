"""The local-directory object store (``file:///var/backups/erp`` or a plain path).

Each object is a regular file under the root, named by its key. Writes go to a private temporary
file (mode 0600) in the target directory, are flushed to disk and renamed into place, so a reader
sees either the previous object or the complete new one — never half of it. Temporary files of a
killed upload are left behind under a ``.erpops-tmp-`` name, never listed, and removed by
:meth:`LocalStore.cleanup_partial` (``storage.prune`` calls it).

A directory cannot enforce Object Lock: asking for retention here is refused.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from erpops.backends.storage.base import (
    TMP_PREFIX,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    Retention,
    validate_key,
    validate_prefix,
)
from erpops.errors import InvalidInput, PermanentError, TargetUnreachable


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(ObjectWriter):
    def __init__(self, store: LocalStore, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._target = store.path_of(key)
        try:
            store.ensure_dir(self._target.parent)
            self._tmp = self._target.parent / f"{TMP_PREFIX}{self._target.name}-{secrets.token_hex(4)}"
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise store.os_error("write", key, exc) from None
        self._file = os.fdopen(fd, "wb", buffering=1024 * 1024)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._store.os_error("write", self.key, exc) from None

    def _finish(self, sha256: str) -> ObjectInfo:
        try:
            self._file.flush()
            if self._store.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self._target)
            if self._store.fsync:
                _fsync_dir(self._target.parent)
            st = self._target.stat()
        except OSError as exc:
            raise self._store.os_error("write", self.key, exc) from None
        return ObjectInfo(
            key=self.key, size=self.size, sha256=sha256, modified=datetime.fromtimestamp(st.st_mtime, UTC)
        )

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)


class LocalStore(ObjectStore):
    """Objects as files under ``root``. ``fsync`` (default on) makes a closed object durable."""

    supports_retention = False

    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.fsync = fsync

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def os_error(self, what: str, key: str, exc: OSError) -> Exception:
        where = self.location(key)
        if isinstance(exc, FileNotFoundError) and what != "write":
            return ObjectNotFound(f"no object {where}")
        if isinstance(exc, PermissionError | NotADirectoryError):
            return TargetUnreachable(
                f"cannot {what} {where}: {exc.strerror}", hint="check the storage path and its permissions"
            )
        return PermanentError(f"cannot {what} {where}: {exc.strerror}")

    def ensure_dir(self, path: Path) -> None:
        """Create ``path`` (and parents up to and including the root) with mode 0700."""
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            if p == p.parent:
                break
            p = p.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)

    def check(self) -> None:
        if self.root.is_dir():
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise TargetUnreachable(f"storage directory {self.root} is not writable")
            return
        if self.root.exists():
            raise TargetUnreachable(f"storage path {self.root} exists and is not a directory")
        # A missing root is created on the first write; its nearest existing parent must be writable.
        parent = self.root.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise TargetUnreachable(f"storage directory {self.root} does not exist and {parent} is not writable")

    def writer(self, key: str, retention: Retention | None = None, *, size: int | None = None) -> ObjectWriter:
        if retention is not None:
            raise InvalidInput(
                f"Object Lock retention needs S3 storage; {self.url} is a local directory",
                hint="remove object_lock/retention_days from the environment's storage",
            )
        return LocalWriter(self, key)

    def reader(self, key: str) -> IO[bytes]:
        path = self.path_of(key)
        try:
            return path.open("rb", buffering=1024 * 1024)
        except IsADirectoryError:
            raise ObjectNotFound(f"no object {self.location(key)}") from None
        except OSError as exc:
            raise self.os_error("read", key, exc) from None

    def _info(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.os_error("read", key, exc) from None
        if not path.is_file():
            return None
        return ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def head(self, key: str) -> ObjectInfo | None:
        return self._info(key, self.path_of(key))

    def _walk(self, prefix: str) -> list[tuple[str, Path]]:
        prefix = validate_prefix(prefix)
        # Start at the deepest directory fully named by the prefix.
        base_parts = prefix.split("/")[:-1] if prefix else []
        start = self.root.joinpath(*base_parts)
        try:
            if not start.is_dir():
                return []
        except OSError as exc:  # a folder this user may not enter (another user's 0700 store folder)
            raise self.os_error("list", prefix or ".", exc) from None
        found = []
        try:
            for dirpath, dirnames, filenames in os.walk(start, onerror=None):
                dirnames.sort()
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in sorted(filenames):
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        found.append((key, Path(dirpath) / name))
        except OSError as exc:
            raise self.os_error("list", prefix or ".", exc) from None
        return found

    def list(self, prefix: str = "", *, with_retention: bool = False) -> list[ObjectInfo]:
        out = []
        for key, path in self._walk(prefix):
            if path.name.startswith(TMP_PREFIX):
                continue
            info = self._info(key, path)
            if info is not None:
                out.append(info)
        return sorted(out, key=lambda i: i.key)

    def delete(self, key: str, *, bypass_governance: bool = False) -> bool:
        path = self.path_of(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self.os_error("delete", key, exc) from None
        self._remove_empty_dirs(path.parent)
        return True

    def _remove_empty_dirs(self, parent: Path) -> None:
        """Remove directories left empty, up to (not including) the root: S3 has no directories.
        A folder another user owns stays (the WAL archiver's ``<env>/wal``, which it must be able
        to write into again)."""
        while parent != self.root and self.root in parent.parents:
            try:
                if parent.stat().st_uid != os.geteuid():
                    break
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def cleanup_partial(self, prefix: str, older_than: datetime) -> builtins.list[str]:
        removed = []
        cutoff = older_than.timestamp()
        for key, path in self._walk(prefix):
            if not path.name.startswith(TMP_PREFIX):
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(key)
                    self._remove_empty_dirs(path.parent)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self.os_error("delete", key, exc) from None
        return removed
