"""Evidence sealing: the console's copies with bystanders' faces blurred, and the hash chain.

The original frames stay untouched for enforcement; the console shows the redacted copy. Faces
are found with the Haar cascade that ships inside OpenCV's wheel: cheap, no model download, and
evidence frames are few (a handful per violation), so its cost does not matter.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from uuid import UUID

import cv2
import numpy as np

from contracts.events import GENESIS_CHAIN, EvidenceFrame, Phase, RedactedCopy, chain_link
from edge.config import RedactionSettings
from edge.detections import Image

FACE_CASCADE = "haarcascade_frontalface_default.xml"


class FaceRedactor:
    """Blurs every frontal face in an image."""

    def __init__(self, settings: RedactionSettings) -> None:
        self._settings = settings
        path = Path(cv2.data.haarcascades) / FACE_CASCADE  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(
                f"cannot load the face cascade {path}: is opencv-python 4.x installed?"
            )

    def faces(self, image: Image) -> list[tuple[int, int, int, int]]:
        """(x, y, w, h) of each face found."""
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self._settings.search_width / grey.shape[1])
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        side = self._settings.min_face_pixels
        found = self._cascade.detectMultiScale(
            cv2.equalizeHist(grey), scaleFactor=1.15, minNeighbors=5, minSize=(side, side)
        )
        return [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for x, y, w, h in (map(int, face) for face in found)
        ]

    def redact(self, image: Image) -> tuple[Image, int]:
        """A copy with each face (and a margin round it) pixelated beyond recognition."""
        faces = self.faces(image)
        redacted = image.copy()
        height, width = image.shape[:2]
        for x, y, w, h in faces:
            mx, my = w // 4, h // 4
            x1, y1 = max(0, x - mx), max(0, y - my)
            x2, y2 = min(width, x + w + mx), min(height, y + h + my)
            region = redacted[y1:y2, x1:x2]
            # Pixelate, then blur the blocks: neither alone hides a face reliably.
            small = cv2.resize(region, (6, 6), interpolation=cv2.INTER_AREA)
            blocks = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
            redacted[y1:y2, x1:x2] = cv2.GaussianBlur(blocks, (0, 0), sigmaX=max(3, w // 8))
        return redacted, len(faces)

    def redacted_copy(self, frame: EvidenceFrame) -> RedactedCopy:
        decoded = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError(f"evidence frame {frame.sha256[:12]} is not a decodable image")
        image, faces = self.redact(np.asarray(decoded, dtype=np.uint8))
        ok, buffer = cv2.imencode(
            ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._settings.jpeg_quality]
        )
        if not ok:
            raise ValueError("could not JPEG-encode a redacted copy")
        data = buffer.tobytes()
        return RedactedCopy(sha256=hashlib.sha256(data).hexdigest(), faces_blurred=faces, data=data)


class EvidenceSealer:
    """Chains each violation's frames in capture order and adds the console's redacted copies.

    The chain runs across all events of one violation, so the server can tell when a frame of
    an earlier event was removed or altered. It lives in memory like the rules' incidents do.
    """

    def __init__(self, redactor: FaceRedactor | None) -> None:
        self._redactor = redactor
        self._chains: dict[UUID, str] = {}

    def seal(
        self, violation_id: UUID, phase: Phase, evidence: list[EvidenceFrame]
    ) -> list[EvidenceFrame]:
        chain = self._chains.get(violation_id, GENESIS_CHAIN)
        sealed: list[EvidenceFrame] = []
        for frame in evidence:
            chain = chain_link(chain, frame.sha256)
            redacted = self._redactor.redacted_copy(frame) if self._redactor else None
            sealed.append(frame.model_copy(update={"chain_sha256": chain, "redacted": redacted}))
        if phase is Phase.CLEARED:
            self._chains.pop(violation_id, None)
        else:
            self._chains[violation_id] = chain
        return sealed
