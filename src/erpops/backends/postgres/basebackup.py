"""Physical base backups: ``pg_basebackup`` in tar format to stdout, streamed into the object store.

``pg_basebackup -Ft -D - -X fetch -c fast`` writes the whole cluster
as one tar on stdout: the data directory, the WAL the backup needs to be consistent (fetched at its
end, so the backup restores on its own, without the archive) and PostgreSQL's ``backup_manifest``
as the last member (what ``pg_verifybackup`` checks). erpops reads that stream once: it is
zstd-compressed into the store (SHA-256 on the way), and on the way the small members erpops
records — ``backup_label`` (start LSN, timeline, start time) and ``backup_manifest`` (its WAL range:
the LSN the copy is consistent at) — are picked out of the tar as it passes (:class:`TarSniffer`).

A physical backup is of the whole server (every database), as pgBackRest's or Barman's are; the
role needs ``REPLICATION`` (or superuser). Nothing is staged on local disk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from erpops.backends.postgres import client as pg
from erpops.backends.storage.base import ObjectStore, Retention
from erpops.backends.streams import Child, compress
from erpops.errors import PermanentError
from erpops.manifest import Artifact

BLOCK = 512
#: The tar members erpops reads on the way (small text files).
WANTED = ("backup_label", "backup_manifest")


class TarSniffer:
    """Follows a tar stream block by block as it is read and keeps the bytes of the members named
    in ``wanted`` (ustar headers with GNU base-256 sizes, pax headers skipped)."""

    def __init__(self, wanted: tuple[str, ...] = WANTED, limit: int = 64 * 1024 * 1024) -> None:
        self.wanted = set(wanted)
        self.limit = limit
        self.members: dict[str, bytes] = {}
        self.count = 0
        self.ended = False
        self._buf = bytearray()
        self._left = 0  # bytes of the current member's data (with padding) still to come
        self._size = 0  # the current member's real size
        self._name: str | None = None  # the current member, when wanted
        self._data = bytearray()

    def feed(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while len(view) and not self.ended:
            if self._left:
                take = min(self._left, len(view))
                if self._name is not None:
                    keep = max(0, min(take, self._size - len(self._data)))
                    self._data += view[:keep]
                self._left -= take
                view = view[take:]
                if not self._left and self._name is not None:
                    self.members[self._name] = bytes(self._data)
                    self._name = None
                continue
            need = BLOCK - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if len(self._buf) == BLOCK:
                self._header(bytes(self._buf))
                self._buf.clear()

    def _header(self, block: bytes) -> None:
        if block == bytes(BLOCK):
            self.ended = True  # the end-of-archive marker (two zero blocks; one is enough here)
            return
        name = block[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if block[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        size_field = block[124:136]
        if size_field[0] & 0x80:  # GNU base-256 for members of 8 GiB and more
            size = int.from_bytes(size_field[1:], "big")
        else:
            text = size_field.split(b"\0", 1)[0].strip() or b"0"
            size = int(text, 8)
        self.count += 1
        self._size = size
        self._left = (size + BLOCK - 1) // BLOCK * BLOCK
        name = name.removeprefix("./")
        wanted = name in self.wanted and block[156:157] in (b"0", b"\0") and size <= self.limit
        self._name = name if wanted else None
        self._data = bytearray()
        if wanted and size == 0:
            self.members[name] = b""
            self._name = None


class _Tee:
    """A reader that hands what it reads to a :class:`TarSniffer` too."""

    def __init__(self, raw: IO[bytes], sniffer: TarSniffer) -> None:
        self.raw, self.sniffer = raw, sniffer

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.sniffer.feed(data)
        return data


@dataclass
class Label:
    """What ``backup_label`` and ``backup_manifest`` say about a base backup."""

    start_lsn: str
    stop_lsn: str
    timeline: int
    start_wal: str  # the first WAL segment the backup needs
    start_time: datetime
    label: str
    system_identifier: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_label(label: bytes, manifest: bytes) -> Label:
    """The LSNs and timeline of a base backup from its ``backup_label`` and ``backup_manifest``."""
    text = label.decode()
    start = re.search(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$", text, re.MULTILINE)
    timeline = re.search(r"^START TIMELINE: (\d+)$", text, re.MULTILINE)
    when = re.search(r"^START TIME: (.+)$", text, re.MULTILINE)
    if not (start and timeline and when):
        raise PermanentError(f"pg_basebackup's backup_label is not as expected: {text[:300]!r}")
    try:
        doc = json.loads(manifest)
        ranges = doc["WAL-Ranges"]
    except (ValueError, KeyError) as exc:
        raise PermanentError(f"pg_basebackup's backup_manifest cannot be read: {exc}") from None
    stop = ranges[-1]["End-LSN"]
    started = datetime.strptime(when.group(1).strip(), "%Y-%m-%d %H:%M:%S %Z").replace(tzinfo=UTC)
    return Label(
        start_lsn=start.group(1),
        stop_lsn=stop,
        timeline=int(timeline.group(1)),
        start_wal=start.group(2),
        start_time=started,
        label=text,
        system_identifier=doc.get("System-Identifier"),
    )


@dataclass
class BaseBackup:
    artifact: Artifact
    manifest: Artifact
    label: Label
    client_version: str


def stream(
    store: ObjectStore,
    key: str,
    manifest_key: str,
    dsn: str,
    *,
    level: int,
    threads: int,
    retention: Retention | None,
    cancelled: Callable[[], bool],
    progress: Callable[[int], None] | None = None,
) -> BaseBackup:
    """Stream a base backup of the server ``dsn`` points at into ``key`` (zstd tar) and its
    ``backup_manifest`` into ``manifest_key``."""
    with pg.connect(dsn) as conn:
        tool = pg.client_for(conn, "pg_basebackup")
        row = conn.execute("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (row and row[0]):
            raise PermanentError(
                f"{pg.describe(dsn)}: the role cannot take a base backup",
                hint="a physical backup needs a role WITH REPLICATION (ALTER ROLE ... REPLICATION)",
            )
    # the manifest's file checksums are PostgreSQL's default (CRC32C): SHA-256 costs the server
    # seconds per GB, and the stored tar as a whole is SHA-256-checked by erpops anyway
    argv = [str(tool.path), "--format=tar", "--pgdata=-", "--wal-method=fetch", "--checkpoint=fast",
            "--no-password", f"--label=erpops {key}"]  # fmt: skip
    sniffer = TarSniffer()
    with (
        Child(argv, env=pg.libpq_env(dsn, None), stdout=True, name="pg_basebackup", watch=cancelled) as child,
        store.writer(key, retention) as writer,
    ):
        read = compress(
            _Tee(child.stdout, sniffer),  # type: ignore[arg-type]  # duck-typed: compress only calls read()
            writer, level=level, threads=threads, cancelled=cancelled, progress=progress,
        )  # fmt: skip
        child.finish(cancelled=cancelled, what="the base backup")
        missing = [m for m in WANTED if m not in sniffer.members]
        if missing:  # fails the writer: the object is not left looking whole
            raise PermanentError(f"pg_basebackup's output has no {', '.join(missing)}; not storing it")
    info = writer.info
    assert info is not None and info.sha256 is not None
    label = parse_label(sniffer.members["backup_label"], sniffer.members["backup_manifest"])
    stored = store.put_bytes(manifest_key, sniffer.members["backup_manifest"], retention)
    assert stored.sha256 is not None
    return BaseBackup(
        artifact=Artifact(
            key=key,
            size=info.size,
            sha256=info.sha256,
            compression="zstd",
            format="pg_basebackup-tar",
            uncompressed_size=read,
            files=sniffer.count,
        ),
        manifest=Artifact(
            key=manifest_key,
            size=stored.size,
            sha256=stored.sha256,
            compression="none",
            format="pg-backup-manifest",
            uncompressed_size=stored.size,
        ),
        label=label,
        client_version=tool.version_text,
    )
