"""docs/configuration.md stays true: its example erpops.yaml loads, and every runtime service in it
parses, with the volumes the Docker runtime will mount."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from erpops.backends.runtime import service_specs
from erpops.backends.runtime.docker.runtime import _mounts
from erpops.backends.storage.s3 import parse_s3_url
from erpops.environments import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_documented_configuration_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example, kubernetes = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    path = tmp_path / "erpops.yaml"
    path.write_text(example)
    cfg = load_config(str(path))
    assert set(cfg.environments) == {"production", "staging"}
    prod = cfg.environment("production")
    assert prod.production and prod.storage is not None
    assert parse_s3_url(prod.storage.url) == ("acme-erp-backups", "odoo")
    specs = service_specs(prod)
    assert set(specs) == {"web", "cron"}
    assert _mounts(specs["web"])["/srv/odoo/odoo.conf"] == {"bind": "/etc/odoo/odoo.conf", "mode": "ro"}
    assert _mounts(specs["cron"])["/srv/odoo/data"] == {"bind": "/var/lib/odoo", "mode": "rw"}
    assert prod.ingress is not None and prod.ingress.host == "erp.example.com" and prod.ingress.service == "web"
    assert specs["web"].docker.stop_timeout == 30
    assert "deprecated" not in capsys.readouterr().err  # the documented spelling is the current one
    path.write_text(kubernetes)  # the Kubernetes example loads too
    k8s = load_config(str(path)).environment("prod")
    assert k8s.runtime.kind == "kubernetes" and k8s.runtime.project == "odoo"
    assert service_specs(k8s)["web"].healthcheck.start_period == 60


def test_the_old_docker_spelling_works_with_one_line_notice_each(capsys: pytest.CaptureFixture[str]) -> None:
    from erpops.environments import Environment

    old = {
        "port": 8069,
        "publish_bind": "0.0.0.0",
        "stop_timeout": 3,
        "healthcheck": {"test": ["CMD-SHELL", "true"], "interval": 2},
    }
    env = Environment.model_validate({"name": "legacy", "runtime": {"kind": "docker", "services": {"web": old}}})
    spec = service_specs(env)["web"]
    assert (spec.docker.publish_bind, spec.docker.stop_timeout) == ("0.0.0.0", 3)
    assert spec.docker.healthcheck_test == ["CMD-SHELL", "true"] and spec.healthcheck.interval == 2
    assert "__moved__" not in (spec.model_extra or {})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("erpops: deprecated: environment 'legacy'") for line in lines)
    assert "runtime.services.web.publish_bind is now runtime.services.web.docker.publish_bind" in lines[0]
    service_specs(env)
    assert capsys.readouterr().err == ""  # once per process


def test_the_nginx_front_is_refused_saying_what_replaced_it(tmp_path: Path) -> None:
    from erpops.errors import ValidationFailed

    path = tmp_path / "erpops.yaml"
    for front in ("docker: {front: {image: nginx, port: 8080}}", "front: {image: nginx, port: 8080}"):
        path.write_text(f"environments:\n  e:\n    runtime:\n      kind: docker\n      services:\n"
                        f"        web: {{port: 8069, {front}}}\n")  # fmt: skip
        with pytest.raises(ValidationFailed) as exc:
            load_config(str(path))
        said = str(exc.value.issues[0])
        assert ":6 " in said and "replaced by the environment's Traefik front" in said and "ingress:" in said, said
