"""Fine-tune a YOLO detector for classes COCO lacks (e-bikes, stacked goods) on a YOLO dataset.

    python -m models.finetune DATASET --classes e_bike stacked_goods [--model yolo11n.pt]
        [--epochs 50] [--imgsz 640] [--batch 16] [--project runs/finetune] [--name NAME]

DATASET is a folder in YOLO layout (images/train, images/val, labels/train, labels/val; one
``class cx cy w h`` line per box, normalised) or a data.yaml. It may also be the server's
training-data folder (dispatch.training_data: one folder per camera, each with images/,
labels/ and a data.yaml) or one camera's folder in it: the classes come from its data.yaml and
the images are split into train and val by case, so a case's frames never sit in both. The
recipe and the labelling guide are in models/README.md. Runs offline: start from a local .pt,
or a model yaml (e.g. yolo11n.yaml) to train from scratch. Prints a JSON summary as its last
stdout line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edge.detector import prepare_ultralytics_environment

SPLITS = ("train", "val")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# Classes the district needs that COCO's 80 do not have; COCO's bicycle/motorcycle miss e-bikes.
CLASSES_COCO_LACKS = ("e_bike", "stacked_goods")
# Corrections folders: one case in this many goes to val (chosen by a hash of camera and case).
VAL_ONE_IN = 5


class DatasetError(Exception):
    """A dataset folder or label file that is not valid YOLO format; says which file and line."""


class FinetuneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="yolo11n.pt",
        description="a local .pt to start from, or a model yaml (yolo11n.yaml) for from scratch",
    )
    epochs: int = Field(default=50, ge=1)
    imgsz: int = Field(default=640, ge=32, description="training input size")
    batch: int = Field(default=16, ge=1)
    device: str = Field(default="cpu", description="cpu, or a CUDA index such as 0")
    patience: int = Field(default=20, ge=0, description="stop after this many epochs without gain")
    workers: int = Field(default=0, ge=0, description="data loader processes; 0 on small gateways")
    seed: int = 0


class DatasetSummary(BaseModel):
    data_yaml: Path
    classes: list[str]
    images: dict[str, int]
    boxes_per_class: dict[str, int]
    val_is_train: bool = Field(
        default=False, description="a corrections folder of one case: val repeats train"
    )


class FinetuneResult(BaseModel):
    weights: Path
    last: Path
    epochs: int
    seconds: float
    metrics: dict[str, float]
    dataset: DatasetSummary


def _check_label_file(path: Path, class_count: int) -> list[int]:
    """The class ids in one YOLO label file; raises DatasetError naming file:line."""
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 5:
            raise DatasetError(f"{where}: expected 'class cx cy w h', got {line!r}")
        try:
            class_id = int(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise DatasetError(f"{where}: not numbers: {line!r}") from exc
        if not 0 <= class_id < class_count:
            raise DatasetError(f"{where}: class {class_id} outside 0..{class_count - 1}")
        if not all(0.0 <= v <= 1.0 for v in values) or values[2] <= 0 or values[3] <= 0:
            raise DatasetError(f"{where}: box must be normalised to 0..1 with a size: {line!r}")
        ids.append(class_id)
    return ids


def _count_boxes(root: Path, classes: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """(images per split, boxes per class) of a YOLO-layout folder; raises DatasetError."""
    if not classes:
        raise DatasetError("a dataset needs at least one class name")
    counts = dict.fromkeys(classes, 0)
    images: dict[str, int] = {}
    for split in SPLITS:
        image_dir = root / "images" / split
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: missing (YOLO layout: images/{split})")
        files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{image_dir}: no images")
        images[split] = len(files)
        for image in files:
            label = root / "labels" / split / f"{image.stem}.txt"
            # An image without a label file is a background image: allowed, no boxes.
            if label.is_file():
                for class_id in _check_label_file(label, len(classes)):
                    counts[classes[class_id]] += 1
    return images, counts


def check_dataset(root: Path, classes: Sequence[str]) -> DatasetSummary:
    """Validate a YOLO-layout folder and write its data.yaml; raises DatasetError."""
    images, counts = _count_boxes(root, classes)
    data_yaml = root / "data.yaml"
    data = {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(classes)),
    }
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return DatasetSummary(
        data_yaml=data_yaml, classes=list(classes), images=images, boxes_per_class=counts
    )


def _class_names(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text()) or {}
    names = data.get("names")
    if not names:
        raise DatasetError(f"{path}: no 'names'")
    return [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else list(names)


def _dataset_from_yaml(path: Path) -> DatasetSummary:
    data = yaml.safe_load(path.read_text()) or {}
    classes = _class_names(path)
    root = Path(data.get("path") or path.parent)
    root = root if root.is_absolute() else path.parent / root
    images, counts = _count_boxes(root, classes)
    return DatasetSummary(
        data_yaml=path, classes=list(classes), images=images, boxes_per_class=counts
    )


def is_corrections_folder(root: Path) -> bool:
    """A training-data folder (or one camera's): flat images/ folders, no images/train."""
    if (root / "images" / "train").is_dir():
        return False
    return bool(_camera_folders(root))


def _camera_folders(root: Path) -> list[Path]:
    if (root / "images").is_dir() and (root / "data.yaml").is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if (p / "images").is_dir() and (p / "data.yaml").is_file()
    )


