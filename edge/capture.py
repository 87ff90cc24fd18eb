"""Frame sources: live streams, video files and still images for live runs; ReplaySource for replay.

Live sources each run a thread that keeps only the newest frame, so analysis never lags.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from contracts.sites import CameraConfig
from contracts.status import CameraHealth
from edge.detections import Frame, Image

log = logging.getLogger(__name__)

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_FPS = 10.0


class SourceError(Exception):
    """A frame source that cannot be opened: missing, unreadable, or not a video/image."""


def resolve_source_path(source: str) -> Path:
    """A file path; pkg://PACKAGE/PATH names a file inside an installed package."""
    if source.startswith("pkg://"):
        package, _, inner = source.removeprefix("pkg://").partition("/")
        try:
            root = resources.files(package)
        except ModuleNotFoundError as exc:
            raise SourceError(f"source {source}: package {package!r} is not installed") from exc
        path = Path(str(root.joinpath(inner)))
    else:
        path = Path(source)
    if not path.is_file():
        raise SourceError(f"source file not found: {path}")
    return path


def _open_video(path: Path) -> Any:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path}: not a video OpenCV can decode")
    return capture


def read_image(path: Path) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read image {path}: not an image OpenCV can decode")
    return np.asarray(image, dtype=np.uint8)


def _video_fps(capture: Any) -> float | None:
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 0.5 <= fps <= 240 else None


class LatestFrameSource:
    """Base of live sources: a thread produces frames, the consumer takes the newest one."""

    def __init__(self, camera_id: str, fps: float) -> None:
        self.camera_id = camera_id
        self.fps = fps
        self.frames_read = 0
        self.health = CameraHealth.CONNECTING
        self.detail = ""
        self._latest: Frame | None = None
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded_run, name=f"capture-{camera_id}")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def latest(self, timeout: float = 0.0) -> Frame | None:
        """The newest frame not taken yet, waiting up to timeout; None when there is none."""
        with self._condition:
            if self._latest is None and timeout > 0:
                self._condition.wait(timeout)
            frame, self._latest = self._latest, None
        return frame

    def _set_health(self, health: CameraHealth, detail: str = "") -> None:
        if health is not self.health:
            log.info("camera %s: %s %s", self.camera_id, health.value, detail)
        self.health, self.detail = health, detail

    def _publish(self, image: Image) -> None:
        frame = Frame(image=image, index=self.frames_read, timestamp=datetime.now(UTC))
        with self._condition:
            self._latest = frame
            self.frames_read += 1
            self._condition.notify_all()

    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a dead capture thread must show as an offline camera
            log.exception("camera %s: capture failed", self.camera_id)
            self._set_health(CameraHealth.OFFLINE, str(exc)[:500])

    def _run(self) -> None:
        raise NotImplementedError


class LiveCapture(LatestFrameSource):
    """An RTSP/HTTP stream or a USB camera, reconnecting with backoff when it dies."""

    def __init__(self, camera_id: str, source: str, fps: float) -> None:
        super().__init__(camera_id, fps)
        self.source = source

    def _open(self) -> Any:
        if self.source.startswith("usb:"):
            return cv2.VideoCapture(int(self.source.removeprefix("usb:")))
        return cv2.VideoCapture(self.source)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self._set_health(CameraHealth.CONNECTING)
            capture = self._open()
            if not capture.isOpened():
                capture.release()
                self._set_health(CameraHealth.OFFLINE, f"cannot open {self.source}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            self._set_health(CameraHealth.OK)
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    self._set_health(CameraHealth.OFFLINE, f"stream {self.source} stopped")
                    break
                self._publish(np.asarray(image, dtype=np.uint8))
            capture.release()


class VideoFileCapture(LatestFrameSource):
    """A video file played at its own speed, looped: a camera stand-in for demos."""

    def __init__(self, camera_id: str, path: Path, fps: float | None) -> None:
        capture = _open_video(path)
        native = _video_fps(capture) or DEFAULT_FPS
        capture.release()
        super().__init__(camera_id, fps or native)
        self.path = path
        self._native_fps = native

    def _run(self) -> None:
        period = 1.0 / self._native_fps
        while not self._stop.is_set():
            capture = _open_video(self.path)
            self._set_health(CameraHealth.OK)
            next_at = time.monotonic()
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    break
                self._publish(np.asarray(image, dtype=np.uint8))
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))
            capture.release()


