"""The S3 object store (``s3://bucket/prefix``), for AWS S3 and S3-compatible servers.

Credentials: ``access_key``/``secret_key`` from the environment's storage (secret references
resolved by the caller), else ``profile``, else the standard AWS credential chain
(``AWS_ACCESS_KEY_ID``..., ``~/.aws``, instance roles). ``endpoint`` points at a non-AWS server
(MinIO, Ceph, moto) and switches to path-style addressing.

Uploads are streamed multipart uploads (see ``s3_transfer``): SHA-256 per part checked by S3,
retries with backoff, abort on final failure. Connection problems are reported within seconds as
:class:`erpops.errors.TargetUnreachable` naming the bucket and endpoint, never a secret (short
connect timeout, two attempts; an endpoint never reached is not retried further).
"""

from __future__ import annotations

import builtins
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from erpops.backends.storage.base import (
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    Retention,
    join_key,
    validate_key,
    validate_prefix,
)
from erpops.backends.storage.s3_transfer import (
    DEFAULT_PART,
    MAX_PART,
    MAX_PARTS,
    PARTS_PER_STEP,
    S3Reader,
    S3Writer,
    part_size_for_part,
    part_size_for_size,
)
from erpops.errors import ErpopsError, InvalidInput, PermanentError, TargetUnreachable, TemporaryError

__all__ = [
    "DEFAULT_PART",
    "MAX_PART",
    "MAX_PARTS",
    "S3Store",
    "parse_s3_url",
    "part_size_for_part",
    "part_size_for_size",
]

log = logging.getLogger("erpops.storage.s3")
T = TypeVar("T")

_UNREACHABLE_CODES = {
    "NoSuchBucket",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AccessDenied",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "InvalidBucketName",
}
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "OperationAborted",
}


_loader_lock = threading.Lock()
_loader: Any = None


