"""models/: the manifest against ../shared/models, fine-tune -> export -> load, and evaluation.

The fine-tune data set is GENERATED (coloured blocks on grey, two classes), as no labelled
e-bike footage exists here; evaluation runs on real vtest.avi frames.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.capture import ReplaySource, read_image
from edge.config import DetectorSettings
from edge.detections import Detections
from edge.detector import OpenVINODetector, UltralyticsDetector
from models.evaluate import (
    LabelError,
    Scorer,
    average_precision,
    evaluate,
    match,
    read_yolo_labels,
)
from models.export import ExportError, ExportFormat, export_model
from models.finetune import DatasetError, FinetuneResult, FinetuneSettings, check_dataset, finetune
from models.manifest import (
    ManifestError,
    describe_model,
    load_manifest,
    verify_manifest,
    verify_model,
)
from tests.conftest import REPO_ROOT

# --- manifest ----------------------------------------------------------------------------------


def test_the_manifest_matches_the_shared_models(model_path: Path) -> None:
    manifest = load_manifest()
    assert model_path.name in manifest.names()
    assert verify_manifest(manifest, model_path.parent) == {n: [] for n in manifest.names()}
    assert manifest.entry(model_path.name).classes[2] == "car"


def test_verify_command_prints_json_last(model_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "models.manifest", "verify", str(model_path.parent)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["ok"] is True


def test_verify_names_a_changed_a_missing_and_an_unlisted_file(
    model_path: Path, tmp_path: Path
) -> None:
    entry = load_manifest().entry(model_path.name)
    folder = tmp_path / model_path.name
    folder.mkdir()
    (folder / "yolo11n.xml").symlink_to(model_path / "yolo11n.xml")
    metadata = (model_path / "metadata.yaml").read_text()
    (folder / "metadata.yaml").write_text(metadata.replace("stride: 32", "stride: 16"))
    (folder / "other.onnx").write_bytes(b"not a model")
    problems = verify_model(entry, folder)
    assert any("metadata.yaml: sha256" in p for p in problems), problems
    assert any("yolo11n.bin: missing" in p for p in problems), problems
    assert any("other.onnx" in p for p in problems), problems
    assert not any("yolo11n.xml" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [\n", "not valid YAML"),
        ("models: [{name: x}]\n", "models.0.architecture"),
        ("schema_version: 2\nmodels: []\n", "schema_version"),
    ],
)
def test_a_bad_manifest_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_duplicate_names_and_bad_hashes_are_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO_ROOT / "models" / "manifest.yaml").read_text())
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"models": [data["models"][0]] * 2}))
    with pytest.raises(ManifestError, match="appear twice"):
        load_manifest(path)
    data["models"][0]["files"]["yolo11n.bin"] = "ABC"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match="not a lowercase SHA-256"):
        load_manifest(path)


# --- fine-tune and export ----------------------------------------------------------------------

CLASSES = ["e_bike", "stacked_goods"]
COLOURS = {0: (0, 0, 255), 1: (255, 0, 0)}


def _generated_dataset(root: Path) -> Path:
    """A GENERATED two-class set: one red and one blue block per 64x64 grey image."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image = np.full((64, 64, 3), 120, dtype=np.uint8)
            lines = []
            for class_id, colour in COLOURS.items():
                x, y = (int(v) for v in rng.integers(4, 36, 2))
                w, h = (int(v) for v in rng.integers(12, 24, 2))
                image[y : y + h, x : x + w] = colour
                lines.append(f"{class_id} {(x + w / 2) / 64} {(y + h / 2) / 64} {w / 64} {h / 64}")
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), image)
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    """One epoch from the yolo11n.yaml architecture (no weights, no download) at imgsz 64."""
    work = tmp_path_factory.mktemp("finetune")
    dataset = _generated_dataset(work / "dataset")
    settings = FinetuneSettings(model="yolo11n.yaml", epochs=1, imgsz=64, batch=4)
    return finetune(dataset, settings, work / "runs", classes=CLASSES)


@pytest.mark.slow
def test_finetune_trains_one_epoch_offline(trained: FinetuneResult) -> None:
    assert trained.weights.is_file()
    assert trained.dataset.images == {"train": 8, "val": 4}
    assert trained.dataset.boxes_per_class == {"e_bike": 12, "stacked_goods": 12}
    assert "metrics/mAP50(B)" in trained.metrics


@pytest.mark.slow
def test_export_to_openvino_runs_natively_at_another_size(trained: FinetuneResult) -> None:
    result = export_model(trained.weights, ExportFormat.OPENVINO, imgsz=64)
    assert result.exported.name.endswith("_openvino_model")
    assert set(result.files) == {"metadata.yaml", "best.xml", "best.bin"}
    entry = describe_model(result.exported, source="test", licence="AGPL-3.0")
    assert (entry.precision, entry.input_size, entry.classes) == ("fp32", (64, 64), CLASSES)
    assert verify_model(entry, result.exported) == []
    # The fresh export is static 1x3x64x64 too; the native detector reshapes it.
    detector = OpenVINODetector(DetectorSettings(model=str(result.exported), imgsz=96))
    image = read_image(trained.dataset.data_yaml.parent / "images" / "val" / "0.png")
    assert detector.class_names == dict(enumerate(CLASSES))
    assert len(detector.detect_batch([image, image])) == 2


