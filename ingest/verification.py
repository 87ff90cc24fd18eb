"""Verification answers from the gateways: validated, their frame filed, handed to a hook.

Ingest knows nothing of cases' workflow: the composition root passes ``on_result`` (dispatch's
CameraVerifier.apply_result), which records the answer and closes or reopens the case.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from pydantic import ValidationError

from contracts.sites import SiteRegistry
from contracts.topics import VERIFY_RESULT_CHANNEL, parse_camera_topic
from contracts.verification import VerificationResult
from ingest.validation import Refusal, RefusalReason, check_nesting, describe_errors
from storage.evidence_store import EvidenceStore

log = logging.getLogger(__name__)

VerificationResultHook = Callable[[VerificationResult], None]


def parse_verification_result(
    topic: str, payload: bytes, registry: SiteRegistry, max_payload_bytes: int
) -> VerificationResult:
    """Validate one answer against the contract, its topic and the site registry."""
    if len(payload) > max_payload_bytes:
        raise Refusal(
            RefusalReason.OVERSIZE,
            f"payload is {len(payload)} bytes, the limit is {max_payload_bytes}",
        )
    check_nesting(payload)  # json.loads below raised RecursionError on deep nesting
    try:
        result = VerificationResult.model_validate_json(payload)
    except ValidationError as exc:
        raise _refusal(payload, exc) from exc
    claimed = parse_camera_topic(topic)
    if claimed is None or claimed.channel != VERIFY_RESULT_CHANNEL:
        raise Refusal(RefusalReason.TOPIC_MISMATCH, f"not a verify_result topic: {topic!r}")
    payload_identity = (result.site_id, result.gateway_id, result.camera_id)
    if payload_identity != (claimed.site_id, claimed.gateway_id, claimed.camera_id):
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"payload site/gateway/camera {'/'.join(payload_identity)} "
            f"differs from topic {topic!r}",
        )
    found = registry.camera(result.camera_id)
    if found is None:
        raise Refusal(
            RefusalReason.UNKNOWN_CAMERA, f"camera {result.camera_id!r} is not in the site registry"
        )
    site, gateway, camera = found
    if (site.id, gateway.id) != (result.site_id, result.gateway_id):
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"camera {camera.id!r} belongs to {site.id}/{gateway.id}, "
            f"not {result.site_id}/{result.gateway_id}",
        )
    if camera.zone(result.zone_id) is None:
        raise Refusal(
            RefusalReason.UNKNOWN_ZONE, f"camera {camera.id!r} has no zone {result.zone_id!r}"
        )
    return result


def _refusal(payload: bytes, exc: ValidationError) -> Refusal:
    try:
        document = json.loads(payload)
    except ValueError as decode_error:  # also bad UTF-8 and integers too long to convert
        return Refusal(RefusalReason.MALFORMED_JSON, f"not JSON: {decode_error}"[:400])
    if not isinstance(document, dict):
        return Refusal(
            RefusalReason.MALFORMED_JSON, f"expected a JSON object, got {type(document).__name__}"
        )
    problems = describe_errors(exc)
    if any(err["loc"][:1] == ("schema_version",) for err in exc.errors()) or (
        "unsupported schema_version" in problems
    ):
        return Refusal(RefusalReason.SCHEMA_VERSION, problems)
    if "sha256 mismatch" in problems:
        return Refusal(RefusalReason.EVIDENCE_HASH, problems)
    return Refusal(RefusalReason.INVALID, problems)


class VerificationIntake:
    """Validates an answer, files its frame (and redacted copy), then calls the hook.

    The files are content-addressed and written before the hook's transaction, so a crash in
    between leaves at most a file no row names; the broker redelivers the answer.
    """

    def __init__(
        self,
        registry: SiteRegistry,
        evidence_store: EvidenceStore,
        on_result: VerificationResultHook,
        max_payload_bytes: int,
    ) -> None:
        self._registry = registry
        self._evidence = evidence_store
        self._on_result = on_result
        self._max_payload_bytes = max_payload_bytes

    def handle(self, topic: str, payload: bytes) -> VerificationResult:
        """Raises Refusal for an answer that is not valid; store and hook errors propagate."""
        result = parse_verification_result(topic, payload, self._registry, self._max_payload_bytes)
        frame = result.evidence
        if frame is not None:
            self._evidence.put(frame.data, frame.sha256)
            if frame.redacted is not None:
                self._evidence.put(frame.redacted.data, frame.redacted.sha256)
        self._on_result(result)
        return result
