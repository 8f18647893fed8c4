"""Open the state store named by the configuration (journal, records, locks)."""

from __future__ import annotations

from erpops.environments import Config
from erpops.state import MemoryStateStore, StateStore


def open_state_store(config: Config) -> StateStore:
    """The state store for ``config.state``. Until the durable stores exist, runs are kept in memory."""
    return MemoryStateStore()
