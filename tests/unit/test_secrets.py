"""Redaction of a secret in the encodings a runbook or a child process can put it in."""

from __future__ import annotations

import base64
import secrets as random

from jinja2.sandbox import ImmutableSandboxedEnvironment

from erpops.secrets import MASK, Redactor


def test_template_filters_and_base64_forms_of_a_secret_are_redacted() -> None:
    """Regression: Jinja's ``urlencode`` (``/`` kept) and ``tojson`` (``\\u0026``) forms, and base64 of
    the secret inside a longer text (``secret\\n`` from ``echo | base64``, ``user:secret`` of HTTP
    basic auth), reached the console, ``--json`` and the journal."""
    canary = f"canary&<{random.token_hex(6)}>/x y+"
    redactor = Redactor()
    redactor.register(canary)
    env = ImmutableSandboxedEnvironment()
    forms = {
        "urlencode": env.from_string("{{ s|urlencode }}").render(s=canary),
        "tojson": env.from_string("{{ s|tojson }}").render(s=canary),
        "base64 with newline": base64.b64encode(f"{canary}\n".encode()).decode(),
        "basic auth": base64.b64encode(f"erpops:{canary}".encode()).decode(),
        "base64 after 2 bytes": base64.b64encode(f"ab{canary}".encode()).decode(),
        "urlsafe base64": base64.urlsafe_b64encode(canary.encode()).decode(),
    }
    for name, text in forms.items():
        out = redactor.redact(f"token={text};")
        assert MASK in out, name
        assert canary not in out and text not in out, f"{name}: {out}"
        assert redactor.contains(text), name
    # ordinary text, and base64 of other values, stay as they are
    for text in ("an ordinary sentence", base64.b64encode(b"hello world, nothing secret here").decode()):
        assert redactor.redact(text) == text
