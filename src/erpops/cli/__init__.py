"""The ``erpops`` command. Thin: parsing, output and one error boundary; no business logic."""

from __future__ import annotations


def main() -> None:
    import sys

    from erpops.cli import common
    from erpops.cli.app import run
    from erpops.cli.boundary import ReaderGone

    common.FREEZE_GC = True
    sys.stdout = ReaderGone(sys.stdout)
    sys.stderr = ReaderGone(sys.stderr)
    run()
