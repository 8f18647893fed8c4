"""The local-directory store on a real filesystem."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic
import pytest

from erpops.backends.storage import ObjectNotFound, Retention, open_store
from erpops.backends.storage.base import TMP_PREFIX
from erpops.backends.storage.local import LocalStore
from erpops.environments import Storage
from erpops.errors import InvalidInput, TargetUnreachable


def _store(root: Path) -> LocalStore:
    store = open_store(Storage(url=f"file://{root}"), lambda v: v)
    assert isinstance(store, LocalStore)
    return store


def test_round_trip_with_sha256_and_private_files(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    data = os.urandom(3 * 1024 * 1024 + 17)
    with store.writer("prod/20261123T020000Z-ab12/db.dump.zst") as w:
        for i in range(0, len(data), 65536):
            w.write(memoryview(data)[i : i + 65536])
    info = w.info
    assert info is not None
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    path = tmp_path / "store/prod/20261123T020000Z-ab12/db.dump.zst"
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.sha256("prod/20261123T020000Z-ab12/db.dump.zst") == info.sha256
    with store.reader("prod/20261123T020000Z-ab12/db.dump.zst") as r:
        assert r.read() == data
    out = tmp_path / "out.bin"
    got = store.get_file("prod/20261123T020000Z-ab12/db.dump.zst", out)
    assert got.sha256 == info.sha256 and out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    head = store.head("prod/20261123T020000Z-ab12/db.dump.zst")
    assert head is not None and head.size == len(data) and head.modified is not None
    assert head.retain_until is None and not head.locked()


def test_half_written_object_never_appears(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.put_bytes("prod/a/x", b"old")
    w = store.writer("prod/a/x")
    w.write(b"new and half")
    assert store.get_bytes("prod/a/x") == b"old"  # readers see the previous object
    assert [o.key for o in store.list("prod/")] == ["prod/a/x"]  # temp file not listed
    assert any(p.name.startswith(TMP_PREFIX) for p in (tmp_path / "prod/a").iterdir())
    w.abort()
    assert store.get_bytes("prod/a/x") == b"old"
    assert sorted(p.name for p in (tmp_path / "prod/a").iterdir()) == ["x"]

    with pytest.raises(RuntimeError), store.writer("prod/a/y") as w2:
        w2.write(b"partial")
        raise RuntimeError("source died")
    assert store.head("prod/a/y") is None
    assert sorted(p.name for p in (tmp_path / "prod/a").iterdir()) == ["x"]
    with pytest.raises(ValueError):
        w2.write(b"more")


def test_put_file_list_delete(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    seen: list[int] = []
    info = store.put_file("prod/b/f.bin", src, progress=seen.append)
    assert info.size == 5000 and seen[-1] == 5000
    store.put_bytes("prod/b/g.bin", b"g")
    store.put_bytes("prod/c/h.bin", b"hh")
    store.put_bytes("prodx/i", b"i")
    assert [o.key for o in store.list("prod/")] == ["prod/b/f.bin", "prod/b/g.bin", "prod/c/h.bin"]
    assert [o.key for o in store.list("prod/b/g")] == ["prod/b/g.bin"]
    assert [o.key for o in store.list("prod")] == ["prod/b/f.bin", "prod/b/g.bin", "prod/c/h.bin", "prodx/i"]
    assert store.list("nothing/") == []
    assert store.delete("prod/c/h.bin") is True
    assert store.delete("prod/c/h.bin") is False
    assert not (tmp_path / "s/prod/c").exists()  # empty folders go, like S3
    assert (tmp_path / "s").is_dir()
    with pytest.raises(ObjectNotFound):
        store.reader("prod/c/h.bin")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("prod/b")  # a folder is not an object


def test_cleanup_partial_removes_only_stale_temp_files(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old = store.writer("prod/k/db.dump.zst")
    old.write(b"killed")
    old._file.flush()  # type: ignore[attr-defined]  # the local writer's open file, to fail the write
    stale = next(p for p in (tmp_path / "prod/k").iterdir() if p.name.startswith(TMP_PREFIX))
    past = time.time() - 7200
    os.utime(stale, (past, past))
    young = store.writer("prod/k/filestore.tar.zst")
    young.write(b"running")
    removed = store.cleanup_partial("prod/", datetime.now(UTC) - timedelta(hours=1))
    assert removed == [f"prod/k/{stale.name}"]
    assert not stale.exists()
    young.close()
    assert store.get_bytes("prod/k/filestore.tar.zst") == b"running"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b", "dir/", f"a/{TMP_PREFIX}x", "..", "a/\x00"])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInput):
        _store(tmp_path).writer(key)


def test_retention_is_refused_on_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs S3"):
        _store(tmp_path).writer("a/b", Retention("compliance", 7))


def test_urls_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _store(tmp_path).root == tmp_path
    plain = open_store(Storage(url=str(tmp_path / "p")), lambda v: v)
    assert isinstance(plain, LocalStore) and plain.root == tmp_path / "p"
    monkeypatch.setenv("HOME", str(tmp_path))
    home = open_store(Storage(url="~/bk"), lambda v: v)
    assert isinstance(home, LocalStore) and home.root == tmp_path / "bk"
    assert open_store(Storage(url="file://localhost/x"), lambda v: v).url == "file:///x"
    for bad in ("ftp://x/y", "  "):  # refused when erpops.yaml is read (with its line)
        with pytest.raises(pydantic.ValidationError, match="storage url"):
            Storage(url=bad)
    for bad in ("ftp://x/y", "file://otherhost/x", "  ", "s3://", "s3:///prefix"):
        with pytest.raises(InvalidInput):  # and by the factory, for a Storage made without validation
            open_store(Storage.model_construct(url=bad), lambda v: v)


def test_unwritable_directory_is_unreachable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits: use a path below a regular file instead.
        blocker = tmp_path / "file"
        blocker.write_text("x")
        store = _store(blocker / "store")
        with pytest.raises(TargetUnreachable):
            store.put_bytes("a/b", b"x")
        with pytest.raises(TargetUnreachable):
            store.check()
        return
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(TargetUnreachable):
        _store(ro / "store").put_bytes("a/b", b"x")


def test_check_accepts_a_missing_root_under_a_writable_parent(tmp_path: Path) -> None:
    store = _store(tmp_path / "not" / "yet")
    store.check()
    store.put_bytes("prod/x", b"1")
    assert stat.S_IMODE((tmp_path / "not" / "yet").stat().st_mode) == 0o700