@pytest.mark.slow
def test_export_to_onnx_and_int8_openvino(trained: FinetuneResult) -> None:
    onnx = export_model(trained.weights, ExportFormat.ONNX, imgsz=64)
    assert onnx.exported.suffix == ".onnx"
    UltralyticsDetector(DetectorSettings(model=str(onnx.exported), imgsz=64))
    int8 = export_model(
        trained.weights, ExportFormat.OPENVINO, imgsz=64, int8=True, data=trained.dataset.data_yaml
    )
    assert describe_model(int8.exported, "test", "AGPL-3.0").precision == "int8"


def test_export_refuses_what_would_need_the_network(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    with pytest.raises(ExportError, match="--data"):
        export_model(weights, ExportFormat.OPENVINO, imgsz=64, int8=True)
    with pytest.raises(ExportError, match="multiple of 32"):
        export_model(weights, ExportFormat.ONNX, imgsz=100)
    with pytest.raises(ExportError, match=r"existing \.pt"):
        export_model(tmp_path / "nope.pt", ExportFormat.ONNX, imgsz=64)


def test_finetune_needs_local_start_weights(tmp_path: Path) -> None:
    dataset = _generated_dataset(tmp_path / "dataset")
    with pytest.raises(FileNotFoundError, match="offline"):
        finetune(dataset, FinetuneSettings(model=str(tmp_path / "yolo11n.pt")), tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.1\n", "expected 'class cx cy w h'"),
        ("2 0.5 0.5 0.1 0.1\n", "class 2 outside 0..1"),
        ("0 0.5 0.5 1.5 0.1\n", "box must be normalised"),
    ],
)
def test_a_bad_label_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    dataset = _generated_dataset(tmp_path / "dataset")
    (dataset / "labels" / "val" / "2.txt").write_text(line)
    with pytest.raises(DatasetError, match=rf"labels/val/2\.txt:1: {message}"):
        check_dataset(dataset, CLASSES)


# --- evaluation --------------------------------------------------------------------------------


def test_matching_and_ap_on_hand_made_boxes() -> None:
    labels = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 31, 30]], dtype=np.float32)
    confidence = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    hits = match(labels, boxes, confidence, 0.5)
    assert hits == [True, False, True], "the second box is a duplicate of the first label"
    # Ranked TP, FP, TP: precision 1 at recall 0.5, then 2/3 at recall 1.
    assert average_precision(hits, confidence.tolist(), 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([], [], 2) == 0.0


def _pseudo_labelled_frames(shared_data: Path, model_path: Path, root: Path) -> list[Path]:
    """Real vtest.avi frames, labelled by the Ultralytics run of the shared model."""
    reference = UltralyticsDetector(DetectorSettings(model=str(model_path)))
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    frames = itertools.islice(ReplaySource(shared_data / "clips" / "vtest.avi"), 0, 300, 100)
    paths = []
    for frame in frames:
        height, width = frame.image.shape[:2]
        path = root / "images" / f"{frame.index}.png"
        cv2.imwrite(str(path), frame.image)
        found = reference.detect(frame.image)
        lines = [
            f"{int(c)} {(x0 + x1) / 2 / width} {(y0 + y1) / 2 / height} "
            f"{(x1 - x0) / width} {(y1 - y0) / height}"
            for (x0, y0, x1, y1), c in zip(found.xyxy.tolist(), found.class_id, strict=True)
        ]
        (root / "labels" / f"{frame.index}.txt").write_text("\n".join(lines))
        paths.append(path)
    return paths


@pytest.mark.slow
def test_evaluate_scores_the_native_detector_against_ultralytics_labels(
    shared_data: Path, model_path: Path, tmp_path: Path
) -> None:
    images = _pseudo_labelled_frames(shared_data, model_path, tmp_path)
    settings = DetectorSettings(model=str(model_path))
    detector = OpenVINODetector(settings)
    samples = [(p, tmp_path / "labels" / f"{p.stem}.txt") for p in images]
    report = evaluate(detector, samples, detector.class_names, settings)
    assert report.images == 3
    assert report.classes["person"].labels >= 3
    assert report.precision >= 0.85, report
    assert report.recall >= 0.85, report
    assert report.map50 >= 0.8, report
    assert report.classes["dog"].labels == 0  # every model class is listed


@pytest.mark.slow
def test_evaluate_command_maps_label_names_and_prints_json(
    shared_data: Path, model_path: Path, tmp_path: Path
) -> None:
    """Labels that only know 'person' (id 0 here too) score a COCO model by name."""
    _pseudo_labelled_frames(shared_data, model_path, tmp_path)
    for label in (tmp_path / "labels").iterdir():
        people = [line for line in label.read_text().splitlines() if line.startswith("0 ")]
        label.write_text("\n".join(people))
    names = tmp_path / "people.yaml"
    names.write_text("names: {0: person}\n")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "models.evaluate", str(model_path), str(tmp_path / "images")),
            *("--names", str(names), "--imgsz", "320"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert list(report["classes"]) == ["person"]
    assert report["imgsz"] == 320
    assert 0.3 <= report["recall"] <= 1.0


def test_labels_with_no_name_are_refused(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("5 0.5 0.5 0.2 0.2\n")
    scorer = Scorer({0: "person"})
    labels = read_yolo_labels(label, 100, 100)
    assert labels.xyxy.tolist() == [[40.0, 40.0, 60.0, 60.0]]
    with pytest.raises(LabelError, match=r"label classes \[5\] have no name"):
        scorer.add(labels, Detections.empty())
