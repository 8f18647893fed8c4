"""The backups of an environment, as found in its object store.

Each folder ``<env>/<backup-id>/`` is one backup. Its state:

- ``incomplete``: no readable manifest, or an artifact the manifest names is missing — a backup
  still running, or one whose process was killed. Never chosen for a restore;
- ``complete``: manifest written, every artifact present with the manifest's size;
- ``verified``: ``verify.json`` says the artifacts were re-read and match the manifest;
- ``restore-tested``: ``restore-test.json`` says a restore drill of it passed;
- ``corrupt``: verification found a checksum or size mismatch;
- ``unrestorable``: its artifacts match the manifest, but a restore drill could not restore it
  (``restore-test.json`` with ``failed: restore``). Never chosen unless named (to drill it again
  once the cause is fixed: a passing drill makes it ``restore-tested``).

``locked``/``retain_until`` come from S3 Object Lock (the latest retain-until date over the
backup's objects). Folders whose name is not a backup id are ignored — never listed, never pruned.

```python
catalog = Catalog(store, "prod")
for b in catalog.list():
    print(b.backup_id, b.state, b.size, b.retain_until)
latest = catalog.choose()          # newest usable backup, or the error an operator should see
```
"""

from __future__ import annotations

import builtins
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from erpops.backends.storage.base import ObjectInfo, ObjectLocked, ObjectNotFound, ObjectStore, utcnow
from erpops.errors import PermanentError
from erpops.manifest import (
    MANIFEST,
    RESTORE_TEST_MARKER,
    VERIFY_MARKER,
    InvalidManifest,
    Manifest,
    RestoreTestMarker,
    VerifyMarker,
    backup_time,
    env_prefix,
    object_key,
    split_key,
)
from erpops.retention import (
    COMPLETE,
    CORRUPT,
    INCOMPLETE,
    RESTORE_TESTED,
    UNRESTORABLE,
    USABLE,
    VERIFIED,
    Candidate,
)


class BackupNotFound(ObjectNotFound):
    """No such backup, or no backup fit for what was asked."""


