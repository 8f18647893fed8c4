"""The recorded topology is applied to an environment only while erpops.yaml names the same servers."""

from __future__ import annotations

import json

from erpops.environments import Database, Environment
from erpops.records import apply_topology, forget_topology
from erpops.state import MemoryStateStore

A = "postgresql://postgres@/postgres?host=/srv/a&port=5432"
B = "postgresql://postgres@/postgres?host=/srv/b&port=5433"


def _env(primary: str = A, standby: str = B) -> Environment:
    return Environment(
        name="prod",
        database=Database(dsn=primary, name="erp", fence_command=["fence", primary[-4:]]),
        standby=Database(dsn=standby, name="odoo"),
    )


def _record(store: MemoryStateStore, primary: str, standby: str) -> None:
    store.put_record("topology", "prod", "current", {"primary_dsn": primary, "standby_dsn": standby, "run_id": "r1"})


def test_no_record_no_change() -> None:
    env = _env()
    assert apply_topology(env, MemoryStateStore()) is env
    assert apply_topology(env, None) is env


def test_a_promoted_standby_becomes_the_primary_with_its_own_fence_command() -> None:
    store = MemoryStateStore()
    _record(store, B, A)
    env = apply_topology(_env(), store)
    assert env.database is not None and env.standby is not None
    assert env.database.dsn == B and env.standby.dsn == A
    assert env.database.name == "erp"  # the application's database keeps its configured name
    assert env.database.fence_command is None  # the fence command belongs to the server
    assert env.standby.fence_command == ["fence", "5432"]
    again = apply_topology(env, store).database  # idempotent
    assert again is not None and again.dsn == B


def test_config_edited_since_the_failover_wins() -> None:
    store = MemoryStateStore()
    _record(store, B, A)
    edited = _env(primary=B, standby="postgresql://postgres@/postgres?host=/srv/c&port=5434")
    assert apply_topology(edited, store) is edited
    swapped_by_hand = _env(primary=B, standby=A)  # the file already says what the record says
    assert apply_topology(swapped_by_hand, store).database.dsn == B  # type: ignore[union-attr]  # the test environment declares a database


def test_forget_topology() -> None:
    store = MemoryStateStore()
    _record(store, B, A)
    forget_topology(store, "prod")
    assert apply_topology(_env(), store).database.dsn == A  # type: ignore[union-attr]  # the test environment declares a database


def test_env_check_sees_the_servers_as_the_last_failover_left_them(healthy) -> None:
    """Regression: after a failover (and the old primary re-created as a standby) erpops.yaml still
    names the old roles; every run applies the recorded topology but ``env check`` did not, and
    exited 3 ("the standby is not a standby")."""
    from erpops.backends.state.sqlite import SqliteStateStore
    from erpops.records import CURRENT, TOPOLOGY

    pair, primary, standby = healthy
    pair.reset_state()
    # erpops.yaml as written before the failover: its "database" is the standby now, and back
    cfg = pair.env_config(standby, primary)
    pair.write_config({"drill": cfg})
    res = pair.cli("env", "check", "--env", "drill", "--json")
    assert res.code == 3 and "not a standby" in res.stdout  # nothing recorded: the file is all there is
    store = SqliteStateStore(pair.work / "state.db")
    try:
        store.put_record(
            TOPOLOGY,
            "drill",
            CURRENT,
            {"primary_dsn": cfg["standby"]["dsn"], "standby_dsn": cfg["database"]["dsn"], "run_id": "run-fo"},
        )
    finally:
        store.close()
    res = pair.cli("env", "check", "--env", "drill", "--json")
    assert res.code == 0, res.stdout + res.stderr
    rows = {r["target"]: r for r in (json.loads(line) for line in res.stdout.splitlines() if line.startswith("{"))}
    assert rows["database"]["status"] == "ok" and "primary" in rows["database"]["detail"]
    assert rows["standby"]["status"] == "ok" and "in recovery" in rows["standby"]["detail"]
