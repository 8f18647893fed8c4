"""Local files: atomic writes name the file asked for when they cannot be made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from erpops import files


def test_an_atomic_write_that_cannot_start_names_the_file_asked_for(tmp_path: Path) -> None:
    with pytest.raises(OSError) as exc:  # /proc takes no new file: the temporary file beside it fails
        files.write_atomic("/proc/erpops-metrics.prom", b"x")
    assert "/proc/erpops-metrics.prom" in str(exc.value) and ".erpops-metrics.prom." not in str(exc.value)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError) as exc:  # a parent that is a file
        files.write_atomic(blocker / "report.xml", b"x")
    assert str(blocker / "report.xml") in str(exc.value)


def test_an_atomic_write_appears_whole_with_its_mode(tmp_path: Path) -> None:
    target = files.write_atomic(tmp_path / "a" / "b.txt", b"whole", 0o640)
    assert target.read_bytes() == b"whole" and (target.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path / "a") == ["b.txt"]
