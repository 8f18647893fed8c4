"""The ``erpops`` command. Thin: parsing, output and one error boundary; no business logic."""

from __future__ import annotations


def main() -> None:
    from erpops.cli import common
    from erpops.cli.app import run

    common.FREEZE_GC = True
    run()
