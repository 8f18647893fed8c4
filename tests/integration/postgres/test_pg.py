"""erpops.backends.postgres.client: connection failures, DSN handling and the client-tool version check."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from erpops.backends.postgres import client as pg
from erpops.errors import ExitCode, InvalidInput, TargetUnreachable
from tests.fixtures.postgres import PgServer, free_port

pytestmark = pytest.mark.postgres


def test_connect_to_missing_socket_is_unreachable_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as err:
        pg.connect(f"postgresql://postgres@/odoo?host={tmp_path}&port=5999", connect_timeout=2)
    assert time.monotonic() - started < 3
    assert err.value.exit_code == ExitCode.UNREACHABLE
    assert str(tmp_path) in str(err.value) and '"odoo"' in str(err.value)


def test_connect_refused_tcp_names_host_never_password() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as err:
        pg.connect(f"postgresql://odoo:Sup3r-S3cret@127.0.0.1:{port}/prod", connect_timeout=2)
    assert time.monotonic() - started < 3
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and '"prod"' in message
    assert "Sup3r-S3cret" not in message
    assert "Sup3r-S3cret" not in repr(err.value.__cause__) and err.value.__suppress_context__


def test_connect_to_missing_database_names_it(pg_primary: PgServer) -> None:
    with pytest.raises(TargetUnreachable, match='"no_such_db"'):
        pg.connect(pg_primary.dsn(), "no_such_db")


def test_connect_and_server_version(pg_primary: PgServer) -> None:
    with pg.connect(pg_primary.dsn()) as conn:
        assert pg.server_major(conn) >= 18
        assert pg.server_version(conn).startswith(str(pg.server_major(conn)))
        assert pg.in_recovery(conn) is False


def test_malformed_dsn_never_echoes_it() -> None:
    with pytest.raises(InvalidInput) as err:
        pg.connect("postgresql://u:Hidden-Pw-99@host:notaport/db?bogus_option=1")
    assert "Hidden-Pw-99" not in str(err.value)


def test_libpq_env_carries_password_and_overrides_dbname() -> None:
    env = pg.libpq_env("postgresql://odoo:p%40ss@db.example:6432/prod?sslmode=require", dbname="other")
    assert env == {
        "PGUSER": "odoo",
        "PGPASSWORD": "p@ss",
        "PGHOST": "db.example",
        "PGPORT": "6432",
        "PGDATABASE": "other",
        "PGSSLMODE": "require",
    }
    assert pg.libpq_env("host=/run/pg dbname=odoo") == {"PGHOST": "/run/pg", "PGDATABASE": "odoo"}


def test_describe_socket_and_tcp() -> None:
    assert (
        pg.describe("postgresql://postgres@/x?host=/tmp/s&port=5433")
        == 'database "x" on socket /tmp/s (port 5433) as postgres'
    )
    assert pg.describe("postgresql://u:pw@h:1/d", "e") == 'database "e" on h:1 as u'


def test_client_tools_found_and_new_enough(pg_primary: PgServer) -> None:
    with pg.connect(pg_primary.dsn()) as conn:
        major = pg.server_major(conn)
        for tool in ("pg_dump", "pg_restore", "psql", "pg_basebackup", "pg_ctl"):
            client = pg.client_for(conn, tool)
            assert client.major >= major and client.path.is_file(), client


def _fake_tool(directory: Path, name: str, version: str) -> Path:
    """A stand-in client tool that reports ``version`` and records any other invocation."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    marker = directory / f"{name}.ran"
    tool.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "{name} (PostgreSQL) {version}"; exit 0; fi\n'
        f'touch "{marker}"\n'
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return marker


def test_older_pg_dump_is_refused_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = _fake_tool(tmp_path / "bin", "pg_dump", "15.4")
    monkeypatch.setenv(pg.BINDIR_ENV, str(tmp_path / "bin"))
    with pytest.raises(pg.ClientTooOld) as err:
        pg.find_client("pg_dump", min_major=18)
    assert "pg_dump 15.4 is older than the PostgreSQL 18 server" in str(err.value)
    assert pg.BINDIR_ENV in str(err.value)
    assert not marker.exists()
    assert pg.find_client("pg_dump", min_major=15).version == (15, 4)


def test_newest_client_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(tmp_path / "old", "pg_restore", "16.2")
    _fake_tool(tmp_path / "new", "pg_restore", "19.1")
    monkeypatch.delenv(pg.BINDIR_ENV, raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'old'}{os.pathsep}{tmp_path / 'new'}{os.pathsep}{os.environ['PATH']}")
    assert pg.find_client("pg_restore", min_major=18).version == (19, 1)


