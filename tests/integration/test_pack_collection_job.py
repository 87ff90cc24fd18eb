"""The sweep leader's ``evidence-packs`` job (SQLite and PostgreSQL): a pack no evidence row names
(its batch's transaction failed after the pack was written) is removed once it is an hour old; a
younger one, which another process's batch may still be about to name, stays."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from ingest.config import IngestSettings
from storage.evidence_packs import encode_record, pack_path
from tests.factories import jpeg_bytes, make_registry, start_from_migrated_template


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    config = CivicwatchConfig(
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=database_url,
            ingest=IngestSettings(client_id="pack-job-test", evidence_dir=tmp_path / "ev"),
        ),
    )
    start_from_migrated_template(database_url)
    built = build_server(config)  # built, not started: the job is run by hand
    try:
        yield built
    finally:
        built.stop()


def orphan_pack(root: Path, name: str, age_s: float) -> Path:
    data = jpeg_bytes(len(name))
    path = pack_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_record(hashlib.sha256(data).hexdigest(), data))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_the_leader_removes_packs_no_row_names_once_they_are_an_hour_old(
    server: Server, tmp_path: Path
) -> None:
    root = tmp_path / "ev"
    old = orphan_pack(root, "0123456789abcdef-1-00000001", age_s=2 * 3600)
    young = orphan_pack(root, "0123456789abcdef-2-00000002", age_s=60)

    job = server.scheduler.get_job("evidence-packs")
    assert job is not None
    job.func()  # the scheduler's guarded job: only the sweep leader acts

    assert not old.exists()
    assert young.exists()
