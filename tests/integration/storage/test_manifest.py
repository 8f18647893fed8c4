"""The manifest model, backup ids and keys (no server needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from erpops.manifest import (
    FORMAT_VERSION,
    Artifact,
    InvalidManifest,
    Manifest,
    RestoreTestMarker,
    VerifyMarker,
    backup_prefix,
    backup_time,
    find_backup_id,
    is_backup_id,
    new_backup_id,
    object_key,
    restore_commands,
    split_key,
)

T = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _manifest() -> Manifest:
    return Manifest(
        backup_id="20261123T020000Z-ab12",
        environment="prod",
        database="odoo",
        started_at=T,
        ended_at=T,
        snapshot_time=T,
        postgres_version="18.6",
        pg_dump_version="18.6",
        odoo_version="17.0",
        modules={"base": "17.0.1.3"},
        row_counts={"sale_order": 42},
        artifacts={
            "db": Artifact(
                key="prod/20261123T020000Z-ab12/db.dump.zst", size=10, sha256="a" * 64, format="pg_dump-custom"
            ),
            "filestore": Artifact(
                key="prod/20261123T020000Z-ab12/filestore.tar.zst", size=5, sha256="b" * 64, format="tar"
            ),
        },
        erpops_version="0.1.0",
        runbook={"name": "backup", "version": "1.3.0", "sha256": "c" * 64},
    )


def test_backup_ids_sort_by_time() -> None:
    a = new_backup_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    b = new_backup_id(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert a.startswith("20260102T030405Z-") and is_backup_id(a) and a < b
    assert backup_time(a) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert new_backup_id() != new_backup_id()
    for bad in ("20261123T020000Z", "2026-11-23-ab12", "20261123T020000Z-AB12", "x"):
        assert not is_backup_id(bad)
    with pytest.raises(ValueError):
        backup_time("nope")


def test_keys() -> None:
    bid = "20261123T020000Z-ab12"
    assert backup_prefix("prod", bid) == f"prod/{bid}/"
    assert object_key("prod", bid, "db.dump.zst") == f"prod/{bid}/db.dump.zst"
    assert split_key(f"prod/{bid}/manifest.json") == ("prod", bid, "manifest.json")
    assert split_key("prod/notes/x") is None and split_key(f"prod/{bid}/a/b") is None
    for value in (bid, f"prod/{bid}/", f"prod/{bid}/manifest.json", f"s3://bucket/pre/prod/{bid}/db.dump.zst"):
        assert find_backup_id(value) == bid
    assert find_backup_id("prod/latest") is None


def test_manifest_round_trip_and_restore_commands() -> None:
    m = _manifest()
    raw = m.to_json()
    doc = json.loads(raw)
    assert doc["format_version"] == FORMAT_VERSION and doc["runbook"]["version"] == "1.3.0"
    back = Manifest.from_json(raw)
    assert back == m and back.total_size == 15
    cmds = restore_commands(m, "s3://erp-backups/base", target_db="odoo_copy")
    assert any("aws s3 cp s3://erp-backups/base/prod/20261123T020000Z-ab12/db.dump.zst -" in c for c in cmds)
    assert any("pg_restore --no-owner -d odoo_copy" in c for c in cmds)
    assert any("tar -x" in c for c in cmds)
    local = restore_commands(m, "file:///var/backups")
    assert any(c.startswith("createdb odoo_restored && cat /var/backups/prod/") for c in local)


def test_unknown_fields_are_kept_newer_formats_refused() -> None:
    doc = json.loads(_manifest().to_json())
    doc["future_field"] = {"x": 1}
    assert Manifest.from_json(json.dumps(doc)).model_extra == {"future_field": {"x": 1}}
    doc["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(InvalidManifest, match="upgrade erpops"):
        Manifest.from_json(json.dumps(doc))


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"{oops", "not valid JSON"), (b"[1]", "not a JSON object"), (b'{"backup_id": "x"}', "environment")],
)
def test_bad_manifests(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        Manifest.from_json(raw, where="prod/x/manifest.json")


def test_markers_round_trip() -> None:
    v = VerifyMarker(backup_id="20261123T020000Z-ab12", verified_at=T, ok=True, seconds=1.5)
    assert VerifyMarker.from_json(v.to_json()) == v
    r = RestoreTestMarker(backup_id="20261123T020000Z-ab12", tested_at=T, checks={"balanced": True}, rpo_seconds=60)
    assert RestoreTestMarker.from_json(r.to_json()) == r
