"""bench.ingest_evidence's evidence modes are IngestSettings the worker accepts, and the
``pool_fsync_packed_large`` mode (issue 15 round 8) really packs a real-size image, where the
default mode files it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bench.ingest_evidence import MODES
from ingest.config import IngestSettings

REAL_SIZE = 142_000  # the bench's real-size JPEGs are ~142 KB


@pytest.mark.parametrize(
    ("mode", "packed"), [("pool_fsync", False), ("pool_fsync_packed_large", True)]
)
def test_a_real_size_image_is_packed_only_in_the_packed_large_mode(
    tmp_path: Path, mode: str, packed: bool
) -> None:
    settings = IngestSettings(evidence_dir=tmp_path / "evidence", **MODES[mode])
    store = settings.open_evidence_store(f"sqlite:///{tmp_path / 'rows.db'}")
    try:
        data = b"\xff\xd8\xff" + os.urandom(REAL_SIZE)
        sha256 = hashlib.sha256(data).hexdigest()
        places = store.plan([(sha256, data)])
        assert (sha256 in places) is packed
        assert store.write_unsynced([(sha256, data)]) == 1
        store.sync()  # durable before a commit would follow
        assert store.read(sha256, places.get(sha256)) == data
        as_file = tmp_path / "evidence" / sha256[:2] / f"{sha256}.jpg"
        assert as_file.is_file() is not packed  # a file of its own only when not packed
    finally:
        store.close()


def test_every_mode_is_accepted_by_the_ingest_settings(tmp_path: Path) -> None:
    for options in MODES.values():
        IngestSettings(evidence_dir=tmp_path, **options)
