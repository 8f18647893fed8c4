"""docs/configuration.md stays true: its example erpops.yaml loads, and every runtime service in it
parses, with the volumes the Docker runtime will mount."""

from __future__ import annotations

import re
from pathlib import Path

from erpops.backends.runtime import service_specs
from erpops.backends.storage.s3 import parse_s3_url
from erpops.environments import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_documented_configuration_loads(tmp_path: Path) -> None:
    (example,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    path = tmp_path / "erpops.yaml"
    path.write_text(example)
    cfg = load_config(str(path))
    assert set(cfg.environments) == {"production", "staging"}
    prod = cfg.environment("production")
    assert prod.production and prod.storage is not None
    assert parse_s3_url(prod.storage.url) == ("acme-erp-backups", "odoo")
    specs = service_specs(prod)
    assert set(specs) == {"web", "cron"}
    assert specs["web"].mounts()["/srv/odoo/odoo.conf"] == {"bind": "/etc/odoo/odoo.conf", "mode": "ro"}
    assert specs["cron"].mounts()["/srv/odoo/data"] == {"bind": "/var/lib/odoo", "mode": "rw"}
    assert specs["web"].front is not None and specs["web"].front.port == 8069
