"""Templates (issue 12, item 1): the shipped ones render for an environment; a user's template
wins file by file; an undefined name or a bad value names the template's file and line; a secret
enters only through ``secret()``, marks the rendering and never shows; the ``ingress`` settings
are checked when erpops.yaml is read, with its line."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from erpops import rendering
from erpops.environments import Environment, load_config
from erpops.errors import ValidationFailed

CANARY = "canary-odoo-pw-51d3"


def _env(**odoo: object) -> Environment:
    env = Environment.model_validate(
        {
            "database": {"dsn": "postgresql://erpops@db.internal:5433/postgres", "name": "erp"},
            "odoo": odoo,
            "ingress": {"host": "erp.example.com"},
        }
    )
    env.name = "prod"
    return env


def _odoo_conf(env: Environment) -> rendering.Rendered:
    return rendering.render("odoo/odoo.conf", {"env": env.as_template(), "db": {"host": "db.internal", "port": 5433}})


def test_odoo_conf_renders_the_environment_and_keeps_its_secrets_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODOO_PW", CANARY)
    done = _odoo_conf(_env(db_password="env:ODOO_PW", workers=4, max_cron_threads=2, data_dir="/srv/odoo"))
    conf = configparser.RawConfigParser()
    conf.read_string(done.text)
    o = conf["options"]
    assert (o["db_host"], o["db_port"], o["db_user"], o["db_password"]) == ("db.internal", "5433", "odoo", CANARY)
    assert (o["db_name"], o["dbfilter"], o["list_db"], o["proxy_mode"]) == ("erp", "^erp$", "False", "True")
    assert (o["workers"], o["max_cron_threads"], o["gevent_port"], o["data_dir"]) == ("4", "2", "8072", "/srv/odoo")
    assert o["admin_passwd"] == "False" and o["db_maxconn"] == "64"
    assert done.secret and CANARY not in done.shown() and "db_password = ***" in done.shown()
    assert not rendering.render("traefik/traefik.yml", _traefik()).secret


def _traefik() -> dict[str, object]:
    front: dict[str, object] = {
        "listen": {"http": 80, "https": 443, "api": 8080},
        "dynamic_dir": "/etc/traefik/dynamic",
        "state_dir": "/data",
        "name": "p",
        "servers": {"web": [], "websocket": []},
        "generation": "g",
        "cert_file": None,
        "key_file": None,
    }
    return {"env": _env().as_template(), "front": front}


def test_the_traefik_templates_render_yaml() -> None:
    static = yaml.safe_load(rendering.render("traefik/traefik.yml", _traefik()).text)
    assert static["entryPoints"]["web"]["http"]["redirections"]["entryPoint"]["to"] == ":443"
    dynamic = yaml.safe_load(rendering.render("traefik/dynamic.yml", _traefik()).text)
    assert set(dynamic["http"]["routers"]) == {"p-web", "p-websocket", "p-database-manager"}
    assert dynamic["http"]["services"]["p-web"]["loadBalancer"]["servers"] == []
    assert "tls" not in dynamic  # no certificate files: Traefik's own default certificate


def test_an_undefined_name_or_bad_value_names_the_template_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "odoo").mkdir()
    (tmp_path / "odoo" / "odoo.conf.j2").write_text("[options]\nworkers = {{ env.odoo.workers }}\nx = {{ env.nope }}\n")
    monkeypatch.setenv("ERPOPS_TEMPLATE_PATH", str(tmp_path))
    with pytest.raises(rendering.TemplateFailed) as undefined:
        _odoo_conf(_env())
    assert str(undefined.value).startswith(f"{tmp_path / 'odoo' / 'odoo.conf.j2'}:3: ")
    assert "'nope'" in str(undefined.value) and undefined.value.exit_code == 2

    (tmp_path / "odoo" / "odoo.conf.j2").write_text("[options]\n\ndbfilter = {{ env.odoo.dbfilter | conf }}\n")
    with pytest.raises(rendering.TemplateFailed) as multiline:
        _odoo_conf(_env(dbfilter="^erp$\nadmin_passwd = x"))  # a value that would add a key
    assert ":3: a value for an INI file spans lines" in str(multiline.value)

    (tmp_path / "odoo" / "odoo.conf.j2").write_text("[options]\n{% if %}\n")
    with pytest.raises(rendering.TemplateFailed) as syntax:
        _odoo_conf(_env())
    assert "odoo.conf.j2:2: template syntax error" in str(syntax.value)

    (tmp_path / "odoo" / "odoo.conf.j2").write_text("{{ ''.__class__.__mro__ }}\n")
    with pytest.raises(rendering.TemplateFailed) as sandboxed:
        _odoo_conf(_env())
    assert "odoo.conf.j2:1:" in str(sandboxed.value) and "unsafe" in str(sandboxed.value)

    (tmp_path / "odoo" / "odoo.conf.j2").write_text("pw = {{ secret('env:NOT_SET_ANYWHERE') }}\n")
    with pytest.raises(rendering.TemplateFailed) as unset:
        _odoo_conf(_env())
    assert "odoo.conf.j2:1: environment variable NOT_SET_ANYWHERE is not set" in str(unset.value)


def test_a_users_template_wins_file_by_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odoo").mkdir()
    (tmp_path / "odoo" / "odoo.conf.j2").write_text("[options]\nworkers = {{ env.odoo.workers * 2 }}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "erpops" / "templates" / "odoo").mkdir(parents=True)
    (tmp_path / "cfg" / "erpops" / "templates" / "odoo" / "odoo.conf.j2").write_text("[options]\nworkers = 1\n")
    assert "workers = 1" in _odoo_conf(_env()).text  # ~/.config/erpops/templates over the package
    monkeypatch.setenv("ERPOPS_TEMPLATE_PATH", str(tmp_path))
    done = _odoo_conf(_env(workers=3))
    assert done.text == "[options]\nworkers = 6\n" and done.source == tmp_path / "odoo" / "odoo.conf.j2"
    assert rendering.render("traefik/traefik.yml", _traefik()).source.parent.parent.name == "templates"  # shipped


BAD_INGRESS = """
environments:
  prod:
    ingress:
      host: "erp example com"
      allow_from: [10.0.0.0/8, "not-a-net"]
      headers: {"Bad Name": x}
      tls: {cert_file: /etc/c.pem}
  acme:
    ingress:
      host: erp.example.com
      tls: {acme_email: nobody}
  odoo:
    odoo: {db_password: "vault:odoo/pw"}
    ingress: {host: erp.example.com, rate_limit: {average: 0}}
  drills:
    drills: {schedule: "3 * *", image: erpops:1, config_secret: c, env_from_secrets: {ERPOPS_STATE: "state"}}
"""


def test_ingress_and_odoo_settings_are_checked_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "erpops.yaml"
    path.write_text(BAD_INGRESS.lstrip())
    with pytest.raises(ValidationFailed) as exc:
        load_config(str(path))
    said = "\n".join(str(i) for i in exc.value.issues)
    for fragment in (":4 environments.prod.ingress.host", "is not a host name",
                     "'not-a-net' is not a network", "'Bad Name' is not an HTTP header name",
                     "tls needs both cert_file and key_file", "acme_email 'nobody' is not an e-mail address",
                     "unknown secret reference scheme 'vault:'", "rate_limit.average",
                     "'3 * *' is not a five-field cron expression", "'state' is not secret-name#key"):  # fmt: skip
        assert fragment in said, said
    good = tmp_path / "good.yaml"
    good.write_text("environments:\n  p:\n    ingress: {host: ERP.Example.com, tls: {acme_email: ops@example.com}}\n")
    assert load_config(str(good)).environment("p").ingress.host == "erp.example.com"  # type: ignore[union-attr]
