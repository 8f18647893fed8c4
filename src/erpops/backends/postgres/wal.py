"""The WAL archive of an environment, in its object store (``backup.method: physical``).

Layout, one folder per timeline::

    <env>/wal/00000001/000000010000000000000003-<sha256>.zst   a segment, zstd-compressed
    <env>/wal/00000002/00000002.history-<sha256>.zst            a timeline history file
    <env>/wal/00000001/000000010000000000000005.partial-<sha256>.zst

The SHA-256 in the name is that of the file PostgreSQL gave (before compression), as pgBackRest
names its archive: the name says what the content must be, so a fetch checks it, and a second push
of the same segment is recognized without reading the stored one.

- :func:`push` (``archive_command = 'erpops wal push --env E %p'``) stores one file. The object
  appears whole or not at all (the store writes to a temporary name, or one S3 PUT), so a crash
  never leaves a half segment that looks whole. A segment already stored with the same content
  succeeds (PostgreSQL retries after a crash between our store and its bookkeeping); with
  different content it fails: two servers archive into one place, which must never be hidden.
- :func:`fetch` (what a restore uses) finds the segment, decompresses it and checks its SHA-256
  before the file is given to PostgreSQL (written to a temporary name, then renamed).
- :func:`listing` reads the archive once (one list per timeline folder).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from erpops.backends.storage.base import ObjectInfo, ObjectStore, utcnow
from erpops.errors import InvalidInput, PermanentError

FOLDER = "wal"
SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_NAME = re.compile(
    r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$"
)  # segment, partial segment, backup history file, timeline history file
_KEY = re.compile(r"^(?P<name>[0-9A-F.a-z]+)-(?P<sha>[0-9a-f]{64})\.zst$")
SEGMENT_SIZE = 16 * 1024 * 1024  # the default; a different wal_segment_size changes names per LSN


class WalMismatch(PermanentError):
    """A segment stored with different content, or one whose content is not what its name says."""


@dataclass(frozen=True)
class Archived:
    name: str
    sha256: str
    key: str
    size: int
    modified: datetime | None

    @property
    def timeline(self) -> int:
        return int(self.name[:8], 16)

    @property
    def is_segment(self) -> bool:
        return bool(SEGMENT.match(self.name))


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(f"{name!r} is not a WAL file name PostgreSQL archives (e.g. 000000010000000000000003)")
    return name


def folder(env: str, timeline: str | None = None) -> str:
    return f"{env}/{FOLDER}/" + (f"{timeline}/" if timeline else "")


def _timeline_of(name: str) -> str:
    return name[:8]


def key_of(env: str, name: str, sha256: str) -> str:
    return f"{folder(env, _timeline_of(name))}{name}-{sha256}.zst"


def _stored(store: ObjectStore, env: str, name: str) -> list[Archived]:
    prefix = f"{folder(env, _timeline_of(name))}{name}-"
    return [a for a in (_parse(o) for o in store.list(prefix)) if a is not None and a.name == name]


def _parse(info: ObjectInfo) -> Archived | None:
    m = _KEY.match(info.key.rsplit("/", 1)[-1])
    if not m or not _NAME.match(m.group("name")):
        return None  # not ours (a temporary file, something else): never listed
    return Archived(m.group("name"), m.group("sha"), info.key, info.size, info.modified)


@dataclass(frozen=True)
class Pushed:
    name: str
    key: str
    size: int
    stored: int
    already: bool


def push(store: ObjectStore, env: str, path: Path, *, level: int = 1) -> Pushed:
    """Archive the WAL file at ``path`` (its name is the WAL file name)."""
    import zstandard

    name = check_name(path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PermanentError(f"cannot read {path}: {exc.strerror}") from None
    sha = hashlib.sha256(data).hexdigest()
    for found in _stored(store, env, name):
        if found.sha256 == sha:
            return Pushed(name, found.key, len(data), found.size, already=True)
        raise WalMismatch(
            f"{name} is archived already with different content ({found.key}): two servers may be archiving "
            f"into {store.location(folder(env))}; nothing was overwritten",
            hint="make sure only the environment's primary archives here (archive_command on one server)",
        )
    packed = zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)
    info = store.put_bytes(key_of(env, name, sha), packed)
    return Pushed(name, info.key, len(data), info.size, already=False)


def find(store: ObjectStore, env: str, name: str) -> Archived | None:
    found = _stored(store, env, check_name(name))
    return found[0] if found else None


def fetch(store: ObjectStore, archived: Archived, dest: Path) -> int:
    """Write ``archived`` decompressed to ``dest`` (checked against the SHA-256 in its name, then
    renamed into place); returns its size. :class:`WalMismatch` when it is not what it should be."""
    import zstandard

    raw = store.get_bytes(archived.key, limit=1024 * 1024 * 1024)
    try:
        data = zstandard.ZstdDecompressor().decompress(raw, max_output_size=1024 * 1024 * 1024)
    except zstandard.ZstdError as exc:
        raise WalMismatch(f"{archived.name} ({archived.key}) is corrupt: {exc}") from None
    if hashlib.sha256(data).hexdigest() != archived.sha256:
        raise WalMismatch(f"{archived.name} ({archived.key}) is corrupt: its SHA-256 is not the one it was stored with")
    tmp = dest.with_name(f".{dest.name}.erpops-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return len(data)


def listing(store: ObjectStore, env: str) -> list[Archived]:
    """Everything archived for ``env``, by name (timelines in order)."""
    found = [a for a in (_parse(o) for o in store.list(folder(env))) if a is not None]
    return sorted(found, key=lambda a: (a.name[:8], a.name))


def segment_number(name: str) -> int:
    """The segment's position in the WAL (log * 256 + seg, for 16 MB segments), any timeline."""
    m = SEGMENT.match(name[:24])
    if not m:
        raise ValueError(name)
    return int(m.group(2), 16) * 0x100000000 // SEGMENT_SIZE + int(m.group(3), 16)


