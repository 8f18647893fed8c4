"""kill -9 in the middle of a failover's promote step: the servers changed, the journal and the
topology record did not.

Regression (issue 16, item 1): the topology record kept naming the fenced old primary (later
backups came from the stale server); ``runs resume`` refused ("already a primary; nothing
promoted"); a new failover named the wrong cause; ``sandbox reseed-standby`` then left the record
naming the re-created standby as the primary, and every later failover refused.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

from .conftest import DB, Pair, writable_error

# the real CLI, killed (SIGKILL) right after the server promoted the standby, before the step or
# anything after it could be journaled
KILLED_IN_PROMOTE = textwrap.dedent(
    """
    import os, signal, sys
    from erpops.backends.postgres import replication

    real = replication.promote

    def promote(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    replication.promote = promote
    sys.argv = ["erpops", *sys.argv[1:]]
    from erpops.cli import main

    main()
    """
)


def _topology(pair: Pair) -> dict[str, Any]:
    with sqlite3.connect(pair.work / "state.db") as conn:
        row = conn.execute(
            "SELECT data FROM records WHERE kind = 'topology' AND environment = 'drill' AND key = 'current'"
        ).fetchone()
    return json.loads(row[0]) if row else {}


def _killed_failover(pair: Pair) -> str:
    killed = pair.cli("failover", "--env", "drill", "--yes", "--json", program=("-c", KILLED_IN_PROMOTE))
    assert killed.code == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert killed.ran("promote") and not killed.ran("repoint")
    return str(killed.events[0]["run_id"])


def test_a_failover_killed_in_promote_is_finished_by_resume(healthy: tuple[Pair, Path, Path]) -> None:
    pair, old_primary, old_standby = healthy
    pair.write_config({"drill": pair.env_config(old_primary, old_standby)})
    pair.reset_state()
    run_id = _killed_failover(pair)
    assert not pair.in_recovery(old_standby)  # the server promoted it
    assert writable_error(pair.dsn(old_primary, DB)) is not None  # the old primary is fenced
    assert _topology(pair) == {}  # and nothing says so yet

    # a new failover explains exactly, and changes nothing
    again = pair.cli("failover", "--env", "drill", "--yes", "--json")
    assert again.code == 1, again.stdout[-3000:]
    error = again.finished()["error"]
    assert "it is a primary on timeline" in error and f"erpops runs resume {run_id}" in error, error
    assert not again.ran("fence") and not again.ran("promote")

    # the resume finishes it: promote sees its own earlier work, then repoint, health gate, record
    resumed = pair.cli("runs", "resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    promote = resumed.step("promote")["outputs"]
    assert promote["already_promoted"] is True and promote["caught_up"] in (True, None), promote
    topo = _topology(pair)
    assert topo["verified"] is True and str(old_standby) in topo["primary"], topo
    assert writable_error(pair.dsn(old_standby, DB)) is None


def test_reseed_after_a_killed_failover_records_what_the_servers_are(healthy: tuple[Pair, Path, Path]) -> None:
    pair, old_primary, old_standby = healthy
    pair.write_config({"drill": pair.env_config(old_primary, old_standby)})
    pair.reset_state()
    run_id = _killed_failover(pair)

    reseeded = pair.cli("sandbox", "reseed-standby", "--json")
    assert reseeded.code == 0, reseeded.stdout[-2000:] + reseeded.stderr[-2000:]
    assert pair.in_recovery(old_primary) and not pair.in_recovery(old_standby)
    topo = _topology(pair)  # the record follows the servers (regression: it named the new standby primary)
    assert str(old_standby) in topo["primary"] and str(old_primary) in topo["standby"], topo

    # the killed run cannot promote the re-created standby: the server it fenced takes writes again
    stale = pair.cli("runs", "resume", run_id, "--yes", "--json")
    assert stale.code != 0
    assert "two primaries" in stale.step("promote")["error"], stale.step("promote")
    assert pair.in_recovery(old_primary) and writable_error(pair.dsn(old_standby, DB)) is None

    # and the next failover works on the servers as they are (back to the first server)
    res = pair.cli("failover", "--env", "drill", "--yes", "--json")
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not pair.in_recovery(old_primary) and writable_error(pair.dsn(old_primary, DB)) is None
    assert str(old_primary) in _topology(pair)["primary"]
