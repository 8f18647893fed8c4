"""The environment's object store as ``erpops provision`` converges it.

S3: the bucket exists (created with Object Lock enabled when ``object_lock`` is asked: S3 turns it
on at creation), versioning is on, the default retention is ``object_lock`` / ``retention_days``,
and the lifecycle rule ``erpops`` aborts incomplete multipart uploads and expires noncurrent
versions after the configured days (other rules are kept as they are). A local directory store
exists with mode 0700. Every function takes ``apply``: False only reads and reports.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from erpops.backends.storage import open_store
from erpops.backends.storage.local import LocalStore
from erpops.backends.storage.s3 import S3Store, _error_code
from erpops.environments import Storage
from erpops.errors import ActionError, TargetUnreachable
from erpops.provisioning import ObjectChange

RULE_ID = "erpops"


def converge(storage: Storage, resolve_secret: Any, *, apply: bool) -> list[ObjectChange]:
    store = open_store(storage, resolve_secret)
    if isinstance(store, S3Store):
        return _s3(store, storage, apply)
    assert isinstance(store, LocalStore)
    return [_local(Path(store.root), apply)]


def _local(root: Path, apply: bool) -> ObjectChange:
    if not root.exists():
        if apply:
            root.mkdir(parents=True, mode=0o700)
            os.chmod(root, 0o700)
        return ObjectChange("directory store", str(root), "create", "mode 0700")
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode != 0o700:
        if apply:
            os.chmod(root, 0o700)
        return ObjectChange("directory store", str(root), "update", f"mode {mode:04o} -> 0700")
    return ObjectChange("directory store", str(root), "no change")


def _rule(storage: Storage) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ID": RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": storage.lifecycle.abort_incomplete_multipart_days},
    }
    if storage.lifecycle.noncurrent_version_days:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": storage.lifecycle.noncurrent_version_days}
    return rule


def _s3(store: S3Store, storage: Storage, apply: bool) -> list[ObjectChange]:
    s3, bucket = store.client, store.bucket
    where = f"s3://{bucket}{store.where}"

    def call(what: str, fn: Any, **kwargs: Any) -> Any:
        return store.call(what, None, fn, **kwargs)

    def absent(what: str, fn: Any, missing: tuple[str, ...], **kwargs: Any) -> Any:
        """``fn``'s answer, or None when S3 says the thing does not exist (``missing`` codes)."""
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if _error_code(exc)[0] in missing:
                return None
            raise store.translate(what, None, exc) from None
        except BotoCoreError as exc:
            raise store.translate(what, None, exc) from None

    changes: list[ObjectChange] = []
    exists = absent("head bucket", s3.head_bucket, ("404", "NoSuchBucket", "NotFound"), Bucket=bucket) is not None
    lock = storage.object_lock
    if not exists:
        changes.append(ObjectChange("bucket", where, "create", "with Object Lock" if lock else ""))
        if not apply:
            changes.append(ObjectChange("bucket versioning", where, "update", "enable"))
            if lock:
                changes.append(ObjectChange("bucket retention", where, "update", f"{lock} {storage.retention_days}d"))
            changes.append(ObjectChange("bucket lifecycle", where, "update", "rule erpops"))
            return changes
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if storage.region and storage.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": storage.region}
        if lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        call("create bucket", s3.create_bucket, **kwargs)

    versioning = call("get versioning", s3.get_bucket_versioning, Bucket=bucket).get("Status")
    if versioning != "Enabled":
        if apply:
            call("enable versioning", s3.put_bucket_versioning, Bucket=bucket,
                 VersioningConfiguration={"Status": "Enabled"})  # fmt: skip
        changes.append(
            ObjectChange("bucket versioning", where, "update", f"{versioning or 'never enabled'} -> Enabled")
        )
    else:
        changes.append(ObjectChange("bucket versioning", where, "no change", "Enabled"))

    if lock:
        if not storage.retention_days:
            raise ActionError("storage.object_lock needs storage.retention_days (the default retention)")
        want = {"ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": lock.upper(), "Days": storage.retention_days}}}  # fmt: skip
        got = absent("get object lock", s3.get_object_lock_configuration,
                     ("ObjectLockConfigurationNotFoundError",), Bucket=bucket)  # fmt: skip
        have = (got or {}).get("ObjectLockConfiguration")
        if _retention(have) != _retention(want):
            if apply:
                call("set object lock", s3.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration=want)
            before = (have or {}).get("Rule", {}).get("DefaultRetention") or "none"
            changes.append(
                ObjectChange("bucket retention", where, "update", f"{before} -> {lock} {storage.retention_days}d")
            )
        else:
            changes.append(ObjectChange("bucket retention", where, "no change", f"{lock} {storage.retention_days}d"))

    got = absent("get lifecycle", s3.get_bucket_lifecycle_configuration,
                 ("NoSuchLifecycleConfiguration",), Bucket=bucket)  # fmt: skip
    rules = (got or {}).get("Rules") or []
    mine = next((r for r in rules if r.get("ID") == RULE_ID), None)
    want_rule = _rule(storage)
    if _comparable(mine) != _comparable(want_rule):
        if apply:
            others = [r for r in rules if r.get("ID") != RULE_ID]
            call("set lifecycle", s3.put_bucket_lifecycle_configuration, Bucket=bucket,
                 LifecycleConfiguration={"Rules": [*others, want_rule]})  # fmt: skip
        what = "add rule erpops" if mine is None else "rule erpops changed"
        days = storage.lifecycle
        expire = f"{days.noncurrent_version_days}d" if days.noncurrent_version_days else "never"
        detail = f"{what}: abort multipart after {days.abort_incomplete_multipart_days}d, noncurrent versions {expire}"
        changes.append(ObjectChange("bucket lifecycle", where, "update", detail))
    else:
        changes.append(ObjectChange("bucket lifecycle", where, "no change", "rule erpops"))
    return changes


def _comparable(rule: dict[str, Any] | None) -> Any:
    if rule is None:
        return None
    keep = ("ID", "Status", "AbortIncompleteMultipartUpload", "NoncurrentVersionExpiration")
    out = {k: rule.get(k) for k in keep if rule.get(k) is not None}
    prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
    out["Prefix"] = prefix or ""
    return out


def _retention(config: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """(enabled, mode, days, years) of an Object Lock configuration (absent fields and zeros alike)."""
    if not config:
        return None
    rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
    return (config.get("ObjectLockEnabled"), rule.get("Mode"), rule.get("Days") or 0, rule.get("Years") or 0)


def reachable(storage: Storage, resolve_secret: Any) -> str:
    """Whether provision can work on the store (before anything changes): S3 answers for the
    bucket (missing is fine: provision creates it); a local store's nearest existing folder is
    writable. Returns where; raises TargetUnreachable (exit 3) otherwise."""
    store = open_store(storage, resolve_secret)
    if isinstance(store, S3Store):
        try:
            store.client.head_bucket(Bucket=store.bucket)
        except ClientError as exc:
            if _error_code(exc)[0] not in ("404", "NoSuchBucket", "NotFound"):
                raise store.translate("reach bucket", None, exc) from None
        except BotoCoreError as exc:
            raise store.translate("reach bucket", None, exc) from None
        return store.url + store.where
    assert isinstance(store, LocalStore)
    folder = Path(store.root)
    while not folder.exists():
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TargetUnreachable(f"the store {store.url} cannot be created: {folder} is not writable")
    return store.url
