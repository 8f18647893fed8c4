"""`erpops --version` / `erpops --help` wall time as a ratio to `python -c "import typer"`.

Runs are interleaved (reference, erpops, reference, ...) in one invocation so machine noise hits
both alike; medians are reported. Targets: --version <= 1.3x, --help <= 1.6x.

    uv run python bench/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Measure what a user's machine does: byte-code caches written once and reused afterwards.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    py = sys.executable
    # The console script a user runs, beside this interpreter (the venv's bin/).
    ERPOPS = str(Path(py).with_name("erpops"))
    cases = {
        "reference: python -c 'import typer'": [py, "-c", "import typer"],
        "erpops --version": [ERPOPS, "--version"],
        "erpops --help": [ERPOPS, "--help"],
    }
    for argv in cases.values():  # warm the page cache and .pyc files
        timed(argv)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            samples[name].append(timed(argv))
    ref = statistics.median(samples["reference: python -c 'import typer'"])
    print(f"{'case':40} {'median':>9} {'ratio':>7}")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"{name:40} {med * 1000:7.0f}ms {med / ref:6.2f}x")
    for case, target in (("erpops --version", 1.3), ("erpops --help", 1.6)):
        ratio = statistics.median(samples[case]) / ref
        print(f"{case} / import typer = {ratio:.2f}x (target <= {target:.2f}x): {'OK' if ratio <= target else 'OVER'}")


if __name__ == "__main__":
    main()