def _shared_loader() -> Any:
    """One botocore data loader for the process: service models are parsed once (a client then
    takes ~15 ms instead of ~100). Sessions, credentials and event hooks stay per store."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        return _loader


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidInput(f"bad S3 URL {url!r}: expected s3://bucket/prefix")
    prefix = parts.path.strip("/")
    if prefix:
        validate_key(prefix)
    return parts.netloc, prefix


def _safe_endpoint(endpoint: str) -> str:
    """The endpoint without any user:password@ part, for messages."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _error_code(exc: ClientError) -> tuple[str, int]:
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(err.get("Code", "")), int(status or 0)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, HTTPClientError | BotoConnectionError | TemporaryError):
        return True
    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        return code in _TRANSIENT_CODES or status >= 500 or status == 429
    return False


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``. The tuning arguments exist for tests and benchmarks."""

    supports_retention = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        part_size: int = DEFAULT_PART,
        parts_per_step: int = PARTS_PER_STEP,
        concurrency: int = 2,
        part_attempts: int = 4,
        retry_backoff: float = 0.5,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise InvalidInput("storage access_key and secret_key must be given together")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.region = region
        self.profile = profile
        self._keys = (access_key, secret_key)
        self.part_size = part_size
        self.parts_per_step = parts_per_step
        self.concurrency = max(1, concurrency)
        self.part_attempts = max(1, part_attempts)
        self.retry_backoff = retry_backoff
        self._timeouts = (connect_timeout, read_timeout)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._lock_enabled: bool | None = None
        self._versioned: bool | None = None
        #: Set after the first successful request: later connection errors are retried.
        self._reached = False

    # --- plumbing --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def where(self) -> str:
        return f" at {_safe_endpoint(self.endpoint)}" if self.endpoint else ""

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        connect, read = self._timeouts
        config = Config(
            connect_timeout=connect,
            read_timeout=read,
            retries={"total_max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(10, self.concurrency * 2),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if self.endpoint else "auto"},
        )
        access, secret = self._keys
        try:
            core = botocore.session.Session()
            core.register_component("data_loader", _shared_loader())
            session = boto3.session.Session(botocore_session=core, profile_name=self.profile, region_name=self.region)
            return session.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                config=config,
            )
        except ProfileNotFound:
            raise TargetUnreachable(
                f"AWS profile {self.profile!r} for {self.url} is not configured", hint="check ~/.aws/config"
            ) from None
        except (BotoCoreError, ValueError) as exc:
            raise TargetUnreachable(f"cannot set up S3 access to {self.url}{self.where}: {exc}") from None

    def full_key(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _strip(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def lock_args(self, retention: Retention | None) -> dict[str, Any]:
        if retention is None:
            return {}
        return {"ObjectLockMode": retention.mode.upper(), "ObjectLockRetainUntilDate": retention.until()}

    def translate(self, what: str, key: str | None, exc: Exception) -> ErpopsError:
        """One clear error (no secrets) for a botocore failure of ``what`` on ``key``."""
        where = (self.location(key) if key is not None else self.url) + self.where
        if isinstance(exc, ErpopsError):
            return exc
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return TargetUnreachable(
                f"no AWS credentials for {self.url}",
                hint="set storage access_key/secret_key, a profile, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            )
        if isinstance(exc, ProfileNotFound):
            return TargetUnreachable(f"AWS profile {self.profile!r} for {self.url} is not configured")
        if isinstance(exc, HTTPClientError | BotoConnectionError):
            return TargetUnreachable(f"cannot reach S3 to {what} {where}: {type(exc).__name__}")
        if isinstance(exc, ClientError):
            code, status = _error_code(exc)
            if code == "NoSuchBucket":
                return TargetUnreachable(f"bucket {self.bucket!r} does not exist{self.where}")
            if code in ("NoSuchKey", "NoSuchVersion") or (status == 404 and code in ("404", "NotFound")):
                return ObjectNotFound(f"no object {where}")
            if code in _UNREACHABLE_CODES or status in (401, 403):
                return TargetUnreachable(f"S3 refused to {what} {where}: {code or status} (check credentials)")
            if _is_transient(exc):
                return TemporaryError(f"S3 could not {what} {where}: {code or status}")
            message = exc.response.get("Error", {}).get("Message", "")
            return PermanentError(f"S3 could not {what} {where}: {code or status} {message}".rstrip())
        if isinstance(exc, BotoCoreError):
            return TargetUnreachable(f"S3 could not {what} {where}: {exc}")
        raise exc

    def call(self, what: str, key: str | None, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            result = fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self.translate(what, key, exc) from None
        self._reached = True
        return result

    def with_retries(
        self,
        what: str,
        key: str,
        fn: Callable[[], T],
        *,
        attempts: int | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Run ``fn`` retrying transient failures with exponential backoff (not once ``stop`` is set)."""
        attempts = attempts or self.part_attempts
        for attempt in range(1, attempts + 1):
            try:
                result = fn()
                self._reached = True
                return result
            except (BotoCoreError, ClientError) as exc:
                # An endpoint never reached yet is reported at once (botocore already tried twice).
                never_reached = not self._reached and isinstance(exc, BotoConnectionError)
                if attempt == attempts or not _is_transient(exc) or never_reached or (stop and stop.is_set()):
                    raise self.translate(what, key, exc) from None
                delay = min(self.retry_backoff * 2 ** (attempt - 1), 30.0)
                log.info("S3 %s %s failed (%s); retry %d/%d in %.1fs", what, key, exc, attempt, attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # --- the interface ---------------------------------------------------------------------------

    def check(self) -> None:
        self.call("reach bucket", None, self.client.head_bucket, Bucket=self.bucket)

    def writer(self, key: str, retention: Retention | None = None, *, size: int | None = None) -> ObjectWriter:
        validate_key(key)
        return S3Writer(self, key, retention, size)

    def reader(self, key: str) -> IO[bytes]:
        raw = S3Reader(self, key)
        return io.BufferedReader(raw, buffer_size=1024 * 1024)

    def _head_info(self, key: str, resp: dict[str, Any]) -> ObjectInfo:
        mode = resp.get("ObjectLockMode")
        return ObjectInfo(
            key=key,
            size=int(resp.get("ContentLength", 0)),
            modified=resp.get("LastModified"),
            version_id=resp.get("VersionId"),
            etag=resp.get("ETag"),
            retain_until=resp.get("ObjectLockRetainUntilDate"),
            lock_mode=mode.lower() if mode else None,
            legal_hold=resp.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.full_key(key)}
        if version_id:
            args["VersionId"] = version_id
        try:
            resp = self.call("read", key, self.client.head_object, **args)
        except ObjectNotFound:
            return None
        return self._head_info(key, resp)

    def lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once)."""
        if self._lock_enabled is None:
            try:
                resp = self.client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                code, _ = _error_code(exc)
                if code in ("AccessDenied", "NotImplemented"):
                    enabled = True  # cannot tell: ask each object (head_object shows its retention)
                elif code == "ObjectLockConfigurationNotFoundError":
                    enabled = False
                else:
                    raise self.translate("read Object Lock configuration of", None, exc) from None
            except BotoCoreError as exc:
                raise self.translate("read Object Lock configuration of", None, exc) from None
            self._lock_enabled = enabled
        return self._lock_enabled

    def versioned(self) -> bool:
        if self._versioned is None:
            resp = self.call("read versioning of", None, self.client.get_bucket_versioning, Bucket=self.bucket)
            self._versioned = resp.get("Status") in ("Enabled", "Suspended")
        return self._versioned

    def _iter_list(self, prefix: str) -> Iterator[dict[str, Any]]:
        full_prefix = join_key(self.prefix, prefix) if self.prefix else prefix
        if self.prefix and not prefix:
            full_prefix = self.prefix + "/"
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
            if token:
                args["ContinuationToken"] = token
            resp = self.call("list", prefix or None, self.client.list_objects_v2, **args)
            yield from resp.get("Contents", [])
            if not resp.get("IsTruncated"):
                return
            token = resp["NextContinuationToken"]

    def list(self, prefix: str = "", *, with_retention: bool = False) -> list[ObjectInfo]:
        prefix = validate_prefix(prefix)
        out = [
            ObjectInfo(
                key=self._strip(item["Key"]),
                size=int(item["Size"]),
                modified=item.get("LastModified"),
                etag=item.get("ETag"),
            )
            for item in self._iter_list(prefix)
        ]
        if with_retention and out and self.lock_enabled():
            with ThreadPoolExecutor(8, thread_name_prefix="erpops-s3-head") as pool:
                heads = list(pool.map(lambda i: self.head(i.key), out))
            out = [h or i for h, i in zip(heads, out, strict=True)]
        return sorted(out, key=lambda i: i.key)

    def _versions(self, full_key: str) -> builtins.list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_key}
        while True:
            resp = self.call("list versions of", self._strip(full_key), self.client.list_object_versions, **args)
            for item in [*resp.get("Versions", []), *resp.get("DeleteMarkers", [])]:
                if item["Key"] == full_key:
                    found.append(item)
            if not resp.get("IsTruncated"):
                return found
            args["KeyMarker"] = resp.get("NextKeyMarker")
            args["VersionIdMarker"] = resp.get("NextVersionIdMarker")

    def _refuse_locked(self, info: ObjectInfo, bypass_governance: bool) -> None:
        if not info.locked():
            return
        if info.lock_mode == "governance" and bypass_governance and not info.legal_hold:
            return
        what = (
            "a legal hold"
            if info.legal_hold
            else f"{info.lock_mode} retention until {info.retain_until:%Y-%m-%d %H:%M}Z"
        )
        raise ObjectLocked(f"{self.location(info.key)} is under Object Lock ({what}); it cannot be deleted yet")

    def delete(self, key: str, *, bypass_governance: bool = False) -> bool:
        full = self.full_key(key)
        if not self.versioned():
            info = self.head(key)
            if info is None:
                return False
            self._refuse_locked(info, bypass_governance)
            self.call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=full)
            return True
        versions = self._versions(full)
        if not versions:
            return False
        for v in versions:
            if "Size" in v:  # a real version, not a delete marker
                info = self.head(key, version_id=v["VersionId"])
                if info is not None:
                    self._refuse_locked(info, bypass_governance)
        for v in versions:
            args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "VersionId": v["VersionId"]}
            if bypass_governance:
                args["BypassGovernanceRetention"] = True
            try:
                self.client.delete_object(**args)
            except ClientError as exc:
                code, _ = _error_code(exc)
                if code == "AccessDenied":
                    raise ObjectLocked(
                        f"{self.location(key)} (version {v['VersionId']}) cannot be deleted: "
                        "Object Lock retention or missing delete permission"
                    ) from None
                raise self.translate("delete", key, exc) from None
            except BotoCoreError as exc:
                raise self.translate("delete", key, exc) from None
        return any("Size" in v for v in versions)

    def cleanup_partial(self, prefix: str, older_than: datetime) -> builtins.list[str]:
        full_prefix = join_key(self.prefix, validate_prefix(prefix)) if self.prefix else validate_prefix(prefix)
        removed: list[str] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
        while True:
            resp = self.call(
                "list unfinished uploads under", prefix or None, self.client.list_multipart_uploads, **args
            )
            for up in resp.get("Uploads", []):
                if up["Initiated"] < older_than:
                    key = self._strip(up["Key"])
                    self.call(
                        "abort upload of",
                        key,
                        self.client.abort_multipart_upload,
                        Bucket=self.bucket,
                        Key=up["Key"],
                        UploadId=up["UploadId"],
                    )
                    removed.append(f"{key} (unfinished upload {up['UploadId'][:12]})")
            if not resp.get("IsTruncated"):
                return removed
            args["KeyMarker"] = resp.get("NextKeyMarker")
            args["UploadIdMarker"] = resp.get("NextUploadIdMarker")
