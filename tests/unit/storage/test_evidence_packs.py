"""Small evidence images in pack files (storage/evidence_packs.py) through the store's own
interface: plan() before the rows, write_unsynced() + sync() before the commit, read() of both
forms; a torn tail, a failed write, a plan never written, rolling to a new pack."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storage.evidence_packs import (
    HEADER,
    PACK_FOLDER,
    PackedAt,
    encode_record,
    pack_path,
    scan_pack,
)
from storage.evidence_store import EvidenceError, EvidenceStore


def _image(seed: int, size: int = 1500) -> tuple[str, bytes]:
    data = hashlib.sha512(f"image {seed}".encode()).digest() * (size // 64 + 1)
    data = data[:size]
    return hashlib.sha256(data).hexdigest(), data


class Rows:
    """What the evidence table would hold: each image's pack place (the locator's answer)."""

    def __init__(self) -> None:
        self.places: dict[str, PackedAt] = {}

    def __call__(self, sha256: str) -> PackedAt | None:
        return self.places.get(sha256)


def _store(root: Path, rows: Rows, threads: int = 2, roll: int = 1 << 20) -> EvidenceStore:
    return EvidenceStore(
        root, writer_threads=threads, pack_max_bytes=4096, locate=rows, pack_roll_bytes=roll
    )


def _batch(store: EvidenceStore, rows: Rows, items: list[tuple[str, bytes]]) -> dict[str, PackedAt]:
    """As ingest's writer does it: places, rows, the new images written, synced, committed."""
    places = store.plan(items)
    store.write_unsynced(items)
    store.sync()
    rows.places.update(places)
    return places


def _packs(root: Path) -> list[Path]:
    return sorted((root / PACK_FOLDER).glob("*.pack"))


@pytest.mark.parametrize("threads", [0, 2])
def test_small_images_share_one_pack_and_large_ones_stay_files(
    tmp_path: Path, threads: int
) -> None:
    rows = Rows()
    store = _store(tmp_path, rows, threads)
    small = [_image(seed) for seed in range(20)]
    large = _image(99, size=10_000)
    places = _batch(store, rows, [*small, large])
    assert set(places) == {sha for sha, _data in small}
    assert len(_packs(tmp_path)) == 1
    assert [path.name for path in tmp_path.rglob("*.jpg")] == [f"{large[0]}.jpg"]
    for sha, data in [*small, large]:
        assert store.read(sha) == data  # the file, or the place the rows know
        assert store.exists(sha)
    for sha, data in small:
        assert store.read(sha, places[sha]) == data  # the place given, as the API does
    assert [entry[0] for entry in scan_pack(_packs(tmp_path)[0])] == [sha for sha, _ in small]
    store.close()


def test_the_next_batch_appends_after_the_last_and_a_plan_never_written_leaves_no_gap(
    tmp_path: Path,
) -> None:
    rows = Rows()
    store = _store(tmp_path, rows)
    first = _batch(store, rows, [_image(1)])
    store.plan([_image(2)])  # its batch failed before writing anything
    third = _batch(store, rows, [_image(3)])
    (only,) = _packs(tmp_path)
    assert third[_image(3)[0]].offset == first[_image(1)[0]].offset + HEADER.size + 1500
    assert [entry[0] for entry in scan_pack(only)] == [_image(1)[0], _image(3)[0]]
    assert only.stat().st_size == 2 * (HEADER.size + 1500)
    store.close()


def test_only_new_rows_need_their_images_but_the_plan_is_written_whole(tmp_path: Path) -> None:
    """An image another event stored already keeps its old row; its new record is dead bytes."""
    rows = Rows()
    store = _store(tmp_path, rows)
    items = [_image(seed) for seed in range(3)]
    places = store.plan(items)
    assert store.write_unsynced(items[1:]) == 2  # the database said items[0] was not new
    store.sync()
    for sha, data in items[1:]:
        assert store.read(sha, places[sha]) == data
    store.close()


def test_nothing_new_writes_nothing(tmp_path: Path) -> None:
    rows = Rows()
    store = _store(tmp_path, rows)
    store.plan([_image(1)])
    assert store.write_unsynced([]) == 0
    store.sync()
    assert [path.stat().st_size for path in _packs(tmp_path)] == [0]
    store.close()


def test_a_torn_tail_leaves_every_earlier_record_and_a_restart_writes_a_new_pack(
    tmp_path: Path,
) -> None:
    rows = Rows()
    store = _store(tmp_path, rows)
    items = [_image(seed) for seed in range(5)]
    _batch(store, rows, items)
    store.close()
    (pack,) = _packs(tmp_path)
    torn_sha, torn_data = _image(50)
    torn_at = PackedAt(pack.stem, pack.stat().st_size, len(torn_data))
    with pack.open("ab") as handle:  # a crash in the middle of the next batch's append
        handle.write(encode_record(torn_sha, torn_data)[:700])
    assert [entry[0] for entry in scan_pack(pack)] == [sha for sha, _data in items]
    with pytest.raises(EvidenceError, match="torn"):
        store.read(torn_sha, torn_at)  # no committed row names it; were one to, never served

    restarted = _store(tmp_path, rows)
    later = [_image(seed) for seed in range(60, 63)]
    places = _batch(restarted, rows, later)
    assert {place.pack for place in places.values()} != {pack.stem}
    assert len(_packs(tmp_path)) == 2
    assert pack.stat().st_size == torn_at.offset + 700  # nobody appended to the torn pack
    for sha, data in [*items, *later]:
        assert restarted.read(sha) == data
    restarted.close()


