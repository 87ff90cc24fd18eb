"""Object detectors. Model output becomes our Detections here, so nothing else sees it.

Two backends: OpenVINODetector runs an Ultralytics YOLO export (``*_openvino_model`` folder)
with OpenVINO directly, at any imgsz and batch; UltralyticsDetector runs anything else
Ultralytics loads (.pt, .onnx). ``create_detector`` picks one from the settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from contracts.events import ModelInfo
from edge.config import MODEL_ENV_VAR, DetectorSettings
from edge.detections import Detections, FloatArray, Image

log = logging.getLogger(__name__)

LOCAL_MODEL_HINT = "../shared/models/yolo11n_int8_openvino_model"
OPENVINO_SUFFIX = "_openvino_model"
# Ultralytics letterboxes with this grey; the model was trained on it.
LETTERBOX_GREY = 114
MAX_DETECTIONS = 300
# Compiled (mode, height, width) variants kept: two per camera resolution a gateway has.
COMPILED_CACHE_SIZE = 16
DEFAULT_MAX_BATCH = 8
LATENCY, THROUGHPUT = "LATENCY", "THROUGHPUT"  # OpenVINO performance hints


class ModelUnavailableError(Exception):
    """The configured model cannot be loaded (missing file, or a download while offline)."""


class Detector(Protocol):
    """One detector serves every camera of a gateway."""

    @property
    def name(self) -> str: ...

    @property
    def model_info(self) -> ModelInfo: ...

    def detect(self, image: Image) -> Detections: ...

    def detect_batch(self, images: Sequence[Image]) -> list[Detections]: ...

    def prepare(self, frame_sizes: Iterable[tuple[int, int]]) -> None:
        """Get ready for cameras of these (width, height) frames (may do nothing)."""


def prepare_ultralytics_environment(data_dir: Path) -> None:
    """Keep Ultralytics off the network: offline flag and a config dir holding its Arial font.

    Call before anything imports ultralytics; variables already set are left alone.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(data_dir / "ultralytics")))
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    # Ultralytics looks in YOLO_CONFIG_DIR/Ultralytics; the top level is kept for older versions.
    for folder in (config_dir, config_dir / "Ultralytics"):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "Arial.ttf").exists():
            shutil.copy(font, folder / "Arial.ttf")
    # Ultralytics logs (and announces its settings file) on stdout, which belongs to our
    # commands' results, e.g. replay's JSON; its logger binds to sys.stdout at first import.
    with contextlib.redirect_stdout(sys.stderr):
        import ultralytics  # noqa: F401


def create_detector(settings: DetectorSettings) -> Detector:
    """The detector for settings.model: OpenVINO exports run natively, the rest via Ultralytics."""
    if Path(settings.model).name.endswith(OPENVINO_SUFFIX):
        return OpenVINODetector(settings, max_batch=settings.max_batch)
    return UltralyticsDetector(settings)


def _unavailable(model: str, why: str) -> str:
    first_line = why.splitlines()[0] if why else "unknown error"
    return (
        f"cannot load detector model {model!r} ({first_line}); set {MODEL_ENV_VAR} to a "
        f"local model, e.g. {MODEL_ENV_VAR}={LOCAL_MODEL_HINT}"
    )


def _read_metadata(model: Path) -> dict[str, Any]:
    metadata = model / "metadata.yaml"
    if not metadata.is_file():
        return {}
    import yaml

    data = yaml.safe_load(metadata.read_text()) or {}
    return data if isinstance(data, dict) else {}


def _model_version(model: str) -> str:
    version = _read_metadata(Path(model)).get("version")
    if version:
        return str(version)[:64]
    import ultralytics

    return f"ultralytics-{ultralytics.__version__}"[:64]


