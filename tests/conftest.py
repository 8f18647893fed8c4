"""Session-wide test isolation: erpops writes its state, config, data, cache and sandbox under a temporary
directory, never the developer's home (tests that need their own set them again)."""

from __future__ import annotations

import os
import shutil
import tempfile

# the session's one Odoo-shaped cron database (odoo_db); a PostgreSQL archiving through erpops (archiving)
pytest_plugins = ["tests.fixtures.odoo_crons", "tests.fixtures.archiving"]

_ISOLATED = ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "ERPOPS_SANDBOX_DIR")
_root: str | None = None


def pytest_configure(config: object) -> None:
    global _root
    _root = tempfile.mkdtemp(prefix="erpops-tests-")
    os.chmod(_root, 0o755)  # the embedded PostgreSQL user must be able to traverse it
    for name in _ISOLATED:
        path = os.path.join(_root, name.lower())
        os.makedirs(path, exist_ok=True)
        os.environ[name] = path
    for name in ("ERPOPS_CONFIG", "ERPOPS_STATE", "ERPOPS_RUNBOOK_PATH"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: object) -> None:
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)
