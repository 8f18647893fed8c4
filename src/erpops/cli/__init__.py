"""The ``erpops`` command. Thin: parsing, output and one error boundary; no business logic."""

from __future__ import annotations

import os
import sys


def standard_streams() -> None:
    """Descriptors 0, 1 and 2 open whatever the caller left (``erpops ... <&- >&-``, a daemon that
    closed them): a closed one is /dev/null, so that the next file erpops opens (the state store,
    a dump) can never become "standard output" for a print or a child process to write into, and
    a closed standard input is no terminal (an approval is refused, exit 5), not a crash."""
    for fd, mode in ((0, "r"), (1, "w"), (2, "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        devnull = os.open(os.devnull, os.O_RDWR)
        if devnull != fd:  # the lowest free descriptor: fd itself unless a lower one was closed too
            os.dup2(devnull, fd)
            os.close(devnull)
        stream = open(fd, mode, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stream
        setattr(sys, ("stdin", "stdout", "stderr")[fd], stream)


def main() -> None:
    from erpops.cli import common
    from erpops.cli.app import run
    from erpops.cli.boundary import ReaderGone

    common.FREEZE_GC = True
    standard_streams()
    sys.stdout = ReaderGone(sys.stdout)
    sys.stderr = ReaderGone(sys.stderr)
    run()