def _case_of(image: Path) -> str:
    """Which camera and case an exported image belongs to (``case<id>-<sha>.jpg``)."""
    return f"{image.parent.parent.name}/{image.stem.split('-', 1)[0]}"


def _hash_share(case: str) -> int:
    """A stable number per case: the same split on every run and machine."""
    return int(hashlib.sha256(case.encode()).hexdigest()[:8], 16)


def split_corrections(root: Path) -> DatasetSummary:
    """Split a corrections folder into train.txt and val.txt by case and write split.yaml beside
    them; raises DatasetError."""
    cameras = _camera_folders(root)
    if not cameras:
        raise DatasetError(f"{root}: no camera folder with images/ and data.yaml")
    classes = _class_names(cameras[0] / "data.yaml")
    for camera in cameras[1:]:
        if _class_names(camera / "data.yaml") != classes:
            raise DatasetError(f"{camera / 'data.yaml'}: names differ from {cameras[0]}'s")
    images = sorted(
        p.resolve()
        for camera in cameras
        for p in (camera / "images").iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DatasetError(f"{root}: no images")
    cases = sorted({_case_of(image) for image in images})
    val_cases = {case for case in cases if _hash_share(case) % VAL_ONE_IN == 0}
    if not val_cases or val_cases == set(cases):  # both splits need images
        val_cases = {cases[0]}
    train = [image for image in images if _case_of(image) not in val_cases or len(cases) == 1]
    val = [image for image in images if _case_of(image) in val_cases]
    counts = dict.fromkeys(classes, 0)
    for image in images:
        label = image.parent.parent / "labels" / f"{image.stem}.txt"
        if label.is_file():  # no label file: a background image, as Ultralytics reads it
            for class_id in _check_label_file(label, len(classes)):
                counts[classes[class_id]] += 1
    for name, listed in (("train", train), ("val", val)):
        (root / f"{name}.txt").write_text("".join(f"{image}\n" for image in listed))
    split_yaml = root / "split.yaml"
    data = {
        "path": str(root.resolve()),
        "train": "train.txt",
        "val": "val.txt",
        "names": dict(enumerate(classes)),
    }
    split_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return DatasetSummary(
        data_yaml=split_yaml,
        classes=classes,
        images={"train": len(train), "val": len(val)},
        boxes_per_class=counts,
        val_is_train=len(cases) == 1,
    )


def finetune(
    dataset: Path,
    settings: FinetuneSettings,
    project: Path,
    name: str = "finetune",
    classes: Sequence[str] | None = None,
) -> FinetuneResult:
    """Train settings.model on the dataset; returns where best.pt is and the final metrics."""
    if dataset.suffix in {".yaml", ".yml"}:
        summary = _dataset_from_yaml(dataset)
    elif is_corrections_folder(dataset):
        summary = split_corrections(dataset)
    else:
        summary = check_dataset(dataset, list(classes or CLASSES_COCO_LACKS))
    model_path = Path(settings.model)
    from_scratch = model_path.suffix in {".yaml", ".yml"}
    if not from_scratch and not model_path.is_file():
        raise FileNotFoundError(
            f"start weights {settings.model} not found (offline: no download); "
            "give a local .pt, or a model yaml such as yolo11n.yaml to train from scratch"
        )
    prepare_ultralytics_environment(project)
    began = time.monotonic()
    # Ultralytics logs to stdout; our last stdout line is the JSON summary.
    with contextlib.redirect_stdout(sys.stderr):
        from ultralytics import YOLO  # type: ignore[attr-defined]

        model: Any = YOLO(settings.model, task="detect")
        model.train(
            data=str(summary.data_yaml),
            epochs=settings.epochs,
            imgsz=settings.imgsz,
            batch=settings.batch,
            device=settings.device,
            patience=settings.patience,
            workers=settings.workers,
            seed=settings.seed,
            project=str(project.resolve()),
            name=name,
            exist_ok=True,
            pretrained=not from_scratch,
            amp=False,  # the AMP check downloads yolo11n.pt
            plots=False,  # plots fetch a font
            verbose=False,
        )
        trainer = model.trainer
    save_dir = Path(trainer.save_dir)
    metrics = {str(k): round(float(v), 5) for k, v in (trainer.metrics or {}).items()}
    return FinetuneResult(
        weights=save_dir / "weights" / "best.pt",
        last=save_dir / "weights" / "last.pt",
        epochs=settings.epochs,
        seconds=round(time.monotonic() - began, 2),
        metrics=metrics,
        dataset=summary,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.finetune", description=__doc__)
    parser.add_argument("dataset", type=Path, help="YOLO-layout folder or a data.yaml")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES_COCO_LACKS))
    parser.add_argument("--project", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--name", default="finetune")
    defaults = FinetuneSettings()
    for field in ("model", "epochs", "imgsz", "batch", "device", "patience", "workers", "seed"):
        default = getattr(defaults, field)
        parser.add_argument(f"--{field}", type=type(default), default=default)
    args = parser.parse_args(argv)
    settings = FinetuneSettings(
        **{f: getattr(args, f) for f in FinetuneSettings.model_fields if hasattr(args, f)}
    )
    try:
        result = finetune(args.dataset, settings, args.project, args.name, args.classes)
    except (DatasetError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
