"""erpops.yaml: where it is found, file:line errors, secret references resolved only when needed;
and which state store a configuration opens."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erpops.backends.state.sqlite import SqliteStateStore, default_path, path_from_url
from erpops.engine.store import open_state_store
from erpops.environments import load_config
from erpops.errors import InvalidInput, ValidationFailed
from erpops.state import MemoryStateStore

CONFIG = """
state: sqlite:///{db}
environments:
  prod:
    tier: production
    database: {{dsn: "env:ERPOPS_TEST_UNSET_DSN", name: odoo}}
    storage: {{url: "file://{root}/backups", secret_key: "file:/nonexistent/secret"}}
  staging:
    runtime: {{kind: docker}}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "erpops.yaml"
    path.write_text(textwrap.dedent(CONFIG).format(db=tmp_path / "state.db", root=tmp_path))
    return path


def test_config_is_found_by_flag_env_var_or_working_directory(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ERPOPS_CONFIG", raising=False)
    assert set(load_config(str(config_file)).environments) == {"prod", "staging"}
    monkeypatch.setenv("ERPOPS_CONFIG", str(config_file))
    assert load_config().source == str(config_file)
    monkeypatch.delenv("ERPOPS_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert load_config().source == str(Path.cwd() / "erpops.yaml")
    monkeypatch.chdir(tmp_path / "..")
    builtin = load_config()
    assert set(builtin.environments) == {"sandbox"} and "built-in" in (builtin.source or "")


def test_config_errors_name_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("environments:\n  prod:\n    tier: prod\n    database: {dsn: x, nme: odoo}\n")
    with pytest.raises(ValidationFailed) as exc:
        load_config(str(bad))
    issues = [str(i) for i in exc.value.issues]
    assert any(i.startswith(f"{bad}:3 environments.prod.tier") for i in issues), issues
    assert any(f"{bad}:4" in i and "nme" in i for i in issues), issues
    with pytest.raises(ValidationFailed, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_secret_references_stay_unresolved_until_a_step_needs_them(config_file: Path) -> None:
    cfg = load_config(str(config_file))  # ERPOPS_TEST_UNSET_DSN is not set: loading does not care
    prod = cfg.environment("prod")
    assert prod.database is not None and prod.database.dsn == "env:ERPOPS_TEST_UNSET_DSN"
    assert prod.as_template()["database"]["dsn"] == "env:ERPOPS_TEST_UNSET_DSN"
    with pytest.raises(InvalidInput, match="unknown environment 'nope'"):
        cfg.environment("nope")


def test_state_store_selection(config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERPOPS_STATE", raising=False)
    cfg = load_config(str(config_file))
    store = open_state_store(cfg)
    assert isinstance(store, SqliteStateStore) and store.path == tmp_path / "state.db"
    store.close()
    monkeypatch.setenv("ERPOPS_STATE", str(tmp_path / "other.db"))  # the variable wins over the file
    store = open_state_store(cfg)
    assert isinstance(store, SqliteStateStore) and store.path == tmp_path / "other.db"
    store.close()
    monkeypatch.setenv("ERPOPS_STATE", "memory:")
    assert isinstance(open_state_store(cfg), MemoryStateStore)
    monkeypatch.setenv("ERPOPS_STATE", "mysql://x/y")
    with pytest.raises(InvalidInput, match="not supported"):
        open_state_store(cfg)
    monkeypatch.setenv("ERPOPS_STATE_URL_FOR_TEST", f"sqlite:///{tmp_path / 'ref.db'}")
    monkeypatch.setenv("ERPOPS_STATE", "env:ERPOPS_STATE_URL_FOR_TEST")  # a reference, resolved
    store = open_state_store(cfg)
    assert isinstance(store, SqliteStateStore) and store.path == tmp_path / "ref.db"
    store.close()


def test_default_sqlite_location_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ERPOPS_STATE", raising=False)
    assert default_path() == tmp_path / "xdg" / "erpops" / "erpops.db"
    store = open_state_store(None)
    assert isinstance(store, SqliteStateStore) and store.path == default_path()
    store.close()
    assert path_from_url("sqlite:///~/x.db") == Path(os.path.expanduser("~/x.db"))
    assert path_from_url("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert path_from_url("/abs/y.db") == Path("/abs/y.db")


def test_env_list_and_check(config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from erpops.cli.app import app

    monkeypatch.delenv("ERPOPS_STATE", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    runner = CliRunner()
    listed = runner.invoke(app, ["env", "list", "--config", str(config_file), "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"name": "prod"' in listed.output and "env:ERPOPS_TEST_UNSET_DSN" in listed.output

    checked = runner.invoke(app, ["env", "check", "--env", "prod", "--config", str(config_file), "--json"])
    assert checked.exit_code == 3, checked.output
    assert "ERPOPS_TEST_UNSET_DSN is not set" in checked.output  # the reference is resolved for the check
    assert '"target": "state store", "status": "ok"' in checked.output
    staging = runner.invoke(app, ["env", "check", "--env", "staging", "--config", str(config_file), "--json"])
    assert staging.exit_code == 3 and '"target": "runtime", "status": "failed"' in staging.output


def test_an_unparsable_state_url_is_a_user_error(tmp_path, monkeypatch) -> None:
    """Regression: a state store URL that cannot be right (a port that is not a number) exited 3
    (unreachable) after trying to connect; it is the user's input: exit 2, naming the port."""
    import pytest

    from erpops.engine.store import open_state_store
    from erpops.environments import Config
    from erpops.errors import ExitCode, InvalidInput

    monkeypatch.delenv("ERPOPS_STATE", raising=False)
    for url in ("postgresql://erpops@db.internal:notaport/erpops", "host=db.internal dbname=erpops port=99999"):
        with pytest.raises(InvalidInput) as caught:
            open_state_store(Config(state=url))
        assert caught.value.exit_code == ExitCode.INVALID_INPUT
        assert "is not a port number" in str(caught.value) and "state:" in str(caught.value)


BAD_INPUT = """
environments:
  typo:
    database: {dsn: "postgresql://u@h:5432/postgres", name: odoo}
    runtime:
      kind: docker
      services:
        web: {image: "odoo:18", replicaz: 3}
        worker: {image: "odoo:18", vars: {queue: mail}}
  vault:
    database: {dsn: "vault:secret/data/db", name: odoo}
  port:
    database: {dsn: "postgresql://u@h:54x32/postgres", name: odoo}
  query:
    database: {dsn: "postgresql://u@h/postgres?sslmod=require", name: odoo}
  pairs:
    database: {dsn: "host=h port=5432 dbname", name: odoo}
  keyword:
    database: {dsn: "host=h prot=5432", name: odoo}
  ftp:
    database: {dsn: "mysql://u@h/db", name: odoo}
  keys:
    database: {dsn: "env:DSN", name: odoo}
    storage: {url: "s3://b/p", secret_key: "vault:aws/key"}
"""


def test_bad_services_dsns_and_secret_schemes_are_found_when_the_file_is_read(tmp_path: Path) -> None:
    """Regression (issue 16 item 11): these ran (a typo'd service key with the default), or were
    found only after the run was journaled, without file:line; `vault:` was taken as a literal."""
    bad = tmp_path / "erpops.yaml"
    bad.write_text(BAD_INPUT.lstrip())
    with pytest.raises(ValidationFailed) as exc:
        load_config(str(bad))
    issues = {str(i).split(" ", 1)[0].rsplit(":", 1)[1]: str(i) for i in exc.value.issues}
    expected = {
        "7": "environments.typo.runtime.services.web.replicaz: unknown field",
        "10": "unknown secret reference scheme 'vault:'",
        "12": "port '54x32' is not a port number",
        "14": "unknown parameter 'sslmod'",
        "16": "expected key=value at 'dbname'",
        "18": "unknown keyword 'prot'",
        "20": "not a PostgreSQL DSN: mysql://",
        "23": "environments.keys.storage.secret_key: unknown secret reference scheme 'vault:'",
    }
    for line, fragment in expected.items():
        assert line in issues and fragment in issues[line], (line, issues)
    assert len(exc.value.issues) == len(expected), issues  # `vars` and the good DSNs pass


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://odoo:pw@db1:5432,db2:5433/odoo?sslmode=verify-full&target_session_attrs=read-write",
        "postgresql://postgres@/postgres?host=/var/run/postgresql&port=5432",
        "postgres://[::1]:5432/odoo",
        "host=/tmp port=5432 dbname=odoo user=postgres password='a b\\'c' connect_timeout=5",
        "dbname=odoo",
        "env:ODOO_DSN",
        "file:~/.secrets/dsn",
    ],
)
def test_dsns_libpq_takes_are_accepted(tmp_path: Path, dsn: str) -> None:
    from erpops.environments import dsn_problem

    assert dsn_problem(dsn) is None


def test_a_secret_parameter_with_an_unknown_scheme_is_refused() -> None:
    from erpops import secrets

    with pytest.raises(secrets.SecretReferenceError, match="unknown secret reference scheme 'vault:'"):
        secrets.resolve("vault:secret/db")
    assert secrets.resolve("s3cr3t-literal") == "s3cr3t-literal"  # a literal secret is still a literal