class _DetectorBase:
    """What both backends share: identity, class names, and detect() on top of detect_batch()."""

    _info: ModelInfo
    _class_names: dict[int, str]

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def model_info(self) -> ModelInfo:
        return self._info

    @property
    def class_names(self) -> dict[int, str]:
        return dict(self._class_names)

    def detect(self, image: Image) -> Detections:
        """Detections in one image."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        raise NotImplementedError

    def prepare(self, frame_sizes: Iterable[tuple[int, int]]) -> None:
        """Nothing to get ready by default."""


class UltralyticsDetector(_DetectorBase):
    """Anything Ultralytics loads: a .pt, an *_openvino_model folder, an .onnx file.

    One instance serves every camera of a gateway; a lock keeps inference one at a time.
    Static exports (OpenVINO, ONNX) run one frame at a time and only at their export size.
    """

    def __init__(self, settings: DetectorSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        model = settings.model
        path = Path(model)
        if path.suffix != ".pt" and not path.exists():
            # Only bare .pt names can be fetched by Ultralytics; anything else must exist here.
            raise ModelUnavailableError(_unavailable(model, "no such file or folder"))
        # In case the environment was not prepared: keep Ultralytics' output off stdout.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                from ultralytics import YOLO  # type: ignore[attr-defined]

                self._model: Any = YOLO(model, task="detect")
            except Exception as exc:
                raise ModelUnavailableError(_unavailable(model, str(exc).strip())) from exc
            names = self._model.names
        self._class_names = {int(k): str(v) for k, v in dict(names).items()}
        # Exported models (OpenVINO, ONNX) are built for batch 1; only .pt takes a real batch.
        self._batch = 16 if path.suffix == ".pt" else 1
        self._info = ModelInfo(
            name=path.name.removesuffix(".pt")[:128], version=_model_version(model)
        )

    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        out: list[Detections] = []
        with self._lock:
            for start in range(0, len(images), self._batch):
                results = self._model.predict(
                    list(images[start : start + self._batch]),
                    imgsz=self._settings.imgsz,
                    conf=self._settings.confidence,
                    iou=self._settings.iou,
                    device=self._settings.device,
                    verbose=False,
                )
                out.extend(self._convert(r) for r in results)
        return out

    def _convert(self, result: Any) -> Detections:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty(self._class_names)
        boxes = boxes.cpu().numpy()
        return Detections.create(
            xyxy=np.asarray(boxes.xyxy),
            confidence=np.asarray(boxes.conf),
            class_id=np.asarray(boxes.cls),
            class_names=self._class_names,
        )


# --- OpenVINO ----------------------------------------------------------------------------------


def _openvino() -> Any:
    """The openvino module, imported only when an OpenVINO model is used (it ships no types)."""
    import openvino  # type: ignore[import-untyped]
    import openvino.preprocess  # type: ignore[import-untyped]

    return openvino


def _anchor_grid(height: int, width: int, strides: Sequence[int]) -> tuple[FloatArray, FloatArray]:
    """Anchor centres (1, 2, N) and their strides (1, 1, N), in Ultralytics' make_anchors order."""
    points: list[FloatArray] = []
    steps: list[FloatArray] = []
    for stride in strides:
        ys, xs = np.meshgrid(
            np.arange(height // stride, dtype=np.float32) + 0.5,
            np.arange(width // stride, dtype=np.float32) + 0.5,
            indexing="ij",
        )
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        steps.append(np.full(xs.size, stride, dtype=np.float32))
    return np.concatenate(points, axis=1)[None], np.concatenate(steps)[None, None]


class _ShapePatcher:
    """Rewrites a static YOLO export's fixed-shape nodes for another batch and input size.

    The exports bake the export size into a few Reshape targets (attention, head flatten, DFL)
    and into the anchor and stride constants of the box decoder. Reshape targets get the batch
    copied from their input (special_zero) and their spatial dims scaled or inferred (-1);
    the anchor constants are recomputed. Anything unexpected raises, naming the node.
    """

    def __init__(self, export_height: int, export_width: int, strides: Sequence[int]) -> None:
        self.export_height = export_height
        self.export_width = export_width
        self.strides = tuple(strides)
        anchors, steps = _anchor_grid(export_height, export_width, self.strides)
        self._export_anchors = anchors
        self._export_steps = steps

    def patch(self, model: Any, height: int, width: int) -> None:
        ov = _openvino()

        anchors, steps = _anchor_grid(height, width, self.strides)
        for op in model.get_ordered_ops():
            kind = op.get_type_name()
            if kind == "Reshape":
                self._patch_reshape(op, height, width)
            elif kind == "Constant" and op.get_output_partial_shape(0).is_static:
                data = op.get_data()
                if data.shape == self._export_anchors.shape:
                    replacement = anchors
                    expected = self._export_anchors
                elif data.shape == self._export_steps.shape:
                    replacement, expected = steps, self._export_steps
                else:
                    continue
                if not np.allclose(data, expected):
                    raise ValueError(f"constant {op.get_friendly_name()} is not the anchor grid")
                constant = ov.op.Constant(replacement.astype(data.dtype))
                op.output(0).replace(constant.output(0))

    def _patch_reshape(self, op: Any, height: int, width: int) -> None:
        ov = _openvino()

        target_node = op.input_value(1).get_node()
        source = op.input(0).get_partial_shape()
        if target_node.get_type_name() != "Constant" or not source.is_static:
            return
        target = [int(v) for v in target_node.get_data()]
        source_shape = [int(d.get_length()) for d in source]
        name = op.get_friendly_name()
        if not target or target[0] not in (source_shape[0], 0):
            raise ValueError(f"reshape {name}: batch is not its first dim ({target})")
        last = target[-1]
        flattened = int(np.prod(source_shape[2:])) if len(source_shape) == 4 else -2
        if last in (-1, source_shape[-1], flattened):
            new = [0, *target[1:-1], -1]  # batch copied, spatial product inferred
        elif len(target) == 4 and target[-2] * target[-1] == source_shape[-1]:
            stride = self.export_height // target[-2]
            if self.export_width // target[-1] != stride:
                raise ValueError(f"reshape {name}: {target} is not a feature map of the input")
            new = [0, target[1], height // stride, width // stride]  # unflatten a feature map
        else:
            raise ValueError(f"reshape {name}: cannot resize target {target} of {source_shape}")
        constant = ov.op.Constant(np.asarray(new, dtype=np.int64))
        op.input(1).replace_source_output(constant.output(0))
        op.set_special_zero(True)


class OpenVINODetector(_DetectorBase):
    """An Ultralytics YOLO detection export in OpenVINO IR, run by OpenVINO directly.

    Ultralytics runs the static (1x3x640x640) exports one frame at a time at 640 only; here the
    graph is reshaped so ``settings.imgsz`` works. Frames are letterboxed to the smallest
    stride multiple that holds them at imgsz (a 16:9 frame at 640 runs 640x384).

    A batch runs as parallel infer requests on a THROUGHPUT-compiled model (one CPU stream per
    core or so): on CPU that beat both a batch tensor and one request at a time, in wall and
    in CPU time per frame. A single frame uses a LATENCY-compiled model (all cores on it).
    Compiled models are kept per (mode, height, width); each frame runs at its own letterbox
    shape, so cameras of different resolutions share a batch. Thread-safe.
    """

    def __init__(self, settings: DetectorSettings, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._settings = settings
        self._max_batch = max_batch
        self._lock = threading.Lock()
        path = Path(settings.model)
        xml = next(iter(sorted(path.glob("*.xml"))), None) if path.is_dir() else None
        if xml is None:
            raise ModelUnavailableError(_unavailable(settings.model, "no OpenVINO .xml in it"))
        metadata = _read_metadata(path)
        if metadata.get("task", "detect") != "detect":
            raise ModelUnavailableError(
                _unavailable(settings.model, f"task {metadata['task']!r} is not detect")
            )
        if metadata.get("args", {}).get("nms"):
            raise ModelUnavailableError(
                _unavailable(settings.model, "exports with nms=True are not supported")
            )
        ov = _openvino()

        self._core = ov.Core()
        try:
            self._source = self._core.read_model(str(xml))
        except Exception as exc:
            raise ModelUnavailableError(_unavailable(settings.model, str(exc).strip())) from exc
        shape = self._source.input().get_partial_shape()
        names = metadata.get("names") or {}
        self._class_names = {int(k): str(v) for k, v in dict(names).items()}
        self._stride = int(metadata.get("stride", 32))
        strides = [self._stride // 4, self._stride // 2, self._stride]
        export_h, export_w = (int(shape[2].get_length()), int(shape[3].get_length()))
        self._patcher = _ShapePatcher(export_h, export_w, strides)
        self._imgsz = -(-settings.imgsz // self._stride) * self._stride
        if self._imgsz != settings.imgsz:
            log.warning("detector imgsz %d rounded up to %d", settings.imgsz, self._imgsz)
        self._compiled: OrderedDict[tuple[str, int, int], _Compiled] = OrderedDict()
        self._info = ModelInfo(name=path.name[:128], version=_model_version(settings.model))
        # Compile the usual shape now so a bad model fails at start, not on the first frame.
        self._compiled_for(LATENCY, self._imgsz, self._imgsz)

    @property
    def imgsz(self) -> int:
        return self._imgsz

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _compiled_for(self, hint: str, height: int, width: int) -> _Compiled:
        key = (hint, height, width)
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
            return compiled
        ov = _openvino()

        model = self._source.clone()
        try:
            # Set the input shape first, then patch and re-infer every node once.
            model.get_parameters()[0].set_partial_shape(ov.PartialShape([1, 3, height, width]))
            self._patcher.patch(model, height, width)
            model.validate_nodes_and_infer_types()
        except Exception as exc:
            raise ModelUnavailableError(
                _unavailable(self._settings.model, f"cannot run at {height}x{width}: {exc}")
            ) from exc
        # Letterboxed BGR uint8 goes in as is; OpenVINO converts, swaps channels and scales.
        ppp = ov.preprocess.PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().tensor().set_color_format(ov.preprocess.ColorFormat.BGR)
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        preprocess = ppp.input().preprocess()
        preprocess.convert_element_type(ov.Type.f32).convert_color(
            ov.preprocess.ColorFormat.RGB
        ).scale(255.0)
        device = "CPU" if self._settings.device.lower() == "cpu" else self._settings.device.upper()
        model = self._core.compile_model(ppp.build(), device, {"PERFORMANCE_HINT": hint})
        compiled = _Compiled(model)
        self._compiled[key] = compiled
        if len(self._compiled) > COMPILED_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled

    def input_shape(self, image_height: int, image_width: int) -> tuple[int, int]:
        """(height, width) the model runs at for a frame of this size: imgsz, stride-rounded."""
        gain = self._imgsz / max(image_height, image_width)
        height = -(-round(image_height * gain) // self._stride) * self._stride
        width = -(-round(image_width * gain) // self._stride) * self._stride
        return height, width

    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        out: list[Detections] = []
        for start in range(0, len(images), self._max_batch):
            out.extend(self._detect_chunk(images[start : start + self._max_batch]))
        return out

    def prepare(self, frame_sizes: Iterable[tuple[int, int]]) -> None:
        """Compile ahead for cameras of these (width, height), so no first frame waits on it."""
        with self._lock:
            for width, height in frame_sizes:
                for hint in (LATENCY, THROUGHPUT):
                    self._compiled_for(hint, *self.input_shape(height, width))

    def _detect_chunk(self, images: Sequence[Image]) -> list[Detections]:
        if not images:
            return []
        # Each frame keeps its own letterbox shape, so a batch gives what single frames give.
        groups: dict[tuple[int, int], list[int]] = {}
        letterboxes: list[_Letterbox] = []
        inputs: list[Image] = []
        for i, image in enumerate(images):
            shape = self.input_shape(*image.shape[:2])
            groups.setdefault(shape, []).append(i)
            tensor = np.empty((1, *shape, 3), dtype=np.uint8)
            letterboxes.append(_letterbox(image, *shape, tensor[0]))
            inputs.append(tensor)
        hint = LATENCY if len(images) == 1 else THROUGHPUT
        outputs: dict[int, NDArray[np.float32]] = {}
        with self._lock:
            running = [
                (indices, self._compiled_for(hint, *shape).start([inputs[i] for i in indices]))
                for shape, indices in groups.items()
            ]
            for indices, requests in running:
                outputs.update(zip(indices, _Compiled.collect(requests), strict=True))
        return [
            self._decode(outputs[i][0], letterbox, image.shape[:2])
            for i, (letterbox, image) in enumerate(zip(letterboxes, images, strict=True))
        ]

    def _decode(
        self, prediction: NDArray[np.float32], letterbox: _Letterbox, size: tuple[int, ...]
    ) -> Detections:
        """(4 + classes, N) raw head output -> boxes in image pixels after per-class NMS."""
        scores = prediction[4:]
        class_id = scores.argmax(axis=0)
        confidence = scores[class_id, np.arange(scores.shape[1])]
        keep = confidence >= self._settings.confidence
        if not keep.any():
            return Detections.empty(self._class_names)
        cx, cy, w, h = prediction[:4, keep]
        xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        chosen = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(),
            confidence[keep].tolist(),
            class_id[keep].tolist(),
            self._settings.confidence,
            self._settings.iou,
            top_k=MAX_DETECTIONS,
        )
        index = np.asarray(chosen, dtype=np.int64).reshape(-1)
        boxes = xywh[index]
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - letterbox.left) / letterbox.gain
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - letterbox.top) / letterbox.gain
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, size[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, size[0])
        return Detections.create(
            xyxy=boxes,
            confidence=confidence[keep][index],
            class_id=class_id[keep][index],
            class_names=self._class_names,
        )


class _Compiled:
    """A compiled model and its pool of infer requests, one per frame in flight."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._requests: list[Any] = []

    def start(self, inputs: Sequence[Image]) -> list[Any]:
        """Start one request per input; collect() their outputs."""
        while len(self._requests) < len(inputs):
            self._requests.append(self.model.create_infer_request())
        requests = self._requests[: len(inputs)]
        for request, tensor in zip(requests, inputs, strict=True):
            request.start_async({0: tensor})
        return requests

    @staticmethod
    def collect(requests: Sequence[Any]) -> list[NDArray[np.float32]]:
        """Output 0 of each started request, waiting for it."""
        outputs = []
        for request in requests:
            request.wait()
            outputs.append(np.array(request.get_output_tensor(0).data, dtype=np.float32))
        return outputs


class _Letterbox:
    __slots__ = ("gain", "left", "top")

    def __init__(self, gain: float, left: int, top: int) -> None:
        self.gain, self.left, self.top = gain, left, top


def _letterbox(image: Image, height: int, width: int, out: Image) -> _Letterbox:
    """Scale image to fit height x width keeping its aspect, centred on grey, into out."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detector input must be an HxWx3 BGR image, got shape {image.shape}")
    source_h, source_w = image.shape[:2]
    gain = min(height / source_h, width / source_w)
    new_w, new_h = round(source_w * gain), round(source_h * gain)
    left, top = (width - new_w) // 2, (height - new_h) // 2
    out[...] = LETTERBOX_GREY
    resized = image if (new_w, new_h) == (source_w, source_h) else cv2.resize(image, (new_w, new_h))
    out[top : top + new_h, left : left + new_w] = resized
    return _Letterbox(gain, left, top)
