"""Build the contract tests' images and push them where a real cluster can pull them.

``uv run python scripts/test_images.py REPOSITORY`` builds the images the Docker tests build
(busybox httpd answering ``/web/health`` with its version and ``$MARKER``; one answering 500; one
whose ``/bin/migrate`` exits 3) as ``REPOSITORY:healthy-v1``, ``:healthy-v2``, ``:unhealthy`` and
``:migration-fails``, then pushes them (``--no-push`` leaves them in the local engine, e.g. for
``kind load docker-image``). ``make test-cluster`` runs it before the contract tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TAGS = ("healthy-v1", "healthy-v2", "unhealthy", "migration-fails")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", help="e.g. registry.example:5000/erpops-test-odoo")
    parser.add_argument("--no-push", action="store_true", help="build and tag only")
    args = parser.parse_args()
    from tests.fixtures.docker import build_images, engine_client

    client = engine_client()
    build_images(client, args.repository)
    if args.no_push:
        print(f"built {args.repository}:{{{','.join(TAGS)}}} (not pushed)")
        return 0
    for tag in TAGS:
        for line in client.api.push(args.repository, tag=tag, stream=True, decode=True):
            if "error" in line:
                print(f"push {args.repository}:{tag}: {line['error']}", file=sys.stderr)
                return 1
        print(f"pushed {args.repository}:{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
