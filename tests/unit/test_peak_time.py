"""scale-for-peak's --until as a plan shows it: the moment in UTC and, where it differs, as the
engineer's own clock says it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from erpops.actions.peak import describe_time, parse_until


@pytest.fixture
def zone() -> Iterator[object]:
    before = os.environ.get("TZ")

    def set_zone(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_a_local_time_is_shown_both_ways(zone: Any) -> None:
    zone("Europe/Paris")
    when = parse_until("2026-12-08T10:00")  # naive: the engineer's local time
    assert when == datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    assert describe_time(when) == "2026-12-08 09:00 UTC (10:00 CET here)"
    zone("America/New_York")
    assert describe_time(parse_until("2026-12-08T21:00")) == "2026-12-09 02:00 UTC (2026-12-08 21:00 EST here)"
    zone("UTC")
    assert describe_time(parse_until("2026-12-08T10:00")) == "2026-12-08 10:00 UTC"