class StillImageCapture(LatestFrameSource):
    """One image shown over and over at the camera's fps: a still street photo as a camera."""

    def __init__(self, camera_id: str, path: Path, fps: float | None) -> None:
        super().__init__(camera_id, fps or DEFAULT_FPS)
        self.image = read_image(path)

    def _run(self) -> None:
        self._set_health(CameraHealth.OK)
        period = 1.0 / self.fps
        while not self._stop.is_set():
            self._publish(self.image)
            self._stop.wait(period)


def open_source(camera: CameraConfig) -> LatestFrameSource:
    """The live source a camera's `source` names; not started yet."""
    source = camera.source
    if source.startswith(STREAM_PREFIXES) or source.startswith("usb:"):
        return LiveCapture(camera.id, source, camera.fps or DEFAULT_FPS)
    path = resolve_source_path(source)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return StillImageCapture(camera.id, path, camera.fps)
    return VideoFileCapture(camera.id, path, camera.fps)


def grab_frame(camera: CameraConfig, timeout_seconds: float = 15.0) -> Image:
    """One current frame from a camera's source, e.g. to register it as the baseline view."""
    source = open_source(camera)
    source.start()
    try:
        frame = source.latest(timeout=timeout_seconds)
    finally:
        source.stop()
    if frame is None:
        raise SourceError(
            f"camera {camera.id}: no frame within {timeout_seconds:.0f}s ({source.detail})"
        )
    return frame.image


class ReplaySource:
    """Every frame of a clip, stamped by the clip's own clock: start + index / fps.

    Plays `loop` extra times, then holds the last frame for `hold_last_seconds` of clip time
    (held frames are thinned to `hold_fps` to spare the CPU). Images also replay, as a hold.
    """

    def __init__(
        self,
        path: Path,
        loop: int = 0,
        hold_last_seconds: float = 0.0,
        start: datetime | None = None,
        hold_fps: float = 2.0,
        fps: float | None = None,
    ) -> None:
        if loop < 0 or hold_last_seconds < 0:
            raise ValueError("loop and hold_last_seconds must not be negative")
        self.path = resolve_source_path(str(path))
        self.loop = loop
        self.hold_last_seconds = hold_last_seconds
        self.start = start or datetime.now(UTC)
        if self.start.tzinfo is None:
            raise ValueError("replay start must be timezone-aware")
        self._is_image = self.path.suffix.lower() in IMAGE_SUFFIXES
        if self._is_image:
            read_image(self.path)
            self.fps = fps or DEFAULT_FPS
            self.frame_count = 1
        else:
            capture = _open_video(self.path)
            self.fps = fps or _video_fps(capture) or DEFAULT_FPS
            self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            capture.release()
        self._hold_step = max(1, round(self.fps / hold_fps)) if hold_fps > 0 else 1

    @property
    def clip_seconds(self) -> float:
        """Clip time the replay covers: every pass plus the hold."""
        return self.frame_count * (self.loop + 1) / self.fps + self.hold_last_seconds

    def _held_indices(self, last_index: int) -> list[int]:
        """Frame indices of the held last frame: thinned to hold_fps, ending exactly at the hold."""
        end = last_index + round(self.hold_last_seconds * self.fps)
        if end <= last_index:
            return []
        return [*range(last_index + self._hold_step, end, self._hold_step), end]

    @property
    def frames_total(self) -> int:
        """How many frames iterating will yield (from the container's frame count)."""
        played = self.frame_count * (self.loop + 1)
        return played + len(self._held_indices(played - 1)) if played else 0

    def _frames_of_one_pass(self) -> Iterator[Image]:
        if self._is_image:
            yield read_image(self.path)
            return
        capture = _open_video(self.path)
        try:
            read_any = False
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                read_any = True
                yield np.asarray(image, dtype=np.uint8)
            if not read_any:
                raise SourceError(f"cannot decode any frame of {self.path}")
        finally:
            capture.release()

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        last: Image | None = None
        for _ in range(self.loop + 1):
            for image in self._frames_of_one_pass():
                yield Frame(image, index, self.start + timedelta(seconds=index / self.fps))
                last = image
                index += 1
        if last is None:
            return
        for held_index in self._held_indices(index - 1):
            yield Frame(last, held_index, self.start + timedelta(seconds=held_index / self.fps))
