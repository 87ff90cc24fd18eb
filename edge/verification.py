"""Verification by camera at the gateway: re-check a zone when the server asks.

The server sends a VerificationRequest after a worker resolved a parking or fire-lane case.
The camera's pipeline keeps running as usual; for the next ``frames`` frames it processes, the
verifier reads what the zone's own rule saw in the zone (CameraPipeline.occupants: the rule's
zone test on the tracked vehicles, and on fire lanes the stationary-foreground blobs too). The
zone is clear when nothing was in it on any of those frames. The answer carries one annotated
frame, sealed like violation evidence (hash chain of one, redacted copy when faces are blurred).

A camera the gateway does not have, or one that is offline, is answered at once with
``clear=False``, ``frames_checked=0`` and detail "camera unavailable"; so is a check that saw no
frame before its deadline. The server tells such answers from "still blocked" by
``frames_checked == 0``.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import cv2
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from contracts.events import BoundingBox, EvidenceFrame, EvidenceLabel, ObservedObject, Phase
from contracts.mqtt import BrokerSettings, MqttSession
from contracts.topics import parse_camera_topic, verify_result_topic, verify_topic
from contracts.verification import VerificationRequest, VerificationResult
from edge.config import EvidenceSettings
from edge.detections import Detections, Frame
from edge.evidence import BOX_COLOUR, annotate, caption_text, encode_evidence
from edge.pipeline import CameraPipeline
from edge.redaction import EvidenceSealer

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 5
"""Consecutive processed frames a zone must be empty on to count as clear."""

CAMERA_UNAVAILABLE = "camera unavailable"
SESSION_EXPIRY_SECONDS = 3600  # requests older than this are past any deadline anyway
ANSWERED_KEPT = 256  # answers kept to re-send when a request is delivered twice


@dataclass
class _Check:
    request: VerificationRequest
    deadline: float  # on the verifier's clock
    frames: int = 0
    seen: dict[int, ObservedObject] = field(default_factory=dict)  # track id -> latest sighting
    blocked_share: float | None = None
    shown: Frame | None = None  # the frame the answer shows
    shown_boxes: list[BoundingBox] = field(default_factory=list)


class ZoneVerifier:
    """One gateway's pending zone checks, fed the frames its cameras' pipelines processed.

    Not thread-safe: the worker's loop calls submit, observe and expire.
    """

    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        pipelines: Mapping[str, CameraPipeline],
        evidence: EvidenceSettings,
        sealer: EvidenceSealer | None = None,
        frames: int = DEFAULT_FRAMES,
        available: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if frames < 1:
            raise ValueError(f"a zone check needs at least one frame, not {frames}")
        self.site_id = site_id
        self.gateway_id = gateway_id
        self._pipelines = pipelines
        self._evidence = evidence
        self._sealer = sealer
        self._frames = frames
        self._available = available or (lambda _camera_id: True)
        self._clock = clock
        self._checks: dict[str, list[_Check]] = {}  # camera id -> pending checks
        self._answered: OrderedDict[UUID, VerificationResult] = OrderedDict()

    @property
    def pending(self) -> int:
        return sum(len(checks) for checks in self._checks.values())

    def submit(self, request: VerificationRequest) -> VerificationResult | None:
        """Start checking; the answer now when there is nothing to wait for, else None."""
        if (request.site_id, request.gateway_id) != (self.site_id, self.gateway_id):
            log.warning(
                "verification %s is for %s/%s, not this gateway %s/%s: ignored",
                request.request_id,
                request.site_id,
                request.gateway_id,
                self.site_id,
                self.gateway_id,
            )
            return None
        answered = self._answered.get(request.request_id)
        if answered is not None:
            return answered  # delivered twice: the same answer again
        pending = self._checks.get(request.camera_id, [])
        if any(check.request.request_id == request.request_id for check in pending):
            return None
        pipeline = self._pipelines.get(request.camera_id)
        if pipeline is None or not self._available(request.camera_id):
            return self._answer(self._unavailable(request, CAMERA_UNAVAILABLE))
        if request.zone_id not in pipeline.zone_ids():
            detail = f"camera {request.camera_id} watches no zone {request.zone_id}"
            return self._answer(self._unavailable(request, detail))
        deadline = self._clock() + request.deadline_seconds
        self._checks.setdefault(request.camera_id, []).append(_Check(request, deadline))
        log.info(
            "verification %s: checking %s/%s for case %d",
            request.request_id,
            request.camera_id,
            request.zone_id,
            request.case_id,
        )
        return None

    def observe(self, camera_id: str, frame: Frame) -> list[VerificationResult]:
        """Count a frame the camera's pipeline has just processed; the checks it completes."""
        checks = self._checks.get(camera_id)
        if not checks:
            return []
        pipeline = self._pipelines[camera_id]
        done: list[VerificationResult] = []
        for check in list(checks):
            zone_id = check.request.zone_id
            inside = pipeline.occupants.get(zone_id, Detections.empty())
            check.frames += 1
            share = pipeline.blocked_shares.get(zone_id)
            if share is not None:
                check.blocked_share = max(share, check.blocked_share or 0.0)
            sightings = _observed(inside)
            for track_id, sighting in sightings.items():
                check.seen[track_id] = sighting
            # Show the latest frame something was in the zone; else the latest frame.
            if sightings or not check.seen:
                check.shown = frame
                check.shown_boxes = [s.box for s in sightings.values()]
            if check.frames >= self._frames:
                checks.remove(check)
                done.append(self._answer(self._result(check, pipeline)))
        return done

    def expire(self) -> list[VerificationResult]:
        """Answer the checks whose deadline passed with what they saw (nothing: unavailable)."""
        now = self._clock()
        done: list[VerificationResult] = []
        for camera_id, checks in self._checks.items():
            for check in [c for c in checks if c.deadline <= now]:
                checks.remove(check)
                if check.frames == 0:
                    detail = (
                        f"{CAMERA_UNAVAILABLE}: no frame within {check.request.deadline_seconds:g}s"
                    )
                    done.append(self._answer(self._unavailable(check.request, detail)))
                else:
                    done.append(self._answer(self._result(check, self._pipelines[camera_id])))
        return done

    def _answer(self, result: VerificationResult) -> VerificationResult:
        self._answered[result.request_id] = result
        while len(self._answered) > ANSWERED_KEPT:
            self._answered.popitem(last=False)
        log.info(
            "verification %s: %s (%s)",
            result.request_id,
            "clear" if result.clear else "not clear",
            result.detail,
        )
        return result

    def _unavailable(self, request: VerificationRequest, detail: str) -> VerificationResult:
        return VerificationResult(
            request_id=request.request_id,
            site_id=request.site_id,
            gateway_id=request.gateway_id,
            camera_id=request.camera_id,
            zone_id=request.zone_id,
            checked_at=datetime.now(UTC),
            clear=False,
            frames_checked=0,
            detail=detail[:500],
        )

    def _result(self, check: _Check, pipeline: CameraPipeline) -> VerificationResult:
        request = check.request
        objects = list(check.seen.values())
        clear = not objects
        if clear:
            detail = f"zone clear on {check.frames} frame(s)"
        else:
            names = ", ".join(sorted({o.class_name for o in objects}))
            detail = f"still in the zone on {check.frames} frame(s) checked: {names}"
        return VerificationResult(
            request_id=request.request_id,
            site_id=request.site_id,
            gateway_id=request.gateway_id,
            camera_id=request.camera_id,
            zone_id=request.zone_id,
            checked_at=datetime.now(UTC),
            clear=clear,
            blocked_share=(
                None if check.blocked_share is None else round(min(1.0, check.blocked_share), 4)
            ),
            objects=objects[:64],
            frames_checked=check.frames,
            detail=detail[:500],
            evidence=self._evidence_frame(check, pipeline, clear),
        )

    def _evidence_frame(
        self, check: _Check, pipeline: CameraPipeline, clear: bool
    ) -> EvidenceFrame | None:
        frame = check.shown
        if frame is None:
            return None
        zone = next(r.zone for r in pipeline.rules if r.zone.config.id == check.request.zone_id)
        picture = frame.image.copy()
        for box in check.shown_boxes:
            corners = (round(box.x1), round(box.y1)), (round(box.x2), round(box.y2))
            cv2.rectangle(picture, *corners, BOX_COLOUR, 2)
        label = EvidenceLabel.CLEARED if clear else EvidenceLabel.LATEST
        # Clear or not is the frame's label (cleared/latest), translated by the page.
        caption = caption_text(
            frame.timestamp, pipeline.timezone, check.request.camera_id, check.request.zone_id
        )
        image = annotate(picture, zone.polygon, None, "", caption)
        encoded = encode_evidence(image, label, frame.timestamp, self._evidence)
        if self._sealer is None:
            return encoded
        # Sealed as a one-frame violation: a chain link of its own and the redacted copy.
        return self._sealer.seal(check.request.request_id, Phase.CLEARED, [encoded])[0]


