"""One redaction mechanism for everything erpops writes.

Every resolved secret value is registered here; :func:`redact` replaces each registered value
(and its common encodings) with ``***`` in any string. Console output, JSON events, the journal,
the audit file, exception text and saved tracebacks all pass through it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from erpops.errors import InvalidInput

MASK = "***"
_MIN_LEN = 4  # shorter values would mask ordinary text; they are refused as secrets elsewhere
_MIN_B64_CORE = 8  # base64 fragments shorter than this would mask ordinary base64 text


def _html_safe_json(value: str) -> str:
    """The string as Jinja's ``tojson`` writes it (``<>&'`` as ``\\u`` escapes), without quotes."""
    text = json.dumps(value)[1:-1]
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return text


def _b64_cores(value: str, encode: Callable[[bytes], bytes]) -> list[str]:
    """The base64 characters that encode only ``value``'s bytes, for each of the three positions it
    can take inside a longer encoded text (``user:secret``, ``secret\\n``...): what is the same
    whatever comes before or after it."""
    raw = value.encode()
    cores = []
    for offset in range(3):
        encoded = encode(b"\0" * offset + raw).decode()
        first = -(-offset // 3)  # the first 3-byte group made of the value's bytes only
        last = (offset + len(raw)) // 3
        cores.append(encoded[4 * first : 4 * last])
    return cores


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._ordered: list[str] = []

    def register(self, value: str | None) -> None:
        if not value or len(value) < _MIN_LEN:
            return
        variants = {
            value,
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            _html_safe_json(value),  # Jinja's tojson
            urllib.parse.quote(value, safe=""),
            urllib.parse.quote(value, safe="/"),  # Jinja's urlencode
            urllib.parse.quote_plus(value),
            base64.b64encode(value.encode()).decode(),
            base64.urlsafe_b64encode(value.encode()).decode(),
        }
        cores = {core for encode in (base64.b64encode, base64.urlsafe_b64encode) for core in _b64_cores(value, encode)}
        with self._lock:
            self._values.update(v for v in variants if len(v) >= _MIN_LEN)
            self._values.update(c for c in cores if len(c) >= _MIN_B64_CORE)
            self._ordered = sorted(self._values, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def contains(self, text: str) -> bool:
        """Does ``text`` hold a registered secret (or one of its encodings)?"""
        return any(value in text for value in self._ordered)

    def redact_obj(self, obj: Any) -> Any:
        """Redact every string inside a JSON-like structure (keys included)."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact(str(k)): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.redact_obj(v) for v in obj]
        return obj

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._ordered = []


#: The process-wide redactor.
REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


def redact_obj(obj: Any) -> Any:
    return REDACTOR.redact_obj(obj)


class SecretReferenceError(InvalidInput, ValueError):
    """A secret reference that cannot be resolved (variable unset, file unreadable, unknown scheme):
    the user's to fix, exit 2 with one line wherever it surfaces."""


_Resolver = Callable[[str], str]
_extra_resolvers: dict[str, _Resolver] = {}


def register_resolver(scheme: str, resolver: _Resolver) -> None:
    """Add a reference scheme (e.g. ``k8s-secret``) resolved by a backend."""
    _extra_resolvers[scheme] = resolver


def is_reference(value: str) -> bool:
    scheme, sep, _ = value.partition(":")
    return bool(sep) and (scheme in ("env", "file") or scheme in _extra_resolvers or scheme == "k8s-secret")


#: what a secret reference looks like: a scheme, a colon, something after it
_REFERENCE = re.compile(r"([a-z][a-z0-9+.-]{1,30}):\S")
#: schemes that are not secret references but values erpops takes as they are (DSNs, URLs)
_NOT_SECRETS = ("postgresql", "postgres", "http", "https", "s3", "sqlite")


def unknown_scheme(value: str) -> str | None:
    """The scheme of ``value`` when it looks like a secret reference erpops cannot resolve
    (``vault:secret/db``), else None. Such a value is refused, never taken as a literal secret."""
    m = _REFERENCE.match(value)
    if m is None or value[m.end(1) :].startswith("://"):
        return None  # not scheme:rest, or a URL
    scheme = m.group(1)
    if scheme in ("env", "file", "k8s-secret") or scheme in _extra_resolvers or scheme in _NOT_SECRETS:
        return None
    return scheme


def unknown_scheme_message(scheme: str) -> str:
    return (
        f"unknown secret reference scheme '{scheme}:' (erpops resolves env:VAR, file:PATH and "
        "k8s-secret:namespace/name#key); a literal value that looks like a reference is refused too: "
        "give it as env:VAR or file:PATH"
    )


def resolve(value: str) -> str:
    """Resolve ``env:VAR``, ``file:PATH`` or a registered scheme; register the result for redaction.

    A string that is not a reference is treated as a literal secret and registered too.
    """
    scheme, sep, rest = value.partition(":")
    if not sep:
        REDACTOR.register(value)
        return value
    if scheme == "env":
        if rest not in os.environ:
            raise SecretReferenceError(f"environment variable {rest} is not set (secret reference env:{rest})")
        resolved = os.environ[rest]
    elif scheme == "file":
        path = Path(rest).expanduser()
        try:
            resolved = path.read_text().rstrip("\n")
        except OSError as exc:
            raise SecretReferenceError(f"cannot read secret file {path}: {exc.strerror}") from None
    elif scheme in _extra_resolvers:
        resolved = _extra_resolvers[scheme](rest)
    elif scheme == "k8s-secret":
        raise SecretReferenceError(
            f"k8s-secret reference {rest!r} needs the Kubernetes backend, which is not available"
        )
    elif unknown_scheme(value):
        raise SecretReferenceError(unknown_scheme_message(scheme))
    else:
        REDACTOR.register(value)
        return value
    REDACTOR.register(resolved)
    return resolved
