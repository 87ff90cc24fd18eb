"""The native OpenVINO detector: same boxes as Ultralytics, real batches, smaller imgsz.

Real model (../shared/models), real frames of vtest.avi and motorway-traffic.mp4.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from edge.capture import ReplaySource
from edge.config import DetectorSettings
from edge.detections import Detections, Image, box_iou
from edge.detector import (
    ModelUnavailableError,
    OpenVINODetector,
    UltralyticsDetector,
    create_detector,
)

pytestmark = pytest.mark.slow


def _frames(clip: Path, count: int, step: int = 10) -> list[Image]:
    frames = itertools.islice(ReplaySource(clip), 0, count * step, step)
    return [frame.image for frame in frames]


@pytest.fixture(scope="module")
def vtest(shared_data: Path) -> list[Image]:
    return _frames(shared_data / "clips" / "vtest.avi", 4)


@pytest.fixture(scope="module")
def motorway(shared_data: Path) -> list[Image]:
    return _frames(shared_data / "clips" / "motorway-traffic.mp4", 2)


@pytest.fixture(scope="module")
def detector(model_path: Path) -> OpenVINODetector:
    return OpenVINODetector(DetectorSettings(model=str(model_path)), max_batch=4)


def _unmatched(expected: Detections, found: Detections, min_iou: float) -> list[str]:
    """Boxes of expected with no box of the same class in found overlapping at min_iou."""
    missing = []
    for i in range(len(expected)):
        same_class = found.class_id == expected.class_id[i]
        ious = [box_iou(expected.xyxy[i], box) for box in found.xyxy[same_class]]
        if max(ious, default=0.0) < min_iou:
            missing.append(f"{expected.class_name(i)} {expected.xyxy[i].round().tolist()}")
    return missing


def test_same_boxes_as_ultralytics_at_640(
    detector: OpenVINODetector, model_path: Path, vtest: list[Image]
) -> None:
    reference = UltralyticsDetector(DetectorSettings(model=str(model_path)))
    for image in vtest[:2]:
        expected = reference.detect(image)
        found = detector.detect(image)
        assert len(expected) >= 4
        assert not _unmatched(expected, found, 0.85)
        assert not _unmatched(found, expected, 0.85)


def test_a_batch_gives_what_single_frames_give(
    detector: OpenVINODetector, vtest: list[Image], motorway: list[Image]
) -> None:
    """Mixed sizes in one batch (768x576 and 960x540), more frames than max_batch."""
    images = [vtest[0], motorway[0], vtest[1], motorway[1], vtest[2]]
    detector.prepare([(768, 576), (960, 540)])
    batched = detector.detect_batch(images)
    assert len(batched) == len(images)
    for image, found in zip(images, batched, strict=True):
        single = detector.detect(image)
        assert len(single) > 0
        assert len(found) == len(single)
        # Each frame runs at its own letterbox shape: the same boxes as alone.
        assert not _unmatched(single, found, 0.98)
        np.testing.assert_allclose(np.sort(found.confidence), np.sort(single.confidence), atol=0.02)
        height, width = image.shape[:2]
        assert (found.xyxy[:, [0, 2]] <= width).all()
        assert (found.xyxy[:, [1, 3]] <= height).all()


@pytest.mark.parametrize(("imgsz", "runs_at"), [(416, (320, 416)), (320, (256, 320))])
def test_smaller_imgsz_still_finds_the_parked_vehicles(
    model_path: Path, vtest: list[Image], imgsz: int, runs_at: tuple[int, int]
) -> None:
    detector = OpenVINODetector(DetectorSettings(model=str(model_path), imgsz=imgsz))
    assert detector.input_shape(576, 768) == runs_at  # 4:3 frame, height rounded up to 32
    names = set(detector.detect(vtest[0]).names())
    assert {"car", "truck"} & names, names
    assert "person" in names


def test_imgsz_is_rounded_up_to_the_stride(model_path: Path) -> None:
    detector = OpenVINODetector(DetectorSettings(model=str(model_path), imgsz=300))
    assert detector.imgsz == 320


def test_the_older_yolov8n_export_also_resizes(model_path: Path, vtest: list[Image]) -> None:
    v8 = model_path.parent / "yolov8n_int8_openvino_model"
    detector = OpenVINODetector(DetectorSettings(model=str(v8), imgsz=320), max_batch=2)
    results = detector.detect_batch(vtest[:3])
    assert all({"car", "truck"} & set(r.names()) for r in results)


def test_create_detector_runs_openvino_folders_natively(model_path: Path) -> None:
    assert isinstance(create_detector(DetectorSettings(model=str(model_path))), OpenVINODetector)


def test_a_folder_without_a_model_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "empty_openvino_model"
    folder.mkdir()
    with pytest.raises(ModelUnavailableError, match="empty_openvino_model"):
        create_detector(DetectorSettings(model=str(folder)))


def test_a_grey_image_is_refused_with_its_shape(detector: OpenVINODetector) -> None:
    with pytest.raises(ValueError, match=r"HxWx3 BGR image, got shape \(48, 64\)"):
        detector.detect_batch([np.zeros((48, 64), dtype=np.uint8)])
