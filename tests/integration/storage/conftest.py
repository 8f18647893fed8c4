"""Fixtures for the storage tests: the moto S3 server plugin and a fake action context.

pytest refuses ``pytest_plugins`` outside the top-level conftest, so the S3 fixtures are imported.
"""

from tests.fixtures.s3 import *  # noqa: F403
