from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage.evidence_store import EvidenceError, EvidenceStore, SyncMode
from tests.factories import jpeg_bytes


def test_put_files_by_hash_and_reads_back(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    data = jpeg_bytes(1)
    sha = hashlib.sha256(data).hexdigest()
    path = store.put(data, sha)
    assert path == tmp_path / sha[:2] / f"{sha}.jpg"
    assert store.read(sha) == data
    assert store.put(data, sha) == path  # idempotent
    assert [p.name for p in path.parent.iterdir()] == [f"{sha}.jpg"]  # no temp files left


def test_put_refuses_bytes_that_do_not_match_the_hash(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    with pytest.raises(EvidenceError, match="mismatch"):
        store.put(jpeg_bytes(1), hashlib.sha256(jpeg_bytes(2)).hexdigest())
    assert not list(tmp_path.rglob("*.jpg"))


def test_read_detects_a_tampered_file(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    data = jpeg_bytes(3)
    sha = hashlib.sha256(data).hexdigest()
    store.put(data, sha).write_bytes(jpeg_bytes(4))
    with pytest.raises(EvidenceError, match="damaged"):
        store.read(sha)


def test_path_refuses_anything_but_a_hash(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError):
        EvidenceStore(tmp_path).path("../../etc/passwd")


def test_reads_files_of_the_older_two_level_layout(tmp_path: Path) -> None:
    data = jpeg_bytes(5)
    sha = hashlib.sha256(data).hexdigest()
    legacy = tmp_path / sha[:2] / sha[2:4] / f"{sha}.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    store = EvidenceStore(tmp_path)
    assert store.exists(sha)
    assert store.read(sha) == data
    assert store.put(data, sha) == legacy  # already stored: not written twice


def test_write_unsynced_rewrites_a_file_torn_by_an_earlier_failed_batch(tmp_path: Path) -> None:
    images = [jpeg_bytes(n) for n in (6, 7)]
    items = [(hashlib.sha256(data).hexdigest(), data) for data in images]
    store = EvidenceStore(tmp_path)
    torn = store.path(items[0][0])
    torn.parent.mkdir(parents=True)
    torn.write_bytes(images[0][:10])
    assert store.write_unsynced(items) == 2
    store.sync()
    assert [store.read(sha) for sha, _data in items] == images
    files = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert files == {f"{sha}.jpg" for sha, _ in items}  # in place: no temp files


@pytest.mark.parametrize(
    ("threads", "sync"), [(0, "filesystem"), (1, "files"), (4, "files"), (4, "filesystem")]
)
def test_batch_writes_in_the_caller_or_on_writer_threads(
    tmp_path: Path, threads: int, sync: SyncMode
) -> None:
    images = [jpeg_bytes(n) for n in range(10, 30)]
    items = [(hashlib.sha256(data).hexdigest(), data) for data in images]
    store = EvidenceStore(tmp_path, writer_threads=threads, sync=sync)
    try:
        assert store.write_unsynced(items) == len(items)
        store.sync()
        assert [store.read(sha) for sha, _data in items] == images
    finally:
        store.close()


def test_a_batch_handed_over_again_waits_for_the_abandoned_one(tmp_path: Path) -> None:
    """A batch whose transaction failed is retried: its files are handed over again while the
    first attempt's writes may still run; sync() returns only once the file is whole."""
    data = jpeg_bytes(40) * 200  # big enough that the two writes overlap
    items = [(hashlib.sha256(data).hexdigest(), data)]
    store = EvidenceStore(tmp_path, writer_threads=2)
    try:
        store.write_unsynced(items)  # abandoned: never synced
        store.write_unsynced(items)
        store.sync()
        assert store.read(items[0][0]) == data
    finally:
        store.close()


def test_writer_threads_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writer_threads"):
        EvidenceStore(tmp_path, writer_threads=-1)
