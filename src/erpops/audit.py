"""The audit trail: an append-only JSON-lines file of who ran what, approvals and outcomes.

One file per state store (beside the SQLite database, or in the XDG state directory for a
PostgreSQL store, which also keeps the same entries in its ``audit`` table). Each entry is one
line, redacted, written with a single ``write`` on a descriptor opened with ``O_APPEND`` and then
``fsync``-ed, so concurrent writers never interleave and a crash never leaves half a line behind
another's. The file is created ``0600`` (and put back to ``0600`` if someone widened it).

```json
{"ts":"2026-11-23T02:00:00.123+00:00","event":"run.started","run_id":"20261123T020000Z-ab12cd",
 "who":"alice@ops-laptop","runbook":"backup","version":"1.3.0","environment":"prod","params":{...}}
```

Events: ``run.started``, ``run.resumed``, ``approval``, ``run.finished``, ``lock.cleared``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from erpops.secrets import redact, redact_obj


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        """Append one redacted entry; raises OSError when the file cannot be written."""
        line = redact(json.dumps(redact_obj(entry), default=str, separators=(",", ":"), sort_keys=False)) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                    os.fchmod(fd, 0o600)
                written = os.write(fd, data)
                if written != len(data):  # only on a full disk; say so rather than leave half a line
                    raise OSError(f"short write to audit file {self.path}")
                os.fsync(fd)
            finally:
                os.close(fd)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Read the entries back (oldest first); missing file = no entries."""
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)
        except FileNotFoundError:
            return
