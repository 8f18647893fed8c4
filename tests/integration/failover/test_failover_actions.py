"""The failover actions one at a time (``erpops run`` on small runbooks), on the real pair."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from erpops.backends.postgres import client as pg
from tests.fixtures.sql import scalar

from .conftest import DB, Pair, writable_error

pytestmark = pytest.mark.postgres

HEAD = """\
apiVersion: erpops/v1
kind: Runbook
metadata: {name: t, version: 1.0.0}
"""


def _run(pair: Pair, body: str, *args: str):
    path = pair.work / "t.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    pair.reset_state()
    return pair.cli("run", str(path), "--env", "drill", "--json", "--yes", *args)


def test_replication_status_on_primary_and_standby(healthy: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = healthy
    pair.write_config({"drill": pair.env_config(primary, standby)})
    res = _run(
        pair,
        """\
        steps:
          - {id: on-primary, action: postgres.replication_status, with: {server: primary, expect: primary}}
          - {id: on-standby, action: postgres.replication_status, with: {server: standby, expect: standby, max_lag: 5s}}
        """,
    )
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    prim = res.step("on-primary")["outputs"]
    assert prim["role"] == "primary" and prim["in_recovery"] is False and prim["timeline"] >= 1
    assert [s["state"] for s in prim["standbys"]] == ["streaming"]
    assert prim["standbys"][0]["application_name"] == standby.name
    stby = res.step("on-standby")["outputs"]
    assert stby["role"] == "standby" and stby["in_recovery"] is True
    assert stby["receiver_status"] == "streaming" and stby["replay_paused"] == "not paused"
    assert stby["primary_reachable"] is True and stby["lag_bytes"] is not None
    assert stby["replay_lag_seconds"] is not None and stby["replay_lag_seconds"] <= 5


def test_fence_by_command_when_the_primary_does_not_answer(healthy: tuple[Pair, Path, Path]) -> None:
    pair, _primary, standby = healthy
    marker = pair.work / "fenced"
    marker.unlink(missing_ok=True)
    cfg = pair.env_config(pair.root / "lost-primary", standby)
    cfg["database"]["fence_command"] = ["sh", "-c", f'echo "$ERPOPS_ENVIRONMENT" > {marker}']
    pair.write_config({"drill": cfg})
    res = _run(pair, "steps:\n  - {id: fence, action: postgres.fence}\n")
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = res.step("fence")["outputs"]
    assert out["fenced"] is True and out["method"] == "command" and out["command_exit_code"] == 0
    assert marker.read_text().strip() == "drill"
    # --force without any way to fence: the step goes on, saying so
    pair.write_config({"drill": pair.env_config(pair.root / "lost-primary", standby)})
    res = _run(pair, "steps:\n  - {id: fence, action: postgres.fence, with: {force: true}}\n")
    assert res.code == 0
    out = res.step("fence")["outputs"]
    assert out["fenced"] is False and out["forced"] is True and out["method"] == "none"
    assert any(e.get("level") == "warning" and "--force" in e.get("message", "") for e in res.events)


def test_a_failure_after_fencing_unfences_while_the_standby_is_still_a_standby(
    healthy: tuple[Pair, Path, Path],
) -> None:
    pair, primary, standby = healthy
    pair.write_config({"drill": pair.env_config(primary, standby)})
    res = _run(
        pair,
        """\
        steps:
          - id: fence
            action: postgres.fence
            undo: {action: postgres.unfence, with: {method: "{{ steps.fence.outputs.method }}"}}
          - id: read-only-now
            action: postgres.wait_writable
            with: {timeout: 300ms}
          - {id: boom, action: assert, with: {that: false, message: "later step failed"}}
        """,
    )
    assert res.code == 1 or res.code == 6, res.stdout[-2000:]
    fence = res.step("fence", "main")["outputs"]
    assert fence["method"] == "sql" and fence["fenced"] is True and fence["lsn"]
    assert res.step("read-only-now")["status"] == "failed"  # the fenced primary took no write
    error = res.step("read-only-now")["error"] or ""
    assert "not currently accepting connections" in error or "read-only" in error, error
    assert res.finished()["state"] == "rolled-back" and res.code == 6
    undo = res.step("fence", "undo")["outputs"]
    assert undo["unfenced"] is True and f"database {DB} accepts connections" in undo["undone"]
    assert writable_error(pair.dsn(primary, DB)) is None
    with pg.connect(pair.dsn(primary)) as conn:  # exactly as before: nothing of the fence is left
        assert scalar(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (DB,)) is True
        assert scalar(conn, "SELECT current_setting('erpops.fence', true)") in (None, "")
        assert scalar(conn, "SHOW default_transaction_read_only") == "off"
    assert pair.in_recovery(standby)


def test_wait_writable_on_a_standby_times_out(healthy: tuple[Pair, Path, Path]) -> None:
    pair, primary, standby = healthy
    pair.write_config({"drill": pair.env_config(primary, standby)})
    res = _run(pair, "steps:\n  - {id: w, action: postgres.wait_writable, with: {server: standby, timeout: 300ms}}\n")
    assert res.code == 1
    assert "still does not take writes after 0.3s" in res.step("w")["error"]
    assert "recovery" in res.step("w")["error"]