def segment_name(timeline: int, number: int) -> str:
    per_log = 0x100000000 // SEGMENT_SIZE
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def lsn_segment(lsn: str) -> int:
    """The number of the segment holding ``lsn`` (``16/B374D848``)."""
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    return ((hi << 32) | lo) // SEGMENT_SIZE


@dataclass(frozen=True)
class Status:
    newest: Archived | None
    age_seconds: float | None
    segments: int
    timelines: list[int]
    size: int


def status(store: ObjectStore, env: str) -> Status:
    archive = listing(store, env)
    segments = [a for a in archive if a.is_segment]
    newest = max(segments, key=lambda a: (a.name[8:], a.name[:8]), default=None)
    age = (utcnow() - newest.modified).total_seconds() if newest is not None and newest.modified else None
    return Status(
        newest=newest,
        age_seconds=round(age, 3) if age is not None else None,
        segments=len(segments),
        timelines=sorted({a.timeline for a in archive}),
        size=sum(a.size for a in archive),
    )


@dataclass(frozen=True)
class Pruned:
    deleted: list[str]
    locked: list[str]


def prune(store: ObjectStore, env: str, keep_from: str) -> Pruned:
    """Delete archived WAL older than segment ``keep_from`` (the first segment the oldest kept base
    backup needs), on every timeline; history files stay (a few bytes each, and every later
    timeline's replay reads them). What Object Lock still protects is left and reported."""
    from erpops.backends.storage.base import ObjectLocked

    first = segment_number(keep_from)
    deleted, locked = [], []
    for a in listing(store, env):
        if a.name.endswith(".history") or segment_number(a.name[:24]) >= first:
            continue
        try:
            store.delete(a.key)
        except ObjectLocked:
            locked.append(a.name)
            continue
        deleted.append(a.name)
    return Pruned(deleted, locked)