def _observed(inside: Detections) -> dict[int, ObservedObject]:
    found: dict[int, ObservedObject] = {}
    for i in range(len(inside)):
        x1, y1, x2, y2 = (float(v) for v in inside.xyxy[i])
        found[int(inside.tracker_id[i])] = ObservedObject(
            class_name=inside.class_name(i)[:64],
            confidence=min(1.0, max(0.0, float(inside.confidence[i]))),
            box=BoundingBox(x1=x1, y1=y1, x2=max(x1, x2), y2=max(y1, y2)),
        )
    return found


class VerificationChannel:
    """The gateway's MQTT side of verification: requests in (per camera topic), answers out.

    A connection of its own, so the violation publisher stays as it is. Requests are queued by
    paho's thread and taken by the worker's loop; malformed ones are logged and counted.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        site_id: str,
        gateway_id: str,
        camera_ids: Iterable[str],
        client_id_suffix: str = "",
    ) -> None:
        self.site_id = site_id
        self.gateway_id = gateway_id
        self._topics = [verify_topic(site_id, gateway_id, camera) for camera in camera_ids]
        self._requests: queue.SimpleQueue[VerificationRequest] = queue.SimpleQueue()
        self.refused = 0
        # A persistent session: the broker keeps requests (QoS 1) while the gateway is away.
        self._session = MqttSession(
            broker,
            f"civicwatch-edge-{gateway_id}-verify{client_id_suffix}",
            subscriptions=lambda: [(topic, 1) for topic in self._topics],
            session_expiry_seconds=SESSION_EXPIRY_SECONDS,
            on_message=self._on_message,
            on_refused=self._on_refused,
            on_subscribe_refused=self._on_subscribe_refused,
        )
        self.ready = self._session.ready  # connected and subscribed

    def start(self) -> None:
        self._session.start()

    def stop(self) -> None:
        self._session.stop()

    def take(self) -> list[VerificationRequest]:
        """The requests that arrived since the last call, oldest first."""
        taken: list[VerificationRequest] = []
        while True:
            try:
                taken.append(self._requests.get_nowait())
            except queue.Empty:
                return taken

    def publish(self, result: VerificationResult) -> bool:
        """Send one answer at QoS 1; False when the client could not take it (no connection)."""
        topic = verify_result_topic(result.site_id, result.gateway_id, result.camera_id)
        info = self._session.publish(topic, result.to_wire(), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.error("verification %s: answer not sent (%s)", result.request_id, info.rc)
            return False
        return True

    def _on_refused(self, reason_code: ReasonCode) -> None:
        log.warning("broker refused the verification connection: %s", reason_code)

    def _on_subscribe_refused(self, failed: list[str]) -> None:
        log.error("broker refused the verify subscriptions: %s", ", ".join(failed))

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        try:
            request = VerificationRequest.model_validate_json(message.payload)
        except ValidationError as exc:
            self.refused += 1
            log.warning("ignoring a bad verification request on %s: %s", message.topic, exc)
            return
        claimed = parse_camera_topic(message.topic)
        identity = (request.site_id, request.gateway_id, request.camera_id)
        if claimed is None or (claimed.site_id, claimed.gateway_id, claimed.camera_id) != identity:
            self.refused += 1
            log.warning(
                "ignoring verification %s: it names %s but came on %s",
                request.request_id,
                "/".join(identity),
                message.topic,
            )
            return
        self._requests.put(request)


def pump(channel: VerificationChannel, verifier: ZoneVerifier) -> int:
    """Start the requests that arrived and send the answers that are due; returns answers sent.

    Call from the loop that runs the pipelines, after feeding ``verifier.observe`` each frame
    (whose answers the caller publishes, or passes to ``send``).
    """
    answers = [
        answer
        for answer in (verifier.submit(request) for request in channel.take())
        if answer is not None
    ]
    answers += verifier.expire()
    return send(channel, answers)


def send(channel: VerificationChannel, answers: Iterable[VerificationResult]) -> int:
    return sum(channel.publish(answer) for answer in answers)
