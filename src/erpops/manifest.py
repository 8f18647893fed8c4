"""The backup manifest, backup ids and where a backup's objects live.

A backup of environment ``prod`` is a folder of objects under the environment's storage prefix::

    prod/20261123T020000Z-ab12/db.dump.zst         pg_dump custom format, zstd-compressed
    prod/20261123T020000Z-ab12/filestore.tar.zst   the Odoo filestore as a tar, zstd-compressed
    prod/20261123T020000Z-ab12/manifest.json       written last: without it the backup is incomplete
    prod/20261123T020000Z-ab12/verify.json         written by storage.verify (checksums re-read)
    prod/20261123T020000Z-ab12/restore-test.json   written by a successful restore drill

Backup ids are UTC timestamps with a short random suffix, so they sort by time. The manifest
says everything needed to restore by hand with the object store's own client, ``zstd``,
``pg_restore`` and ``tar`` (see ``restore_commands``)::

    aws s3 cp s3://erp-backups/prod/20261123T020000Z-ab12/db.dump.zst - | zstd -d \\
        | pg_restore --no-owner -d odoo_restored
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from erpops.errors import PermanentError, validation_message

FORMAT_VERSION = 1

DB_DUMP = "db.dump.zst"
BASE_BACKUP = "base.tar.zst"
PG_BACKUP_MANIFEST = "backup_manifest"
FILESTORE = "filestore.tar.zst"
MANIFEST = "manifest.json"
VERIFY_MARKER = "verify.json"
RESTORE_TEST_MARKER = "restore-test.json"
MARKERS = (VERIFY_MARKER, RESTORE_TEST_MARKER)

_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-z]{4,12})$")
_ID_TIME = "%Y%m%dT%H%M%SZ"


class InvalidManifest(PermanentError):
    """A manifest or marker object that cannot be read (corrupt, or from a newer erpops)."""


# --- backup ids and keys ---------------------------------------------------------------------------


def new_backup_id(now: datetime | None = None) -> str:
    """A sortable UTC id such as ``20261123T020000Z-ab12``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now.strftime(_ID_TIME)}-{secrets.token_hex(2)}"


def is_backup_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def backup_time(backup_id: str) -> datetime:
    """When the backup with this id started (UTC)."""
    m = _ID_RE.match(backup_id)
    if not m:
        raise ValueError(f"not a backup id: {backup_id!r} (expected like 20261123T020000Z-ab12)")
    return datetime.strptime(m.group(1), _ID_TIME).replace(tzinfo=UTC)


def env_prefix(environment: str) -> str:
    return f"{environment}/"


def backup_prefix(environment: str, backup_id: str) -> str:
    return f"{environment}/{backup_id}/"


def object_key(environment: str, backup_id: str, name: str) -> str:
    return f"{environment}/{backup_id}/{name}"


def split_key(key: str) -> tuple[str, str, str] | None:
    """``env/id/name`` -> (env, id, name) when ``key`` is inside a backup folder, else None."""
    parts = key.split("/")
    if len(parts) == 3 and is_backup_id(parts[1]):
        return parts[0], parts[1], parts[2]
    return None


def find_backup_id(value: str) -> str | None:
    """The backup id in a backup id, a backup prefix ``env/id/`` or any key inside a backup."""
    if is_backup_id(value):
        return value
    for part in value.strip("/").split("/"):
        if is_backup_id(part):
            return part
    return None


# --- the manifest ---------------------------------------------------------------------------------


class _Doc(BaseModel):
    # Unknown fields from a newer erpops of the same format version are kept, not refused.
    model_config = ConfigDict(extra="allow")


class Artifact(_Doc):
    """One stored object of a backup."""

    key: str
    size: int
    sha256: str
    #: ``zstd`` or ``none``.
    compression: str = "zstd"
    #: ``pg_dump-custom``, ``pg_dump-directory-tar``, ``tar``, ``odoo-zip``...
    format: str
    #: Size before compression, when known.
    uncompressed_size: int | None = None
    #: Number of files (filestore), when known.
    files: int | None = None


class Physical(_Doc):
    """Where a physical base backup sits in the WAL: what a point-in-time restore starts from."""

    start_lsn: str
    #: The copy is consistent once WAL is replayed up to here (``backup_manifest``'s WAL range).
    stop_lsn: str
    timeline: int
    #: The first WAL segment the restore needs.
    start_wal: str
    start_time: datetime
    stop_time: datetime
    system_identifier: int | None = None
    #: PostgreSQL's ``backup_label`` as written.
    backup_label: str = ""


class RunbookRef(_Doc):
    name: str
    version: str
    sha256: str


