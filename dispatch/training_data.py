"""Labelled data from the command centre's corrections, per camera, in YOLO format.

A case closed as a false alarm (``close_reason: false_alarm``) or reclassified (RECLASSIFY) sends
its close-ups to ``FOLDER/<camera_id>/``, which ``python -m models.finetune FOLDER`` trains from:

    images/case<id>-<sha16>.jpg    the stored evidence file, byte for byte (redacted copy first)
    labels/case<id>-<sha16>.txt    empty: a hard negative; else ``class cx cy w h``, normalised
    reasons/case<id>-<sha16>.json  why: the action, close reason or kinds, who, when, audit seq
    data.yaml                      names (TRAINING_CLASSES); train and val both ``images``

Why the close-up: the panoramas have the zone outline and the detector's box burnt in, and
show other, real vehicles that an empty label would teach the detector to miss. The close-up is
a crop of the raw frame round the object (edge.violation_evidence.crop_with_margin) with only a
caption band above it; the band is kept (the file stays the evidence its hash names) and is
background in every label. A false alarm's close-up is a negative: the thing the detector took
for a vehicle. A kind change keeps the object (the detector was right, the rule was not): its
box, placed in the close-up by the crop's margin rule, labelled with its detected class.

The exporter follows the audit log (cursor ``training_data``), so a restart neither skips nor
loses a correction; the workflow's after-commit hook only wakes it. Writing is idempotent (the
same names, rewritten whole) and happens outside every action's transaction; a failure is
logged and counted, never raised to the dispatcher. A reopened case's items are removed (a
kind change made before the reopen is written again).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from contracts.events import CAPTION_HEIGHT, CLOSEUP_MARGIN, EvidenceLabel
from dispatch.metrics import TrainingDataMetrics
from dispatch.workflow import Action, CloseReason
from storage.audit import HEAD_ID
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import AuditCursor, AuditHead, Case, CaseEvidence, CaseTransition, Event

log = logging.getLogger(__name__)

CURSOR_NAME = "training_data"
CATCH_UP_SECONDS = 60.0  # the scheduled run; the after-commit hook exports at once
# The class list models/README.md asks a fine-tuned detector to keep, in this order.
TRAINING_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "truck",
    "e_bike",
    "stacked_goods",
)
_WATCHED = (Action.CLOSE.value, Action.RECLASSIFY.value, Action.REOPEN.value)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrainingItem:
    """One close-up to file: where it comes from, its label lines and why."""

    camera_id: str
    name: str
    sha256: str
    labels: tuple[str, ...]
    reason: dict[str, Any]


@dataclass(frozen=True)
class _Work:
    """What one audit entry asks for: items to write, or a case whose items to remove."""

    seq: int
    items: tuple[TrainingItem, ...] = ()
    forget: tuple[str, int] | None = None  # (camera, case id) of a reopened case: first


def closeup_box(box: Box, width: int, height: int) -> Box | None:
    """The object's box in its close-up (x1, y1, x2, y2 in the close-up's pixels), or None when
    the geometry does not hold (the crop cut by two frame edges at once).

    The edge cut box + CLOSEUP_MARGIN of its size on each side, clipped to the frame, scaled the
    crop to the close-up's width and put a caption band of CAPTION_HEIGHT rows above it (fewer,
    were the whole close-up scaled down). The frame's size is not known here, so a crop cut at
    the right edge shows as a band too tall (the height gives the scale), one cut at the bottom
    as a band too short.
    """
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * CLOSEUP_MARGIN, (y2 - y1) * CLOSEUP_MARGIN
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = math.ceil(x2 + dx), math.ceil(y2 + dy)
    if right <= left or bottom <= top or height <= CAPTION_HEIGHT:
        return None
    scale = width / (right - left)
    band = height - round((bottom - top) * scale)
    if band > CAPTION_HEIGHT + 1:  # cut at the right edge
        scale, band = (height - CAPTION_HEIGHT) / (bottom - top), CAPTION_HEIGHT
    elif band < CAPTION_HEIGHT - 1:  # cut at the bottom edge
        band = CAPTION_HEIGHT
    placed = (
        (x1 - left) * scale,
        band + (y1 - top) * scale,
        (x2 - left) * scale,
        band + (y2 - top) * scale,
    )
    if placed[2] > width + 2 or placed[3] > height + 2:
        return None
    return placed


def yolo_line(class_id: int, box: Box, width: int, height: int) -> str:
    """``class cx cy w h``, normalised to the image and clipped to it."""
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(float(width), box[2]), min(float(height), box[3])
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{class_id} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


class TrainingDataExporter:
    """Writes the corrections' close-ups as YOLO data. One per server process."""

    def __init__(
        self,
        session_factory: SessionFactory,
        evidence_store: EvidenceStore,
        folder: Path,
        metrics: TrainingDataMetrics,
        batch_size: int = 200,
    ) -> None:
        self._sessions = session_factory
        self._store = evidence_store
        self.folder = folder
        self._metrics = metrics
        self._batch_size = batch_size
        self._lock = threading.Lock()  # the scheduled job and the hook never pump at once
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="training-data")
        self._pending: Future[int] | None = None

    def on_committed(self, action: Action, _case_id: int) -> None:
        """The workflow's after-commit hook: wake the exporter, never wait for it."""
        pending = self._pending
        queued = pending is not None and not (pending.running() or pending.done())
        if action.value in _WATCHED and not queued:  # a queued run will see this entry too
            self._pending = self._executor.submit(self.pump_all)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the export the hook started (tests; shutdown)."""
        if self._pending is not None:
            self._pending.result(timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def pump_all(self) -> int:
        """Export every correction after the cursor; returns the items written. Never raises."""
        total = 0
        try:
            with self._lock:
                while True:
                    written, entries = self._pump()
                    total += written
                    if entries < self._batch_size:
                        return total
        except Exception:  # the database or the disk: the next run retries from the cursor
            log.exception("training data export stopped; it resumes from its cursor")
            self._metrics.failures.inc()
            return total

    def _pump(self) -> tuple[int, int]:
        """One batch: read what to write, write it, then move the cursor (its own short
        transaction, so no action waits on the files)."""
        with self._sessions() as session:
            cursor = session.scalar(select(AuditCursor.seq).where(AuditCursor.name == CURSOR_NAME))
            head = int(session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0)
            entries = session.scalars(
                select(CaseTransition)
                .where(CaseTransition.seq > (cursor or 0), CaseTransition.seq <= head)
                .where(CaseTransition.action.in_(_WATCHED))
                .order_by(CaseTransition.seq)
                .limit(self._batch_size)
            ).all()
            work = [self._safe_work_for(session, entry) for entry in entries]
        written = sum(self._do(item) for item in work)
        full = len(entries) == self._batch_size
        self._move_cursor(cursor, work[-1].seq if full else head)
        return written, len(entries)

    def _safe_work_for(self, session: Session, entry: CaseTransition) -> _Work:
        try:
            return self._work_for(session, entry)
        except Exception:  # one odd entry (a malformed payload) must not hold up the rest
            log.exception("audit entry %s: no training data", entry.seq)
            self._metrics.failures.inc()
            return _Work(int(entry.seq or 0))

    def _work_for(self, session: Session, entry: CaseTransition) -> _Work:
        seq = int(entry.seq or 0)
        case = session.get(Case, entry.case_id)
        if case is None:
            return _Work(seq)
        detail = entry.detail or {}
        if entry.action == Action.REOPEN.value:
            # Not a false alarm after all: its negatives go; a kind change made before stands.
            kind_change = session.scalars(
                select(CaseTransition)
                .where(CaseTransition.case_id == case.id, CaseTransition.seq < seq)
                .where(CaseTransition.action == Action.RECLASSIFY.value)
                .order_by(CaseTransition.seq.desc())
                .limit(1)
            ).first()
            items = self._work_for(session, kind_change).items if kind_change else ()
            return _Work(seq, items=items, forget=(case.camera_id, case.id))
        false_alarm = detail.get("close_reason") == CloseReason.FALSE_ALARM.value
        if entry.action == Action.CLOSE.value and not false_alarm:
            return _Work(seq)  # a real object closed for another reason: nothing to learn
        reason = {
            "case_id": case.id,
            "camera_id": case.camera_id,
            "zone_id": case.zone_id,
            "action": entry.action,
            "close_reason": detail.get("close_reason"),
            "from_kind": detail.get("from_kind"),
            "kind": detail.get("kind", case.kind),
            "reason": entry.reason,
            "actor": entry.actor,
            "at": entry.at.isoformat(),
            "audit_seq": seq,
            "label": "negative" if false_alarm else "object",
        }
        items = tuple(
            item
            for evidence in _closeups(session, case.id)
            if (item := self._item(session, case, evidence, reason, false_alarm)) is not None
        )
        if not items:
            log.info("case %d: no close-up to learn from (%s)", case.id, entry.action)
        return _Work(seq, items=items)

    def _item(
        self,
        session: Session,
        case: Case,
        evidence: CaseEvidence,
        reason: dict[str, Any],
        false_alarm: bool,
    ) -> TrainingItem | None:
        sha256 = evidence.redacted_sha256 or evidence.sha256
        name = f"case{case.id}-{evidence.sha256[:16]}"
        box, class_name = _object_of(session, case, evidence)
        detail = {**reason, "evidence_sha256": evidence.sha256, "image_sha256": sha256}
        detail.update(object_class=class_name, camera_box=list(box) if box else None)
        if false_alarm:
            return TrainingItem(case.camera_id, name, sha256, (), detail)
        placed = closeup_box(box, evidence.width, evidence.height) if box else None
        if placed is None or class_name not in TRAINING_CLASSES:
            log.info("case %d: %s has no box or class to label: skipped", case.id, name)
            self._metrics.skipped.inc()
            return None
        line = yolo_line(
            TRAINING_CLASSES.index(class_name), placed, evidence.width, evidence.height
        )
        return TrainingItem(case.camera_id, name, sha256, (line,), detail)

    def _do(self, work: _Work) -> int:
        if work.forget is not None:
            self._forget(*work.forget)
        written = 0
        for item in work.items:
            try:
                self._write(item)
            except Exception:  # one bad file (disk, a damaged image) skips that item only
                log.exception("training item %s/%s not written", item.camera_id, item.name)
                self._metrics.failures.inc()
                continue
            self._metrics.items.labels(label=item.reason["label"]).inc()
            written += 1
        return written

    def _write(self, item: TrainingItem) -> None:
        """Reason, then label, then image: an image is never seen without its label."""
        camera = self._camera_folder(item.camera_id)
        data = self._store.read(item.sha256)
        reason = json.dumps(item.reason, ensure_ascii=False, indent=1, sort_keys=True)
        _write_atomically(camera / "reasons" / f"{item.name}.json", reason.encode())
        labels = "".join(f"{line}\n" for line in item.labels)
        _write_atomically(camera / "labels" / f"{item.name}.txt", labels.encode())
        _write_atomically(camera / "images" / f"{item.name}.jpg", data)

    def _camera_folder(self, camera_id: str) -> Path:
        camera = self.folder / _safe(camera_id)
        data_yaml = camera / "data.yaml"
        if not data_yaml.is_file():
            # No ``path``: Ultralytics and models.finetune read the folder the yaml is in.
            data = {"train": "images", "val": "images", "names": dict(enumerate(TRAINING_CLASSES))}
            _write_atomically(data_yaml, yaml.safe_dump(data, sort_keys=False).encode())
        return camera

    def _forget(self, camera_id: str, case_id: int) -> None:
        camera = self.folder / _safe(camera_id)
        for sub, suffix in (("images", "jpg"), ("labels", "txt"), ("reasons", "json")):
            for path in (camera / sub).glob(f"case{case_id}-*.{suffix}"):
                path.unlink(missing_ok=True)

    def _move_cursor(self, old: int | None, new: int) -> None:
        """Compare-and-set: a second exporter that got there first wins; both wrote the same."""
        with self._sessions.begin() as session:
            if old is None:
                session.execute(insert(AuditCursor).values(name=CURSOR_NAME, seq=new))
            elif new != old:
                session.execute(
                    update(AuditCursor)
                    .where(AuditCursor.name == CURSOR_NAME, AuditCursor.seq == old)
                    .values(seq=new)
                )


def _closeups(session: Session, case_id: int) -> Sequence[CaseEvidence]:
    return session.scalars(
        select(CaseEvidence)
        .where(CaseEvidence.case_id == case_id, CaseEvidence.label == EvidenceLabel.CLOSEUP.value)
        .order_by(CaseEvidence.captured_at, CaseEvidence.id)
    ).all()


def _object_of(
    session: Session, case: Case, evidence: CaseEvidence
) -> tuple[Box | None, str | None]:
    """The box (camera pixels) and class the close-up was cut round: its own event's object,
    else the case's latest one."""
    if evidence.violation_id is not None and evidence.sequence is not None:
        payload = session.scalar(
            select(Event.payload).where(
                Event.violation_id == evidence.violation_id, Event.sequence == evidence.sequence
            )
        )
        observed = (payload or {}).get("object")
        if observed:
            b = observed["box"]
            return (b["x1"], b["y1"], b["x2"], b["y2"]), observed.get("class_name")
    if case.box_x1 is None or case.box_y1 is None or case.box_x2 is None or case.box_y2 is None:
        return None, case.object_class
    return (case.box_x1, case.box_y1, case.box_x2, case.box_y2), case.object_class


def _safe(camera_id: str) -> str:
    """Camera ids are identifiers (contracts.events.Identifier); never a path outside FOLDER."""
    if not camera_id or camera_id.startswith(".") or "/" in camera_id or "\\" in camera_id:
        raise ValueError(f"camera id {camera_id!r} is not a folder name")
    return camera_id


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
