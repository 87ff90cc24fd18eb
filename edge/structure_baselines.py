"""Illegal structures, the baselines: one registered view per camera (or PTZ preset) on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from edge.detections import Image

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BaselineInfo(BaseModel):
    """The JSON beside a baseline PNG: when, by whom and why it was registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: str
    preset: str | None = None
    revision: int = Field(ge=1, description="1 for the first baseline, +1 for each replacement")
    registered_at: AwareDatetime
    registered_by: str
    note: str = ""
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    sha256: str = Field(description="of the PNG file's bytes")


@dataclass(frozen=True, slots=True)
class Baseline:
    info: BaselineInfo
    image: Image


class BaselineStore:
    """One baseline image per camera, or per camera and PTZ preset, as PNG plus JSON.

    A replaced baseline moves to history/ with its JSON, so every view a case was judged
    against stays on disk.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, Baseline] = {}
        self._lock = threading.Lock()

    def register(
        self,
        camera_id: str,
        image: Image,
        preset: str | None = None,
        *,
        at: datetime | None = None,
        by: str = "edge",
        note: str = "registered",
    ) -> BaselineInfo:
        """Make `image` the camera's (or preset's) baseline; an older one goes to history/."""
        return self._write(camera_id, image, preset, at, by, note)

    def accept(
        self,
        camera_id: str,
        image: Image,
        preset: str | None = None,
        note: str = "accepted as the new baseline after the case closed",
        *,
        at: datetime | None = None,
        by: str = "dispatcher",
    ) -> BaselineInfo:
        """Accept the current view as the new baseline (a closed case, a permitted building)."""
        return self._write(camera_id, image, preset, at, by, note)

    def get(self, camera_id: str, preset: str | None = None) -> Image | None:
        baseline = self.load(camera_id, preset)
        return None if baseline is None else baseline.image

    def info(self, camera_id: str, preset: str | None = None) -> BaselineInfo | None:
        baseline = self.load(camera_id, preset)
        return None if baseline is None else baseline.info

    def load(self, camera_id: str, preset: str | None = None) -> Baseline | None:
        """The image and its record together (one read, so they always belong together)."""
        return self._load(camera_id, preset)

    def _stem(self, camera_id: str, preset: str | None) -> str:
        if not _NAME.match(camera_id):
            raise ValueError(f"camera id {camera_id!r} cannot name a baseline file")
        if preset is None:
            return camera_id
        if not _NAME.match(preset):
            raise ValueError(f"preset {preset!r}: use letters, digits, '_', '.' or '-' only")
        return f"{camera_id}@{preset}"

    def _write(
        self,
        camera_id: str,
        image: Image,
        preset: str | None,
        at: datetime | None,
        by: str,
        note: str,
    ) -> BaselineInfo:
        stem = self._stem(camera_id, preset)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"baseline for {stem} must be BGR uint8, got {image.shape}")
        ok, buffer = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"could not PNG-encode the baseline for {stem}")
        data = buffer.tobytes()
        with self._lock:
            previous = self._load(camera_id, preset)
            info = BaselineInfo(
                camera_id=camera_id,
                preset=preset,
                revision=1 if previous is None else previous.info.revision + 1,
                registered_at=at or datetime.now(UTC),
                registered_by=by,
                note=note,
                width=image.shape[1],
                height=image.shape[0],
                sha256=hashlib.sha256(data).hexdigest(),
            )
            self.directory.mkdir(parents=True, exist_ok=True)
            if previous is not None:
                self._archive(stem, previous.info.revision)
            _write_atomic(self.directory / f"{stem}.png", data)
            _write_atomic(self.directory / f"{stem}.json", info.model_dump_json(indent=2).encode())
            self._cache.pop(stem, None)
        logger.info("baseline %s revision %d registered by %s: %s", stem, info.revision, by, note)
        return info

    def _archive(self, stem: str, revision: int) -> None:
        history = self.directory / "history"
        history.mkdir(exist_ok=True)
        for suffix in (".png", ".json"):
            source = self.directory / f"{stem}{suffix}"
            if source.exists():
                os.replace(source, history / f"{stem}.r{revision}{suffix}")

    def _load(self, camera_id: str, preset: str | None) -> Baseline | None:
        stem = self._stem(camera_id, preset)
        meta, picture = self.directory / f"{stem}.json", self.directory / f"{stem}.png"
        try:
            # The JSON is tiny and re-read each time, so a baseline accepted by another
            # process (the CLI, the console) is seen at the next check.
            info = BaselineInfo.model_validate(json.loads(meta.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, ValidationError) as exc:
            raise ValueError(f"baseline {meta} is unreadable: {exc}") from exc
        cached = self._cache.get(stem)
        if cached is not None and cached.info == info:
            return cached
        try:
            data = picture.read_bytes()
        except OSError as exc:
            raise ValueError(f"baseline {picture} is unreadable: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise ValueError(f"baseline {picture} does not match the sha256 in {meta.name}")
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError(f"baseline {picture} is not a readable PNG")
        cached = Baseline(info, np.asarray(decoded, dtype=np.uint8))
        self._cache[stem] = cached
        return cached


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
