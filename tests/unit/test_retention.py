"""Retention decisions, as data: backups (age in days, state, lock) -> which are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from erpops.errors import InvalidInput
from erpops.retention import Candidate, Policy, decide

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def _id(age_days: float) -> str:
    t = NOW - timedelta(days=age_days)
    return f"{t:%Y%m%dT%H%M%SZ}-{int(age_days * 100) % 10000:04d}"


def _cands(spec: list[tuple[float, str] | tuple[float, str, dict[str, Any]]]) -> list[Candidate]:
    out = []
    for item in spec:
        age, state = item[0], item[1]
        extra: dict[str, Any] = dict(item[2]) if len(item) > 2 else {}
        if "lock_days" in extra:
            extra["retain_until"] = NOW + timedelta(days=extra.pop("lock_days"))
        if "active_days_ago" in extra:
            extra["last_activity"] = NOW - timedelta(days=extra.pop("active_days_ago"))
        out.append(Candidate(backup_id=_id(age), time=NOW - timedelta(days=age), state=state, **extra))
    return out


def _daily(days: int, state: str = "complete", start: float = 0.1) -> list[tuple[float, str]]:
    return [(start + d, state) for d in range(days)]


CASES: list[dict[str, Any]] = [
    {
        "name": "daily window: 10 daily backups, keep 7",
        "policy": Policy(daily=7, weekly=0, monthly=0),
        "backups": _daily(10),
        "deleted": [7.1, 8.1, 9.1],
    },
    {
        "name": "two backups on one day: only the newest of the day counts",
        "policy": Policy(daily=2, weekly=0, monthly=0),
        "backups": [(0.1, "complete"), (0.2, "complete"), (1.1, "complete"), (2.1, "complete")],
        "deleted": [0.2, 2.1],
    },
    {
        "name": "gfs over 90 days of dailies: 7 daily + 4 weekly + 3 months",
        "policy": Policy(daily=7, weekly=4, monthly=12),
        "backups": _daily(90),
        # kept: days 0-6; ISO-week newest: 0.1 (Mon this week), 1.1 (Sun prev week), 8.1, 15.1;
        # months: Nov (0.1), Oct 31 (23.1), Sep 30 (54.1), Aug 31 (84.1)
        "kept": [0.1, 1.1, 2.1, 3.1, 4.1, 5.1, 6.1, 8.1, 15.1, 23.1, 54.1, 84.1],
    },
    {
        "name": "gaps do not use slots: a month without backups keeps older ones",
        "policy": Policy(daily=3, weekly=0, monthly=0),
        "backups": [(0.1, "complete"), (40.1, "complete"), (41.1, "complete"), (42.1, "complete")],
        "deleted": [42.1],
    },
    {
        "name": "newest verified and newest restore-tested are kept whatever the policy",
        "policy": Policy(daily=1, weekly=0, monthly=0),
        "backups": [(0.1, "complete"), (1.1, "verified"), (2.1, "restore-tested"), (3.1, "restore-tested")],
        "deleted": [3.1],
        "reasons": {1.1: "newest verified backup", 2.1: "newest restore-tested backup"},
    },
    {
        "name": "restore-tested counts as verified",
        "policy": Policy(daily=1, weekly=0, monthly=0),
        "backups": [(0.1, "complete"), (1.1, "restore-tested"), (2.1, "verified")],
        "deleted": [2.1],
    },
    {
        "name": "object under retention is never deleted",
        "policy": Policy(daily=1, weekly=0, monthly=0),
        "backups": [(0.1, "complete"), (5.1, "complete", {"lock_days": 3}), (6.1, "complete", {"lock_days": -1})],
        "deleted": [6.1],
        "reasons": {5.1: "but kept: under Object Lock retention until"},
    },
    {
        "name": "legal hold is never deleted",
        "policy": Policy(daily=1, weekly=0, monthly=0),
        "backups": [(0.1, "complete"), (5.1, "complete", {"legal_hold": True})],
        "deleted": [],
    },
    {
        "name": "incomplete: young ones may be running, old ones go",
        "policy": Policy(daily=7, weekly=0, monthly=0),
        "backups": [(0.01, "incomplete"), (0.5, "incomplete"), (1.5, "incomplete"), (3.0, "complete")],
        "deleted": [1.5],
        "reasons": {0.5: "may be running", 1.5: "older than the 1-day grace period"},
    },
    {
        "name": "incomplete started long ago but still writing is kept",
        "policy": Policy(daily=7, weekly=0, monthly=0),
        "backups": [(2.0, "incomplete", {"active_days_ago": 0.1}), (3.0, "complete")],
        "deleted": [],
    },
    {
        "name": "custom grace period",
        "policy": Policy(daily=7, weekly=0, monthly=0, grace=timedelta(hours=6)),
        "backups": [(0.1, "incomplete"), (0.3, "incomplete")],
        "deleted": [0.3],
    },
    {
        "name": "incomplete under retention is kept",
        "policy": Policy(daily=7),
        "backups": [(9.0, "incomplete", {"lock_days": 1})],
        "deleted": [],
    },
    {
        "name": "incomplete and corrupt backups take no daily slot",
        "policy": Policy(daily=2, weekly=0, monthly=0),
        "backups": [(0.1, "incomplete"), (1.1, "corrupt"), (2.1, "complete"), (3.1, "complete"), (4.1, "complete")],
        "deleted": [1.1, 4.1],
        "reasons": {1.1: "failed verification"},
    },
    {
        "name": "the newest complete backup is kept even when it is old",
        "policy": Policy(daily=0, weekly=0, monthly=1),
        "backups": [(400.0, "complete"), (500.0, "complete")],
        "deleted": [500.0],
    },
    {
        "name": "only corrupt backups: all deleted, none protected",
        "policy": Policy(daily=7),
        "backups": [(1.1, "corrupt"), (2.1, "corrupt")],
        "deleted": [1.1, 2.1],
    },
    {
        "name": "future-dated backups (clock skew) are kept",
        "policy": Policy(daily=1, weekly=0, monthly=0),
        "backups": [(-1.0, "incomplete"), (0.1, "complete"), (1.1, "complete")],
        "deleted": [1.1],
    },
    {
        "name": "yearly slots",
        "policy": Policy(daily=1, weekly=0, monthly=0, yearly=3),
        "backups": [
            (0.1, "complete"),
            (400.0, "complete"),
            (401.0, "complete"),
            (800.0, "complete"),
            (1200.0, "complete"),
        ],
        "deleted": [401.0, 1200.0],
    },
    {
        "name": "empty catalog",
        "policy": Policy(),
        "backups": [],
        "deleted": [],
    },
]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_retention_case(case: dict[str, Any]) -> None:
    candidates = _cands(case["backups"])
    decisions = decide(candidates, case["policy"], NOW)
    assert [d.backup_id for d in decisions] == sorted((c.backup_id for c in candidates), reverse=True)
    by_id = {d.backup_id: d for d in decisions}
    deleted = sorted(d.backup_id for d in decisions if not d.keep)
    if "deleted" in case:
        assert deleted == sorted(_id(a) for a in case["deleted"])
    if "kept" in case:
        assert sorted(d.backup_id for d in decisions if d.keep) == sorted(_id(a) for a in case["kept"])
    for age, fragment in case.get("reasons", {}).items():
        assert any(fragment in r for r in by_id[_id(age)].reasons), by_id[_id(age)].reasons
    for d in decisions:
        assert d.reasons, f"{d.backup_id} has no reason"


def test_decision_as_dict() -> None:
    (d,) = decide(_cands([(0.1, "verified")]), Policy(), NOW)
    assert d.as_dict()["action"] == "keep"
    reasons = d.as_dict()["reasons"]
    assert isinstance(reasons, list) and reasons[:2] == ["newest complete backup", "newest verified backup"]


@pytest.mark.parametrize(
    "kwargs",
    [{"daily": -1}, {"daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}, {"grace": timedelta(seconds=-1)}],
)
def test_bad_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        Policy(**kwargs)


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError):
        Candidate("x", NOW, "weird")


def test_policy_describe() -> None:
    assert Policy(daily=7, weekly=4, monthly=12).describe() == "7 daily, 4 weekly, 12 monthly"


def test_pinned_backups_are_kept_with_the_callers_reason_unless_unusable() -> None:
    # three backups the same day: daily keeps only the newest; the two older are pre-deploy backups
    candidates = _cands([(0.1, "complete"), (0.2, "complete"), (0.3, "complete"), (0.4, "corrupt")])
    pins = {_id(a): f"pre-deploy backup of release r{a}" for a in (0.2, 0.4)}
    by_id = {d.backup_id: d for d in decide(candidates, Policy(daily=1, weekly=0, monthly=0), NOW, pinned=pins)}
    assert by_id[_id(0.2)].keep and "pre-deploy backup of release r0.2" in by_id[_id(0.2)].reasons
    assert not by_id[_id(0.3)].keep  # not pinned: the policy decides
    assert not by_id[_id(0.4)].keep  # pinned but corrupt: useless for a restore
    unpinned = {d.backup_id: d for d in decide(candidates, Policy(daily=1, weekly=0, monthly=0), NOW)}
    assert not unpinned[_id(0.2)].keep
