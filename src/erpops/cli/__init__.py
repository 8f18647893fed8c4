"""The ``erpops`` command. Thin: parsing, output and one error boundary; no business logic."""

from __future__ import annotations


def main() -> None:
    from erpops.cli.app import run

    run()
