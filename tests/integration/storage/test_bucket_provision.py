"""The object store as ``erpops provision`` converges it (issue 12, item 5): the S3 bucket created
with versioning, Object Lock's default retention when asked and the ``erpops`` lifecycle rule
(other rules kept), reported exactly by a dry run, idempotent; a local store directory 0700."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Any

from erpops.backends.storage import bucket
from erpops.environments import Storage
from erpops.secrets import resolve


def _actions(changes: list[Any]) -> dict[str, str]:
    return {c.kind: c.action for c in changes}


def test_an_s3_bucket_is_created_locked_versioned_with_lifecycle_and_converges(s3_server: Any) -> None:
    name = f"erpops-prov-{secrets.token_hex(3)}"
    lifecycle = {"abort_incomplete_multipart_days": 3, "noncurrent_version_days": 60}
    storage = s3_server.storage(name, "prod", object_lock="compliance", retention_days=30, lifecycle=lifecycle)
    planned = bucket.converge(storage, resolve, apply=False)
    assert _actions(planned) == {"bucket": "create", "bucket versioning": "update", "bucket retention": "update",
                                 "bucket lifecycle": "update"}  # fmt: skip
    client = s3_server.client()
    assert name not in [b["Name"] for b in client.list_buckets()["Buckets"]]  # the dry run changed nothing

    done = bucket.converge(storage, resolve, apply=True)
    assert _actions(done)["bucket"] == "create"
    assert client.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    lock = client.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert (lock["Rule"]["DefaultRetention"]["Mode"], lock["Rule"]["DefaultRetention"]["Days"]) == ("COMPLIANCE", 30)
    (rule,) = client.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert rule["ID"] == "erpops" and rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 60

    again = bucket.converge(storage, resolve, apply=True)
    assert not any(c.changed for c in again), [c.line() for c in again]  # a second run changes nothing

    # drift: someone changes the retention and the rule, and adds a rule of their own
    client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})  # fmt: skip
    theirs = {"ID": "theirs", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}
    client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [theirs]})
    drift = bucket.converge(storage, resolve, apply=False)
    assert {c.kind for c in drift if c.changed} == {"bucket retention", "bucket lifecycle"}
    bucket.converge(storage, resolve, apply=True)
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]}
    assert set(rules) == {"erpops", "theirs"}  # their rule kept
    lock = client.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert (lock["Rule"]["DefaultRetention"]["Mode"], lock["Rule"]["DefaultRetention"]["Days"]) == ("COMPLIANCE", 30)
    assert not any(c.changed for c in bucket.converge(storage, resolve, apply=False))


def test_an_existing_unversioned_bucket_gets_versioning(s3_server: Any, s3_bucket: str) -> None:
    storage = s3_server.storage(s3_bucket)
    planned = bucket.converge(storage, resolve, apply=False)
    assert _actions(planned) == {"bucket versioning": "update", "bucket lifecycle": "update"}
    bucket.converge(storage, resolve, apply=True)
    assert s3_server.client().get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"


def test_a_local_store_directory_is_made_0700(tmp_path: Path) -> None:
    root = tmp_path / "backups" / "prod"
    storage = Storage(url=f"file://{root}")
    (planned,) = bucket.converge(storage, resolve, apply=False)
    assert planned.action == "create" and not root.exists()
    bucket.converge(storage, resolve, apply=True)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    os.chmod(root, 0o755)
    (drift,) = bucket.converge(storage, resolve, apply=True)
    assert drift.action == "update" and "0755 -> 0700" in drift.detail
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    (same,) = bucket.converge(storage, resolve, apply=True)
    assert same.action == "no change"