class Manifest(_Doc):
    """Everything about one backup, written as ``manifest.json`` after every artifact is stored."""

    format_version: int = FORMAT_VERSION
    backup_id: str
    environment: str
    database: str
    started_at: datetime
    ended_at: datetime
    #: When the database snapshot was taken (pg_dump's consistent snapshot; for a physical backup
    #: the time its copy ended, which the copy is consistent at once its WAL is replayed).
    snapshot_time: datetime
    postgres_version: str
    #: The client tool's version: pg_dump's, or pg_basebackup's for a physical backup.
    pg_dump_version: str
    #: ``logical`` (pg_dump of the Odoo database) or ``physical`` (a base backup of the server).
    method: str = "logical"
    physical: Physical | None = None
    odoo_version: str | None = None
    #: Installed modules (``ir_module_module``): name -> installed version.
    modules: dict[str, str] = Field(default_factory=dict)
    #: Row counts of key tables at the snapshot: table -> count (a physical backup: read when
    #: its copy started; ``row_counts_end`` when it ended — the copy holds counts in between).
    row_counts: dict[str, int] = Field(default_factory=dict)
    row_counts_end: dict[str, int] | None = None
    #: Artifact name (``db``, ``filestore``) -> where and what it is.
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    erpops_version: str
    runbook: RunbookRef | None = None
    #: Run id of the erpops run that made the backup.
    run_id: str | None = None
    #: Shell commands restoring this backup by hand (informational).
    restore_commands: list[str] = Field(default_factory=list)

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2, exclude_none=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str = "manifest.json") -> Manifest:
        return _load(cls, data, where)

    @property
    def total_size(self) -> int:
        return sum(a.size for a in self.artifacts.values())


def restore_commands(manifest: Manifest, base_url: str, *, target_db: str = "odoo_restored") -> list[str]:
    """How to restore ``manifest``'s backup by hand, for the manifest's ``restore_commands``.

    ``base_url`` is the store's URL (``s3://bucket/prefix`` or ``file:///path``)."""
    out = []
    for name, art in manifest.artifacts.items():
        url = f"{base_url.rstrip('/')}/{art.key}"
        fetch = f"aws s3 cp {url} -" if url.startswith("s3://") else f"cat {url.removeprefix('file://')}"
        unpack = " | zstd -d" if art.compression == "zstd" else ""
        check = f"# {name}: {art.size} bytes, sha256 {art.sha256} (check with sha256sum before restoring)"
        out.append(check)
        if art.format == "pg_basebackup-tar":
            out.append(f"mkdir -m 0700 data && {fetch}{unpack} | tar -x -C data && pg_verifybackup data")
        elif art.format.startswith("pg_dump"):
            out.append(f"createdb {target_db} && {fetch}{unpack} | pg_restore --no-owner -d {target_db}")
        elif art.format == "tar":
            out.append(f"mkdir -p filestore/{target_db} && {fetch}{unpack} | tar -x -C filestore/{target_db}")
    return out


# --- markers --------------------------------------------------------------------------------------


class ArtifactCheck(_Doc):
    name: str
    key: str
    expected_size: int
    expected_sha256: str
    size: int | None = None
    sha256: str | None = None
    ok: bool
    error: str | None = None


class VerifyMarker(_Doc):
    """``verify.json``: the artifacts were re-read and compared with the manifest."""

    format_version: int = FORMAT_VERSION
    backup_id: str
    verified_at: datetime
    ok: bool
    artifacts: list[ArtifactCheck] = Field(default_factory=list)
    #: SHA-256 of the manifest.json bytes that were checked against.
    manifest_sha256: str | None = None
    seconds: float | None = None
    erpops_version: str | None = None
    run_id: str | None = None

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str = "verify.json") -> VerifyMarker:
        return _load(cls, data, where)


class RestoreTestMarker(_Doc):
    """``restore-test.json``: a restore drill restored this backup and its checks passed — or, with
    ``ok: false`` and ``failed: restore``, could not restore it (``error`` says why)."""

    format_version: int = FORMAT_VERSION
    backup_id: str
    tested_at: datetime
    ok: bool = True
    run_id: str | None = None
    #: Check name -> passed.
    checks: dict[str, bool] = Field(default_factory=dict)
    #: RTO phases in seconds (fetch, restore, checks, total).
    durations: dict[str, float] = Field(default_factory=dict)
    rpo_seconds: float | None = None
    erpops_version: str | None = None
    #: the drill phase that failed (``restore``: the backup could not be restored), when not ok
    failed: str | None = None
    error: str | None = None

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str = "restore-test.json") -> RestoreTestMarker:
        return _load(cls, data, where)


def _load(model: type[Any], data: bytes | str, where: str) -> Any:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidManifest(f"{where} is not a JSON object")
    version = raw.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InvalidManifest(
            f"{where} has format version {version!r}; this erpops reads up to {FORMAT_VERSION}",
            hint="upgrade erpops",
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise InvalidManifest(f"{where}: {path}: {validation_message(first)}") from None
