"""The gateway's rule document: verified, kept on disk, never replaced by an older or forged one.

The server publishes each gateway's signed document retained on its rules topic
(contracts.topics.rules_topic). ``offer`` takes a payload from there: it is used only if its
signature holds under the public key in the gateway's config, it names this gateway, and its
version is not older than the one in use. A taken document is written to disk atomically (a
temporary file, fsync, rename) before it is used, so a restart starts from the last one taken,
checked again on load. Whatever is refused is counted by reason and logged; the previous
document stays in use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.exemptions import Decision, RuleDocument, StayHistory, evaluate
from contracts.rule_signing import RefusalReason, RuleDocumentRefused, verify_document
from contracts.sites import SiteConfig, ZoneConfig

log = logging.getLogger(__name__)


class RuleStore:
    def __init__(
        self, path: Path, public_key: Ed25519PublicKey | None, site: SiteConfig, gateway_id: str
    ) -> None:
        """``public_key`` None: no key configured, every document is refused (no exemptions)."""
        self.path = path
        self.site = site
        self.gateway_id = gateway_id
        self._key = public_key
        self._lock = threading.Lock()
        self._document: RuleDocument | None = None
        self.refused: Counter[str] = Counter()
        self.exempted = 0  # violations that never left the gateway: an exemption held
        self.warned = 0  # violations warned, not enforced (a family bay's unreadable plate)
        self._load()

    @property
    def document(self) -> RuleDocument | None:
        return self._document

    @property
    def version(self) -> int | None:
        document = self._document
        return document.version if document is not None else None

    def _load(self) -> None:
        try:
            payload = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("rule document %s unreadable: %s", self.path, exc)
            return
        try:
            self._document = self._check(payload)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.error("rule document on disk (%s) refused: %s", self.path, exc)
        else:
            log.info("rules version %d loaded from %s", self._document.version, self.path)

    def _check(self, payload: bytes) -> RuleDocument:
        if self._key is None:
            raise RuleDocumentRefused(RefusalReason.NO_KEY, "no rules public key configured")
        document = verify_document(payload, self._key)
        if document.gateway_id != self.gateway_id or document.site_id != self.site.id:
            raise RuleDocumentRefused(
                RefusalReason.WRONG_GATEWAY,
                f"for {document.site_id}/{document.gateway_id}, "
                f"not {self.site.id}/{self.gateway_id}",
            )
        return document

    def offer(self, payload: bytes) -> bool:
        """Take a signed document from the broker; True when it is now the one in use."""
        try:
            document = self._check(payload)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.warning("rule document refused (%s); keeping version %s", exc, self.version)
            return False
        with self._lock:
            current = self._document
            if current is not None and document.version < current.version:
                self.refused[RefusalReason.OLDER_VERSION] += 1
                log.warning(
                    "rule document version %d refused: older than %d",
                    document.version,
                    current.version,
                )
                return False
            if current is not None and document.version == current.version:
                return True  # the retained copy again, after a reconnect
            try:
                _write_atomically(self.path, payload)
            except OSError as exc:
                log.error("rule document version %d not stored: %s", document.version, exc)
                return False
            self._document = document
        log.info("rules version %d in use (%d rules)", document.version, len(document.rules))
        return True

    def decide(
        self,
        plate: str | None,
        confidence: float | None,
        zone: ZoneConfig,
        at: datetime,
        history: StayHistory,
    ) -> Decision:
        return evaluate(self._document, plate, confidence, zone, self.site, at, history)


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
