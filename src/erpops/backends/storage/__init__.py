"""Object storage for backups: one interface, a local-directory and an S3 implementation.

``open_store(env.storage, ctx.resolve_secret)`` picks the implementation from the URL:

- ``file:///var/backups/erp`` or a plain path (``/var/backups/erp``, ``~/backups``): a directory;
- ``s3://bucket/prefix``: S3 or an S3-compatible server (``endpoint``), with ``region``,
  ``profile``, or ``access_key``/``secret_key`` (secret references such as ``env:S3_KEY``), else
  the standard AWS credential chain.

Nothing is contacted until the first operation (``store.check()`` asks explicitly).

Modules: ``base`` (the ``ObjectStore`` interface, keys, retention), ``local`` (a directory),
``s3`` and ``s3_transfer`` (multipart upload and ranged download, which need only the
``TransferStore`` protocol of their store), ``catalog`` (backups as sets of objects: states
incomplete / complete / verified / restore-tested, read from the manifests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from erpops.backends.storage.base import (
    LockMode,
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    Retention,
)
from erpops.environments import Storage
from erpops.errors import InvalidInput

__all__ = [
    "ObjectInfo",
    "ObjectLocked",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectWriter",
    "Retention",
    "default_retention",
    "open_store",
]


def default_retention(storage: Storage | None) -> Retention | None:
    """The Object Lock retention an environment asks for on upload (mode and days), if any.

    ``object_lock`` without ``retention_days`` relies on the bucket's default retention."""
    if storage is None or not storage.object_lock or not storage.retention_days:
        return None
    return Retention(storage.object_lock, storage.retention_days)


def upload_retention(
    storage: Storage, object_lock: LockMode | Literal["none"] | None, retention_days: int | None
) -> Retention | None:
    """The retention of an upload: ``object_lock: none`` for none; a mode and/or days given by the
    step (the environment's fill in what is missing); else the environment's default."""
    if object_lock == "none":
        return None
    if object_lock or retention_days:
        mode = object_lock or storage.object_lock
        days = retention_days or storage.retention_days
        if not mode or not days:
            raise InvalidInput("Object Lock needs both a mode (object_lock) and retention_days")
        return Retention(mode, days)
    return default_retention(storage)


def open_store(storage: Storage, resolve_secret: Callable[[str], str], **tuning: Any) -> ObjectStore:
    """The object store for ``storage``. Secret references in ``access_key``/``secret_key`` are
    resolved through ``resolve_secret`` (``ctx.resolve_secret``, which registers them for
    redaction). ``tuning`` goes to the implementation (part size, timeouts; tests and benchmarks)."""
    url = storage.url.strip()
    if not url:
        raise InvalidInput("storage url is empty: expected s3://bucket/prefix, file:///path or a path")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        from erpops.backends.storage.s3 import S3Store, parse_s3_url

        bucket, prefix = parse_s3_url(url)
        if bool(storage.access_key) != bool(storage.secret_key):
            raise InvalidInput("storage access_key and secret_key must be given together")
        access = resolve_secret(storage.access_key) if storage.access_key else None
        secret = resolve_secret(storage.secret_key) if storage.secret_key else None
        return S3Store(
            bucket,
            prefix,
            endpoint=storage.endpoint,
            region=storage.region,
            profile=storage.profile,
            access_key=access,
            secret_key=secret,
            **tuning,
        )
    from erpops.backends.storage.local import LocalStore

    if scheme == "file":
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"bad storage url {url!r}: file URLs name a local path, file:///path")
        return LocalStore(unquote(parts.path), **tuning)
    if scheme:
        raise InvalidInput(f"unsupported storage url {url!r}: expected s3://bucket/prefix, file:///path or a path")
    return LocalStore(url, **tuning)
