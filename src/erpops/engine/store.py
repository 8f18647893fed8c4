"""Open the state store named by the configuration (journal, records, locks).

Which store, first match wins:

1. the ``ERPOPS_STATE`` environment variable;
2. ``state:`` in erpops.yaml;
3. SQLite in the XDG state directory, ``~/.local/state/erpops/erpops.db``.

Accepted values: ``sqlite:///path/to/file.db`` (``sqlite:///~/...`` too) or a plain file path;
``postgresql://...`` / ``postgres://...`` (libpq URL or ``key=value`` string); ``memory:`` (nothing
kept, for tests and benchmarks). Any of them may be a secret reference (``env:VAR``,
``file:PATH``) so that a PostgreSQL password stays out of erpops.yaml.
"""

from __future__ import annotations

import os

from erpops import secrets
from erpops.environments import Config
from erpops.errors import InvalidInput
from erpops.state import MemoryStateStore, StateStore


def state_url(config: Config | None) -> str:
    """The configured state store URL (``""`` means the default SQLite file)."""
    url = os.environ.get("ERPOPS_STATE") or (config.state if config is not None else None) or ""
    url = url.strip()
    if url and secrets.is_reference(url) and not url.startswith(("sqlite:", "postgres", "memory:")):
        try:
            url = secrets.resolve(url).strip()
        except secrets.SecretReferenceError as exc:
            raise InvalidInput(f"state store: {exc}") from None
    return url


def open_state_store(config: Config | None) -> StateStore:
    """The state store for ``config`` (backends are imported here, so importing the CLI stays cheap)."""
    url = state_url(config)
    if url in ("memory:", "memory"):
        return MemoryStateStore()
    if url.startswith(("postgresql://", "postgres://")) or ("host=" in url and "dbname=" in url):
        from erpops.backends.state.postgres import PostgresStateStore

        return PostgresStateStore(url)
    from erpops.backends.state.sqlite import SqliteStateStore, path_from_url

    if url and "://" in url and not url.startswith("sqlite://"):
        raise InvalidInput(
            f"state store URL {url.split('://')[0]}://... is not supported; use sqlite:///path or postgresql://..."
        )
    return SqliteStateStore(path_from_url(url) if url else None)


def open_existing_state_store(config: Config | None) -> StateStore | None:
    """For a dry run: the state store when one exists already (plans read the release history and
    the failover topology from it; a dry run writes nothing, so none is created); else None."""
    url = state_url(config)
    if url in ("memory:", "memory"):
        return None
    if url.startswith(("postgresql://", "postgres://")) or ("host=" in url and "dbname=" in url):
        return open_state_store(config)
    from erpops.backends.state.sqlite import default_path, path_from_url

    if url and "://" in url and not url.startswith("sqlite://"):
        return open_state_store(config)  # refuses the unsupported scheme, as the run would
    path = path_from_url(url) if url else default_path()
    return open_state_store(config) if path.exists() else None
