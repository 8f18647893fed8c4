"""Which backups to keep: a grandfather-father-son policy with safety rules that always win.

Pure: give it the backups (id, time, state, Object Lock retention) and the time now, get back a
keep/delete decision with its reasons for each. ``storage.prune`` does the deleting.

The policy keeps, among usable backups (complete, verified or restore-tested), the newest backup
of each of the last ``daily`` days that have one, the last ``weekly`` ISO weeks, ``monthly``
months and ``yearly`` years (UTC). Periods without a backup do not use up a slot, so backups that
stopped for a while are not all pruned away. Whatever the policy says, these are kept:

- the newest usable backup, the newest verified one and the newest restore-tested one;
- anything under Object Lock retention or legal hold (it could not be deleted anyway);
- backups the caller pins, with its reason (``storage.prune`` pins the pre-deploy backups of the
  newest releases: ``rollback --restore-backup`` restores them);
- an incomplete backup (no manifest) younger than the grace period: it may still be running.

Incomplete backups older than the grace period, and backups whose verification failed, are
deleted.

```python
decisions = decide(candidates, Policy(daily=7, weekly=4, monthly=12), now=datetime.now(UTC))
for d in decisions:
    print(d.backup_id, "keep" if d.keep else "delete", "; ".join(d.reasons))
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from erpops.errors import InvalidInput

INCOMPLETE = "incomplete"
COMPLETE = "complete"
VERIFIED = "verified"
RESTORE_TESTED = "restore-tested"
CORRUPT = "corrupt"
#: its artifacts match the manifest, but a restore drill could not restore it (pg_restore failed)
UNRESTORABLE = "unrestorable"
USABLE = frozenset({COMPLETE, VERIFIED, RESTORE_TESTED})
STATES = frozenset({INCOMPLETE, COMPLETE, VERIFIED, RESTORE_TESTED, CORRUPT, UNRESTORABLE})

#: Backups dated this far in the future are kept (clock skew between machines).
FUTURE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class Policy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    yearly: int = 0
    #: How long an incomplete backup is left alone (it may still be uploading).
    grace: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        for name in ("daily", "weekly", "monthly", "yearly"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"retention {name} must be 0 or more, not {getattr(self, name)}")
        if self.daily + self.weekly + self.monthly + self.yearly == 0:
            raise InvalidInput("retention policy keeps nothing: give daily, weekly, monthly or yearly > 0")
        if self.grace < timedelta(0):
            raise InvalidInput("retention grace period cannot be negative")

    def describe(self) -> str:
        parts = [f"{n} {label}" for label, n in self._periods() if n]
        return ", ".join(parts)

    def _periods(self) -> list[tuple[str, int]]:
        return [("daily", self.daily), ("weekly", self.weekly), ("monthly", self.monthly), ("yearly", self.yearly)]


@dataclass(frozen=True)
class Candidate:
    """One backup as retention sees it."""

    backup_id: str
    time: datetime
    state: str
    #: Latest Object Lock retain-until date over the backup's objects.
    retain_until: datetime | None = None
    legal_hold: bool = False
    #: Last time an object of the backup was written (for incomplete backups).
    last_activity: datetime | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown backup state {self.state!r}")

    def locked(self, now: datetime) -> bool:
        return self.legal_hold or (self.retain_until is not None and self.retain_until > now)


@dataclass(frozen=True)
class Decision:
    backup_id: str
    time: datetime
    state: str
    keep: bool
    reasons: tuple[str, ...]

    @property
    def action(self) -> str:
        return "keep" if self.keep else "delete"

    def as_dict(self) -> dict[str, object]:
        return {
            "backup_id": self.backup_id,
            "time": self.time.isoformat(),
            "state": self.state,
            "action": self.action,
            "reasons": list(self.reasons),
        }


_PERIOD_KEYS: dict[str, Callable[[datetime], str]] = {
    "daily": lambda t: t.strftime("%Y-%m-%d"),
    "weekly": lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]),
    "monthly": lambda t: t.strftime("%Y-%m"),
    "yearly": lambda t: t.strftime("%Y"),
}


def decide(
    candidates: Iterable[Candidate], policy: Policy, now: datetime, pinned: Mapping[str, str] | None = None
) -> list[Decision]:
    """Keep/delete with reasons for every candidate, newest first. ``pinned``: backup id -> why it
    must be kept (a usable pinned backup is never deleted; a corrupt or incomplete one still is)."""
    ordered = sorted(candidates, key=lambda c: (c.time, c.backup_id), reverse=True)
    keep: dict[str, list[str]] = {c.backup_id: [] for c in ordered}
    for c in ordered:
        if c.state in USABLE and pinned and c.backup_id in pinned:
            keep[c.backup_id].append(pinned[c.backup_id])
    usable = [c for c in ordered if c.state in USABLE]

    for label, count in policy._periods():
        seen: list[str] = []
        for c in usable:
            if len(seen) >= count:
                break
            period = _PERIOD_KEYS[label](c.time)
            if period in seen:
                continue
            seen.append(period)
            keep[c.backup_id].append(f"{label} {len(seen)}/{count} ({period})")

    protections: list[tuple[Callable[[Candidate], bool], str]] = [
        (lambda c: c.state in USABLE, "newest complete backup"),
        (lambda c: c.state in (VERIFIED, RESTORE_TESTED), "newest verified backup"),
        (lambda c: c.state == RESTORE_TESTED, "newest restore-tested backup"),
    ]
    for match, reason in reversed(protections):
        newest = next((c for c in ordered if match(c)), None)
        if newest is not None:
            keep[newest.backup_id].insert(0, reason)

    decisions = []
    for c in ordered:
        reasons = keep[c.backup_id]
        kept = bool(reasons)
        if c.time > now + FUTURE_SLACK:
            kept = True
            reasons.append("dated in the future (clock skew?)")
        if not kept:
            if c.state == INCOMPLETE:
                activity = max(c.time, c.last_activity or c.time)
                if now - activity < policy.grace:
                    kept = True
                    reasons.append(
                        f"incomplete but younger than the {_span(policy.grace)} grace period (may be running)"
                    )
                else:
                    reasons.append(f"incomplete (no manifest) and older than the {_span(policy.grace)} grace period")
            elif c.state == CORRUPT:
                reasons.append("failed verification (checksum or size mismatch)")
            elif c.state == UNRESTORABLE:
                reasons.append("a restore drill could not restore it")
            else:
                reasons.append(f"outside the retention policy ({policy.describe()})")
        if c.locked(now):
            what = "legal hold" if c.legal_hold else f"Object Lock retention until {c.retain_until:%Y-%m-%d %H:%M}Z"
            if not kept:
                reasons.append(f"but kept: under {what}")
            else:
                reasons.append(f"under {what}")
            kept = True
        decisions.append(Decision(c.backup_id, c.time, c.state, kept, tuple(reasons)))
    return decisions


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}-day"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}-hour"
    return f"{seconds}-second"
