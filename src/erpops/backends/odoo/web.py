"""What erpops asks a running Odoo server over HTTP (no SDK: Odoo's JSON-RPC over urllib)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from erpops.errors import TargetUnreachable


def version_info(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The server's ``/web/webclient/version_info``: ``server_version`` (the full string, e.g.
    ``18.0+e`` or ``18.0-20250101``), ``server_version_info``, ``server_serie``. A server that does
    not answer or answers something else raises :class:`TargetUnreachable` saying which."""
    endpoint = url.rstrip("/") + "/web/webclient/version_info"
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "params": {}}).encode()
    req = urllib.request.Request(endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read(1024 * 1024))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TargetUnreachable(f"{endpoint}: {getattr(exc, 'reason', exc)}") from None
    result = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("server_version"), str):
        raise TargetUnreachable(f"{endpoint}: not an Odoo version_info answer")
    return result
