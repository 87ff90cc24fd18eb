"""The real detector and tracker on a real frame of vtest.avi."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.capture import ReplaySource
from edge.config import DetectorSettings, TrackerSettings
from edge.detector import ModelUnavailableError, UltralyticsDetector
from edge.tracker import ObjectTracker


@pytest.fixture(scope="module")
def detector(model_path: Path) -> UltralyticsDetector:
    return UltralyticsDetector(DetectorSettings(model=str(model_path)))


def test_finds_the_parked_vehicles(detector: UltralyticsDetector, shared_data: Path) -> None:
    frame = next(iter(ReplaySource(shared_data / "clips" / "vtest.avi")))
    detections = detector.detect(frame.image)
    names = detections.names()
    assert {"car", "truck"} & set(names), names
    assert "person" in names
    assert (detections.tracker_id == -1).all()
    assert detector.model_info.name == "yolo11n_int8_openvino_model"


def test_tracker_keeps_ids_across_frames(detector: UltralyticsDetector, shared_data: Path) -> None:
    tracker = ObjectTracker(TrackerSettings(), fps=10)
    frames = [
        f for _, f in zip(range(5), ReplaySource(shared_data / "clips" / "vtest.avi"), strict=False)
    ]
    outputs = [tracker.update(d) for d in detector.detect_batch([f.image for f in frames])]
    first_vehicles = {
        int(t)
        for t, n in zip(outputs[0].tracker_id, outputs[0].names(), strict=True)
        if n in {"car", "truck"}
    }
    last_vehicles = {
        int(t)
        for t, n in zip(outputs[-1].tracker_id, outputs[-1].names(), strict=True)
        if n in {"car", "truck"}
    }
    assert first_vehicles
    assert first_vehicles == last_vehicles, "parked vehicles keep their track ids"


def test_missing_model_fails_fast_with_one_clear_line() -> None:
    began = time.monotonic()
    with pytest.raises(ModelUnavailableError) as raised:
        UltralyticsDetector(DetectorSettings(model="yolo11n.pt"))
    assert time.monotonic() - began < 20
    message = str(raised.value)
    assert "\n" not in message
    assert "yolo11n.pt" in message
    assert "CIVICWATCH_MODEL=" in message


def test_missing_model_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="missing_openvino_model"):
        UltralyticsDetector(DetectorSettings(model=str(tmp_path / "missing_openvino_model")))
