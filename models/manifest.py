"""The model manifest: which detector models are in use, and a check that files match it.

    python -m models.manifest verify ROOT          # every model under ROOT matches the manifest
    python -m models.manifest describe FOLDER --source TEXT --licence TEXT   # a new entry

Each model is a folder (an Ultralytics export, or a .pt/.onnx put in a folder of its name).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")
MODEL_FILE_SUFFIXES = frozenset({".xml", ".bin", ".onnx", ".pt", ".engine", ".tflite"})


class ManifestError(Exception):
    """The manifest file is missing, not YAML, or not a valid manifest."""


class ModelFormat(StrEnum):
    OPENVINO = "openvino"
    ONNX = "onnx"
    PYTORCH = "pytorch"


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the model folder's name")
    architecture: str = Field(description="e.g. yolo11n")
    version: str = Field(description="the exporting Ultralytics release, or our own version")
    format: ModelFormat
    precision: Literal["fp32", "fp16", "int8"]
    task: Literal["detect"] = "detect"
    input_size: tuple[int, int] = Field(description="export input (height, width) in pixels")
    classes: list[str] = Field(min_length=1, description="class names, index = class id")
    source: str = Field(min_length=1, description="where the weights come from")
    licence: str = Field(min_length=1)
    files: dict[str, str] = Field(
        min_length=1, description="file name in the folder -> its SHA-256 (lowercase hex)"
    )

    @model_validator(mode="after")
    def _hashes_are_sha256(self) -> ModelEntry:
        for file, digest in self.files.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"files[{file!r}] is not a lowercase SHA-256: {digest!r}")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _names_are_unique(self) -> Manifest:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names appear twice: {duplicates}")
        return self

    def entry(self, name: str) -> ModelEntry:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(f"model {name!r} is not in the manifest; it has {self.names()}")

    def names(self) -> list[str]:
        return [m.name for m in self.models]


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ManifestError(f"cannot read model manifest {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"model manifest {path} is not valid YAML: {exc}") from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ManifestError(f"model manifest {path}: {where}: {first['msg']}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _metadata(folder: Path) -> dict[str, Any]:
    path = folder / "metadata.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def verify_model(entry: ModelEntry, folder: Path) -> list[str]:
    """Every way the folder differs from its manifest entry; empty when it matches."""
    if not folder.is_dir():
        return [f"{folder}: model folder not found"]
    problems = []
    for file, expected in entry.files.items():
        path = folder / file
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif (actual := sha256_file(path)) != expected:
            problems.append(f"{path}: sha256 {actual} but the manifest says {expected}")
    unlisted = sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix in MODEL_FILE_SUFFIXES and p.name not in entry.files
    )
    if unlisted:
        problems.append(f"{folder}: model files not in the manifest: {unlisted}")
    metadata = _metadata(folder)
    if names := metadata.get("names"):
        classes = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else names
        if classes != entry.classes:
            problems.append(f"{folder}: metadata classes differ from the manifest's")
    if (imgsz := metadata.get("imgsz")) and tuple(imgsz) != entry.input_size:
        problems.append(f"{folder}: metadata imgsz {imgsz}, manifest {list(entry.input_size)}")
    if (version := metadata.get("version")) and str(version) != entry.version:
        problems.append(f"{folder}: metadata version {version} but manifest {entry.version}")
    return problems


def verify_manifest(manifest: Manifest, root: Path) -> dict[str, list[str]]:
    """Problems per model name (root / name is each model's folder)."""
    return {entry.name: verify_model(entry, root / entry.name) for entry in manifest.models}


def describe_model(folder: Path, source: str, licence: str) -> ModelEntry:
    """A manifest entry for a model folder, from its files and its Ultralytics metadata.yaml."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    metadata = _metadata(folder)
    names = metadata.get("names") or {}
    files = sorted(p for p in folder.iterdir() if p.is_file())
    suffixes = {p.suffix for p in files}
    model_format = (
        ModelFormat.OPENVINO
        if ".xml" in suffixes
        else ModelFormat.ONNX
        if ".onnx" in suffixes
        else ModelFormat.PYTORCH
    )
    args = metadata.get("args") or {}
    # Ultralytics 8.3 wrote int8/half flags, 8.4 writes quantize: 8 or 16.
    quantize = args.get("quantize") or (8 if args.get("int8") else 16 if args.get("half") else 32)
    precision = {8: "int8", 16: "fp16"}.get(int(quantize), "fp32")
    imgsz = metadata.get("imgsz") or [640, 640]
    return ModelEntry(
        name=folder.name,
        architecture=folder.name.split("_")[0].removesuffix(".pt"),
        version=str(metadata.get("version", "unknown")),
        format=model_format,
        precision=precision,
        input_size=(int(imgsz[0]), int(imgsz[-1])),
        classes=[str(names[i]) for i in sorted(names)],
        source=source,
        licence=licence,
        files={p.name: sha256_file(p) for p in files},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.manifest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check the model folders under ROOT")
    verify.add_argument("root", type=Path)
    verify.add_argument("--manifest", type=Path, default=MANIFEST_PATH)
    describe = commands.add_parser("describe", help="print a manifest entry for a model folder")
    describe.add_argument("folder", type=Path)
    describe.add_argument("--source", required=True)
    describe.add_argument("--licence", required=True)
    args = parser.parse_args(argv)
    if args.command == "describe":
        entry = describe_model(args.folder, args.source, args.licence)
        print(yaml.safe_dump([entry.model_dump(mode="json")], sort_keys=False), end="")
        print(json.dumps({"model": entry.name, "files": len(entry.files)}))
        return 0
    try:
        problems = verify_manifest(load_manifest(args.manifest), args.root)
    except ManifestError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for name, found in problems.items():
        for problem in found:
            print(f"{name}: {problem}", file=sys.stderr)
    ok = not any(problems.values())
    print(json.dumps({"ok": ok, "models": len(problems), "problems": problems}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