def test_missing_tool_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pg.BINDIR_ENV, str(tmp_path))
    with pytest.raises(pg.ClientNotFound, match="pg_dump not found"):
        pg.find_client("pg_dump")


def _counting_tool(path: Path, version: str) -> Path:
    """A stand-in ``pg_dump`` that answers ``--version`` with ``version`` and counts the times asked."""
    asked = path.parent / "asked"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho x >> "{asked}"\necho "pg_dump (PostgreSQL) {version}"\n')
    path.chmod(0o755)
    return asked


def _new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what this process learned, as a new erpops run starts with nothing in memory."""
    monkeypatch.setattr(pg, "_versions", None)
    pg._clients_seen.clear()


def test_tool_versions_are_remembered_between_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(pg.BINDIR_ENV, str(tmp_path / "bin"))
    tool = tmp_path / "bin" / "pg_dump"
    asked = _counting_tool(tool, "17.2")
    _new_process(monkeypatch)
    assert pg.find_client("pg_dump").version == (17, 2)
    assert pg.cache_file() == tmp_path / "cache" / "erpops" / "pg-tools.json"
    assert json.loads(pg.cache_file().read_text())[str(tool)][3:] == [17, 2]
    for _ in range(3):  # later runs: answered from the cache file, the tool is not run again
        _new_process(monkeypatch)
        assert pg.find_client("pg_dump").version == (17, 2)
    assert asked.read_text().count("x") == 1

    _counting_tool(tool, "18.1")  # upgraded in place: another file, asked again
    os.utime(tool, ns=(tool.stat().st_atime_ns, tool.stat().st_mtime_ns + 1_000_000_000))
    _new_process(monkeypatch)
    assert pg.find_client("pg_dump").version == (18, 1)
    assert asked.read_text().count("x") == 2


def test_a_broken_version_cache_is_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(pg.BINDIR_ENV, str(tmp_path / "bin"))
    tool = tmp_path / "bin" / "pg_dump"
    asked = _counting_tool(tool, "17.2")
    for garbage in ("{not json", '{"x": 1}', "[]", json.dumps({str(tool): [1, 2, 3, 99, "0"]})):
        pg.cache_file().parent.mkdir(parents=True, exist_ok=True)
        pg.cache_file().write_text(garbage)
        _new_process(monkeypatch)
        assert pg.find_client("pg_dump").version == (17, 2)
    assert asked.read_text().count("x") == 4
    stamp = [tool.stat().st_ino, tool.stat().st_size, tool.stat().st_mtime_ns]
    assert json.loads(pg.cache_file().read_text()) == {str(tool): [*stamp, 17, 2]}


def test_debians_pg_wrapper_is_passed_over_for_the_tools_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wrapper = tmp_path / "share" / "pg_wrapper"
    wrapper_asked = _counting_tool(wrapper, "15.3")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pg_dump").symlink_to(wrapper)  # /usr/bin/pg_dump -> ../share/postgresql-common/pg_wrapper
    _counting_tool(tmp_path / "lib" / "15" / "bin" / "pg_dump", "15.3")
    monkeypatch.setattr(pg, "DEBIAN_BINDIRS", str(tmp_path / "lib" / "*" / "bin"))
    monkeypatch.delenv(pg.BINDIR_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    _new_process(monkeypatch)
    found = [c.path for c in pg.list_clients("pg_dump")]
    assert tmp_path / "lib" / "15" / "bin" / "pg_dump" in found
    assert tmp_path / "bin" / "pg_dump" not in found
    assert not wrapper_asked.exists()

    # only the wrapper where erpops is told to look: asked, each run (its answer depends on the cluster)
    monkeypatch.setenv(pg.BINDIR_ENV, str(tmp_path / "bin"))
    for _ in range(2):
        _new_process(monkeypatch)
        assert [(c.path, c.version) for c in pg.list_clients("pg_dump")] == [(tmp_path / "bin" / "pg_dump", (15, 3))]
    assert wrapper_asked.read_text().count("x") == 2


def test_no_home_directory_only_costs_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cron or archive_command environment without HOME (nor a passwd entry): the tools are
    still found, asked each run."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(pg.BINDIR_ENV, str(tmp_path / "bin"))
    asked = _counting_tool(tmp_path / "bin" / "pg_dump", "17.2")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    for _ in range(2):
        _new_process(monkeypatch)
        assert pg.find_client("pg_dump").version == (17, 2)
    assert asked.read_text().count("x") == 2
