"""docs/runbook-reference.md is generated from the schemas and action docstrings; keep it current."""

from __future__ import annotations

from pathlib import Path

from erpops.cli.reference import markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "runbook-reference.md"


def test_reference_doc_is_current():
    assert DOC.read_text().strip() == markdown().strip(), (
        "regenerate it: uv run erpops runbook reference > docs/runbook-reference.md"
    )


def test_every_action_documents_a_yaml_example():
    from erpops.actions.base import load_actions

    missing = [name for name, cls in load_actions().items() if "```yaml" not in (cls.__doc__ or "")]
    assert missing == []