@dataclass
class BackupEntry:
    """One backup folder and what its objects say about it."""

    environment: str
    backup_id: str
    time: datetime
    state: str = INCOMPLETE
    objects: list[ObjectInfo] = field(default_factory=list)
    manifest: Manifest | None = None
    manifest_sha256: str | None = None
    verify: VerifyMarker | None = None
    restore_test: RestoreTestMarker | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"{self.environment}/{self.backup_id}/"

    @property
    def usable(self) -> bool:
        return self.state in USABLE

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def last_modified(self) -> datetime | None:
        times = [o.modified for o in self.objects if o.modified is not None]
        return max(times) if times else None

    @property
    def retain_until(self) -> datetime | None:
        dates = [o.retain_until for o in self.objects if o.retain_until is not None]
        return max(dates) if dates else None

    @property
    def lock_mode(self) -> str | None:
        modes = {o.lock_mode for o in self.objects if o.lock_mode}
        return "compliance" if "compliance" in modes else (modes.pop() if modes else None)

    @property
    def legal_hold(self) -> bool:
        return any(o.legal_hold for o in self.objects)

    def locked(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return any(o.locked(now) for o in self.objects)

    def candidate(self) -> Candidate:
        return Candidate(
            backup_id=self.backup_id,
            time=self.time,
            state=self.state,
            retain_until=self.retain_until,
            legal_hold=self.legal_hold,
            last_activity=self.last_modified,
        )

    def as_dict(self) -> dict[str, Any]:
        until = self.retain_until
        return {
            "backup_id": self.backup_id,
            "environment": self.environment,
            "time": self.time.isoformat(),
            "state": self.state,
            "size": self.size,
            "objects": len(self.objects),
            "locked": self.locked(),
            "retain_until": until.isoformat() if until else None,
            "lock_mode": self.lock_mode,
            "database": self.manifest.database if self.manifest else None,
            "verified_at": self.verify.verified_at.isoformat() if self.verify else None,
            "restore_tested_at": self.restore_test.tested_at.isoformat() if self.restore_test else None,
            "problems": list(self.problems),
        }


class Catalog:
    """The backups of ``environment`` in ``store``."""

    def __init__(self, store: ObjectStore, environment: str) -> None:
        if not environment or "/" in environment:
            raise ValueError(f"bad environment name {environment!r}")
        self.store = store
        self.environment = environment

    # --- reading -----------------------------------------------------------------------------------

    def list(self) -> list[BackupEntry]:
        """Every backup of the environment, newest first, with its state."""
        groups: dict[str, list[ObjectInfo]] = {}
        for info in self.store.list(env_prefix(self.environment), with_retention=True):
            parts = split_key(info.key)
            if parts is None or parts[0] != self.environment:
                continue
            groups.setdefault(parts[1], []).append(info)
        entries = [self._entry(bid, objs) for bid, objs in groups.items()]
        return sorted(entries, key=lambda e: (e.time, e.backup_id), reverse=True)

    def get(self, backup_id: str) -> BackupEntry:
        prefix = f"{self.environment}/{backup_id}/"
        objs = [o for o in self.store.list(prefix, with_retention=True) if split_key(o.key)]
        if not objs:
            raise BackupNotFound(f"no backup {backup_id} of {self.environment} in {self.store.url}")
        return self._entry(backup_id, objs)

    def newest(self, states: frozenset[str] | set[str] = USABLE) -> BackupEntry | None:
        return next((e for e in self.list() if e.state in states), None)

    def choose(self, backup_id: str | None = None) -> BackupEntry:
        """The backup to restore: ``backup_id`` if given (it must be usable), else the newest usable."""
        if backup_id:
            entry = self.get(backup_id)
            if not entry.usable and entry.state != UNRESTORABLE:
                why = "; ".join(entry.problems) or entry.state
                raise BackupNotFound(
                    f"backup {backup_id} of {self.environment} is {entry.state} ({why}); not restorable"
                )
            return entry
        newest = self.newest()
        if newest is None:
            raise BackupNotFound(f"no complete backup of {self.environment} in {self.store.url}")
        return newest

    def _entry(self, backup_id: str, objects: builtins.list[ObjectInfo]) -> BackupEntry:
        entry = BackupEntry(
            self.environment, backup_id, backup_time(backup_id), objects=sorted(objects, key=lambda o: o.key)
        )
        by_name = {o.key.rsplit("/", 1)[-1]: o for o in objects}
        if MANIFEST not in by_name:
            entry.problems.append("no manifest")
            return entry
        try:
            raw = self.store.get_bytes(object_key(self.environment, backup_id, MANIFEST))
            entry.manifest_sha256 = hashlib.sha256(raw).hexdigest()
            entry.manifest = Manifest.from_json(raw, where=f"{entry.prefix}{MANIFEST}")
        except ObjectNotFound:
            entry.problems.append("no manifest")
            return entry
        except InvalidManifest as exc:
            entry.problems.append(str(exc))
            return entry
        state = self._artifact_state(entry, {o.key: o for o in objects})
        if state == COMPLETE:
            state = self._marker_state(entry, by_name)
        entry.state = state
        return entry

    def _artifact_state(self, entry: BackupEntry, by_key: dict[str, ObjectInfo]) -> str:
        assert entry.manifest is not None
        if entry.manifest.backup_id != entry.backup_id:
            entry.problems.append(f"manifest names backup {entry.manifest.backup_id}")
            return INCOMPLETE
        state = COMPLETE
        for name, art in entry.manifest.artifacts.items():
            obj = by_key.get(art.key)
            if obj is None:
                entry.problems.append(f"artifact {name} ({art.key}) is missing")
                return INCOMPLETE
            if obj.size != art.size:
                entry.problems.append(f"artifact {name} is {obj.size} bytes, manifest says {art.size}")
                state = CORRUPT
        return state

    def _marker_state(self, entry: BackupEntry, by_name: dict[str, ObjectInfo]) -> str:
        assert entry.manifest is not None
        state = COMPLETE
        if VERIFY_MARKER in by_name:
            marker = self._read_marker(entry, VERIFY_MARKER, VerifyMarker)
            if isinstance(marker, VerifyMarker):
                expected = {a.key: a.sha256 for a in entry.manifest.artifacts.values()}
                checked = {c.key: c.expected_sha256 for c in marker.artifacts}
                if checked != expected:
                    entry.problems.append("verify.json does not match the manifest (ignored)")
                else:
                    entry.verify = marker
                    if not marker.ok:
                        bad = [c.name for c in marker.artifacts if not c.ok]
                        entry.problems.append(f"verification failed: {', '.join(bad) or 'see verify.json'}")
                        return CORRUPT
                    state = VERIFIED
        if RESTORE_TEST_MARKER in by_name:
            drill = self._read_marker(entry, RESTORE_TEST_MARKER, RestoreTestMarker)
            if isinstance(drill, RestoreTestMarker):
                entry.restore_test = drill
                if drill.ok:
                    state = RESTORE_TESTED
                elif drill.failed == "restore":
                    entry.problems.append(f"a restore drill (run {drill.run_id}) could not restore it: {drill.error}")
                    return UNRESTORABLE
                else:
                    entry.problems.append("last restore drill failed")
        return state

    def _read_marker(self, entry: BackupEntry, name: str, model: type[Any]) -> Any:
        try:
            return model.from_json(self.store.get_bytes(f"{entry.prefix}{name}"), where=f"{entry.prefix}{name}")
        except ObjectNotFound:
            return None
        except InvalidManifest as exc:
            entry.problems.append(str(exc))
            return None

    def read_manifest(self, backup_id: str) -> tuple[Manifest, str]:
        """The manifest of ``backup_id`` and the SHA-256 of its bytes."""
        key = object_key(self.environment, backup_id, MANIFEST)
        try:
            raw = self.store.get_bytes(key)
        except ObjectNotFound:
            raise BackupNotFound(
                f"backup {backup_id} of {self.environment} has no manifest: it is incomplete"
            ) from None
        return Manifest.from_json(raw, where=self.store.location(key)), hashlib.sha256(raw).hexdigest()

    # --- writing -----------------------------------------------------------------------------------

    def write_manifest(self, manifest: Manifest, *, retention: Any = None) -> ObjectInfo:
        """Write ``manifest.json`` — last, after every artifact is stored."""
        if manifest.environment != self.environment:
            raise PermanentError(f"manifest is for {manifest.environment}, catalog for {self.environment}")
        key = object_key(self.environment, manifest.backup_id, MANIFEST)
        return self.store.put_bytes(key, manifest.to_json(), retention)

    def write_verify_marker(self, marker: VerifyMarker) -> ObjectInfo:
        return self.store.put_bytes(object_key(self.environment, marker.backup_id, VERIFY_MARKER), marker.to_json())

    def write_restore_test_marker(self, marker: RestoreTestMarker) -> ObjectInfo:
        key = object_key(self.environment, marker.backup_id, RESTORE_TEST_MARKER)
        return self.store.put_bytes(key, marker.to_json())

    def delete(self, backup_id: str, *, bypass_governance: bool = False) -> builtins.list[str]:
        """Delete every object of a backup; the manifest goes first, so a half-deleted backup is
        ``incomplete`` and never restored. Refuses (deleting nothing) if any object is locked."""
        entry = self.get(backup_id)
        now = utcnow()
        for obj in entry.objects:
            if obj.locked(now) and not (bypass_governance and obj.lock_mode == "governance" and not obj.legal_hold):
                until = f" until {obj.retain_until:%Y-%m-%d %H:%M}Z" if obj.retain_until else ""
                raise ObjectLocked(
                    f"backup {backup_id} of {self.environment} is under Object Lock{until} "
                    f"({self.store.location(obj.key)}); not deleting it"
                )
        order = {MANIFEST: 0, VERIFY_MARKER: 1, RESTORE_TEST_MARKER: 2}
        keys = sorted((o.key for o in entry.objects), key=lambda k: (order.get(k.rsplit("/", 1)[-1], 3), k))
        deleted = []
        for key in keys:
            if self.store.delete(key, bypass_governance=bypass_governance):
                deleted.append(key)
        return deleted