def test_a_damaged_or_misplaced_record_is_never_served(tmp_path: Path) -> None:
    rows = Rows()
    store = _store(tmp_path, rows)
    items = [_image(seed) for seed in range(2)]
    places = _batch(store, rows, items)
    (first, _data), (second, _other) = items
    with pytest.raises(EvidenceError, match="another record"):
        store.read(first, places[second])
    pack = pack_path(tmp_path, places[first].pack)
    with pack.open("r+b") as handle:
        handle.seek(places[first].offset + HEADER.size + 10)
        handle.write(b"\x00\xff")
    with pytest.raises(EvidenceError, match="damaged"):
        store.read(first)
    with pytest.raises(EvidenceError, match="SHA-256"):
        store.read("../../etc/passwd", places[second])
    store.close()


def test_a_failed_pack_write_is_raised_by_sync_and_the_retry_goes_to_a_new_pack(
    tmp_path: Path,
) -> None:
    rows = Rows()
    store = _store(tmp_path, rows)
    before = _batch(store, rows, [_image(1)])
    (pack,) = _packs(tmp_path)
    (appender,) = store._packs  # the disk refuses the next write to this pack
    readonly = os.open(pack, os.O_RDONLY)
    os.dup2(readonly, appender.fd)
    os.close(readonly)
    items = [_image(2)]
    store.plan(items)
    store.write_unsynced(items)
    with pytest.raises(OSError, match="Bad file descriptor"):
        store.sync()  # the batch's transaction rolls back: no row names its places
    retried = _batch(store, rows, items)  # the consumer's retry
    assert retried[items[0][0]].pack != pack.stem
    assert store.read(items[0][0]) == items[0][1]
    assert store.read(_image(1)[0], before[_image(1)[0]]) == _image(1)[1]
    store.close()


def test_a_long_pack_rolls_over_to_a_new_one(tmp_path: Path) -> None:
    rows = Rows()
    store = _store(tmp_path, rows, roll=3000)
    for seed in range(4):
        _batch(store, rows, [_image(seed)])
    assert len(_packs(tmp_path)) == 2
    assert store.packs_in_use() == {_packs(tmp_path)[-1].stem}
    for seed in range(4):
        assert store.read(_image(seed)[0]) == _image(seed)[1]
    store.close()


def test_path_gives_code_that_needs_a_file_a_checked_copy(tmp_path: Path) -> None:
    rows = Rows()
    store = _store(tmp_path, rows)
    sha, data = _image(7)
    _batch(store, rows, [(sha, data)])
    copy = store.path(sha)
    assert copy.read_bytes() == data
    assert store.path(sha) == copy
    unknown = _image(8)[0]
    assert not store.path(unknown).exists()
    store.close()


def test_packing_off_files_every_image_and_still_reads_packed_ones(tmp_path: Path) -> None:
    rows = Rows()
    packing = _store(tmp_path, rows)
    _batch(packing, rows, [_image(1)])
    packing.close()
    files_only = EvidenceStore(tmp_path, writer_threads=2, locate=rows)
    assert files_only.plan([_image(2)]) == {}
    files_only.write_unsynced([_image(2)])
    files_only.sync()
    assert (tmp_path / _image(2)[0][:2] / f"{_image(2)[0]}.jpg").is_file()
    assert files_only.read(_image(1)[0]) == _image(1)[1]
    files_only.close()


def test_retries_while_no_pack_can_be_made_never_close_a_descriptor_twice(
    tmp_path: Path,
) -> None:
    """The consumer retries a failing batch every few seconds: each retry must not close the
    dead pack again, or it closes whatever file (a database's) got its descriptor since."""
    rows = Rows()
    store = _store(tmp_path, rows)
    _batch(store, rows, [_image(1)])
    (pack,) = _packs(tmp_path)
    (appender,) = store._packs
    readonly = os.open(pack, os.O_RDONLY)
    os.dup2(readonly, appender.fd)
    os.close(readonly)
    items = [_image(2)]
    store.plan(items)
    store.write_unsynced(items)
    with pytest.raises(OSError, match="Bad file descriptor"):
        store.sync()
    (tmp_path / PACK_FOLDER).rename(tmp_path / "packs-away")
    (tmp_path / PACK_FOLDER).write_bytes(b"")  # no new pack can be made
    with pytest.raises(FileExistsError):
        store.plan(items)  # retires the dead pack, closing its descriptor
    bystander = os.open(tmp_path / "bystander", os.O_RDWR | os.O_CREAT)  # may reuse it
    try:
        with pytest.raises(FileExistsError):
            store.plan(items)
        assert os.write(bystander, b"still mine") == 10
    finally:
        os.close(bystander)
    (tmp_path / PACK_FOLDER).unlink()
    (tmp_path / "packs-away").rename(tmp_path / PACK_FOLDER)
    _batch(store, rows, items)
    assert store.read(items[0][0]) == items[0][1]
    store.close()
