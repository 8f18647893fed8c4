"""docs/neutralization.md lists the neutralization rules as the code has them."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "neutralization.md"


def test_the_rules_table_in_the_docs_is_current() -> None:
    from erpops.backends.odoo.neutralize import table_markdown

    assert table_markdown() in DOC.read_text(), (
        "docs/neutralization.md is stale: paste the output of "
        "uv run python -c 'from erpops.backends.odoo.neutralize import table_markdown; print(table_markdown())'"
    )
