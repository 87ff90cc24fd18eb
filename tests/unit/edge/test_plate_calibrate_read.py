"""bench.plates_calibrate read / score: every vehicle read once, its rules scored offline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from bench import plates_calibrate
from bench.plates_calibrate import candidate_from_record, candidate_record, read, score
from edge.plate_confidence import ReadingFeatures
from edge.plate_decoding import PlateCandidate
from tests.unit.edge.test_plates import VAN_BOX, van_closeup, with_plate

__all__ = ["van_closeup"]  # the fixture, used by name


def test_a_reading_round_trips_through_its_record() -> None:
    features = ReadingFeatures(
        first_weakest=0.61,
        first_mean=0.93,
        agreed=True,
        looked=True,
        vote=0.8,
        agree_share=0.9,
        read_share=1.0,
        rival_share=0.1,
        kept=True,
        view_weakest=0.7,
        view_mean=0.95,
        first_char=0.7,
        last_char=0.99,
        rows=1,
        height=32,
        width=140,
        contrast=41.5,
        char_scores=(0.7, 0.99, 0.98, 0.97, 0.96, 0.95, 0.1 + 0.2),
        char_rivals=(0.2, 0.0, 0.01, 0.0, 0.02, 0.0, 0.1),
        first_text="皖A12345",
    )
    reading = PlateCandidate(
        "皖A12345", 0.9936, features.char_scores, 0.61, features, rivals=features.char_rivals
    )
    record = json.loads(json.dumps(candidate_record(reading), ensure_ascii=False))
    assert candidate_from_record(record) == reading


def test_read_saves_each_vehicle_and_score_settles_it_as_the_reader_did(
    tmp_path: Path, van_closeup: object
) -> None:
    folder = tmp_path / "seed1"
    folder.mkdir()
    for name in ("皖A08V01.png", "浙D335DZ.png"):
        scene = with_plate(van_closeup, Path(name).stem + ".jpg")  # type: ignore[arg-type]
        ok, encoded = cv2.imencode(".png", scene)
        assert ok
        (folder / name).write_bytes(encoded.tobytes())
    boxes = {"皖A08V01.png": [list(VAN_BOX)], "浙D335DZ.png": []}  # a scene with no vehicle
    (folder / "boxes.json").write_text(
        json.dumps({"dropped": 0, "boxes": boxes}, ensure_ascii=False), encoding="utf-8"
    )
    (tmp_path / "seed4").mkdir()  # not prepared: skipped

    read(tmp_path, None)

    lines = [json.loads(line) for line in (folder / "vehicles.jsonl").read_text().splitlines()]
    assert [(line["scene"], line["vehicle"]) for line in lines] == [
        ("浙D335DZ.png", None),
        ("皖A08V01.png", 0),
    ]
    vehicle = lines[1]
    assert vehicle["final"]["text"] == "皖A08V01"
    assert all((folder / "rows" / file).is_file() for file in vehicle["rows"])
    assert not (tmp_path / "seed4" / "vehicles.jsonl").exists()

    # Read seeds are not read again.
    (folder / "vehicles.jsonl").write_text("", encoding="utf-8")
    read(tmp_path, None)
    assert (folder / "vehicles.jsonl").read_text() == ""
    (folder / "vehicles.jsonl").write_text(
        "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8"
    )

    dumped = tmp_path / "settled.jsonl"
    results = score(tmp_path, None, ["off"], 0.9, dump_to=dumped)
    settled = [json.loads(line) for line in dumped.read_text().splitlines()]
    assert len(settled) == 1  # read vehicles only
    assert settled[0]["text"] == vehicle["final"]["text"]
    assert settled[0]["confidence"] == vehicle["final"]["confidence"]
    right = vehicle["final"]["confidence"] >= 0.9
    assert results["off"]["exact"] == int(right)
    assert results["off"]["miss"] == 2 - int(right)  # the scene with no vehicle is a miss
    assert results["off"]["false_read"] == 0


def test_read_and_score_refuse_test_seeds(tmp_path: Path) -> None:
    (tmp_path / f"seed{plates_calibrate.TEST_SEEDS[-1]}").mkdir()
    with pytest.raises(plates_calibrate.SeedError, match="test sets"):
        read(tmp_path, None)
    with pytest.raises(plates_calibrate.SeedError, match="test sets"):
        score(tmp_path, None, ["off"], 0.9)


def test_scoring_a_folder_with_no_read_seed_says_so_in_both_languages(tmp_path: Path) -> None:
    (tmp_path / "seed1").mkdir()  # prepared, never read
    with pytest.raises(plates_calibrate.SeedError) as refused:
        score(tmp_path, None, ["off"], 0.9)
    message = str(refused.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    assert "run the read step first" in message
    assert "请先运行 read 步骤" in message
