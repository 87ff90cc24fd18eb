"""The gateway's rule document: verified, kept on disk, never replaced by an older or forged one.

The server publishes each gateway's signed document retained on its rules topic
(contracts.topics.rules_topic). ``offer`` takes a payload from there: it is used only if its
signature holds under the public key in the gateway's config, it names this gateway, and its
version is not older than the one in use. A taken document is written to disk atomically (a
temporary file, fsync, rename) before it is used, so a restart starts from the last one taken,
checked again on load. Whatever is refused is counted by reason and logged; the previous
document stays in use.

A schema 2 document names its site's plates by hash (contracts.rule_signing): the store keeps
the plates apart, in ``<name>.plates-<hash>``, written (atomically) only when the hash changes
and before the document that names them; a document whose hash it already holds is taken
without parsing or writing the plates again. On disk the document is its envelope without the
plates' text; loading checks the signature and the plates' hash again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.exemptions import SHA256_PATTERN, Decision, RuleDocument, StayHistory, evaluate
from contracts.rule_signing import (
    Opened,
    PlatesPart,
    RefusalReason,
    RuleDocumentRefused,
    open_document,
)
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
        self._plates: PlatesPart | None = None  # the site's plates the document names
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
            opened = self._check(self._with_plates_on_disk(payload), None)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.error("rule document on disk (%s) refused: %s", self.path, exc)
        else:
            self._document, self._plates = opened.document, opened.plates
            log.info("rules version %d loaded from %s", opened.document.version, self.path)

    def _plates_file(self, sha256: str) -> Path:
        return self.path.with_name(f"{self.path.name}.plates-{sha256}")

    def _with_plates_on_disk(self, payload: bytes) -> bytes:
        """The stored envelope with the plates file it names put back in, to be checked as if
        it had just arrived (their hash against the signed one); as stored for schema 1, or
        when the file cannot be read (then refused: plates missing)."""
        try:
            named = _named_plates(payload)
            if named is None:
                return payload
            text = self._plates_file(named).read_text(encoding="utf-8")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("site plates for %s unreadable: %s", self.path, exc)
            return payload
        return json.dumps(json.loads(payload) | {"site_plates": text}).encode()

    def _check(self, payload: bytes, held: PlatesPart | None) -> Opened:
        if self._key is None:
            raise RuleDocumentRefused(RefusalReason.NO_KEY, "no rules public key configured")
        opened = open_document(payload, self._key, held)
        document = opened.document
        if document.gateway_id != self.gateway_id or document.site_id != self.site.id:
            raise RuleDocumentRefused(
                RefusalReason.WRONG_GATEWAY,
                f"for {document.site_id}/{document.gateway_id}, "
                f"not {self.site.id}/{self.gateway_id}",
            )
        return opened

    def offer(self, payload: bytes) -> bool:
        """Take a signed document from the broker; True when it is now the one in use."""
        try:
            opened = self._check(payload, self._plates)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.warning("rule document refused (%s); keeping version %s", exc, self.version)
            return False
        document = opened.document
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
                self._store(opened)
            except OSError as exc:
                log.error("rule document version %d not stored: %s", document.version, exc)
                return False
            self._document, self._plates = document, opened.plates
        log.info("rules version %d in use (%d rules)", document.version, len(document.rules))
        return True

    def _store(self, opened: Opened) -> None:
        """New plates first (by hash: the document in use still names its own), then the
        document; the plates the previous document named go last. Nothing is listed: a
        gateway's folder may hold many files (a simulator's holds a thousand gateways')."""
        plates, held = opened.plates, self._plates
        new_hash = plates.sha256 if plates is not None else None
        old_hash = held.sha256 if held is not None else None
        if plates is not None and new_hash != old_hash:
            _write_atomically(self._plates_file(plates.sha256), plates.text.encode())
        _write_atomically(self.path, opened.envelope)
        if old_hash is not None and old_hash != new_hash:
            self._plates_file(old_hash).unlink(missing_ok=True)

    def decide(
        self,
        plate: str | None,
        confidence: float | None,
        zone: ZoneConfig,
        at: datetime,
        history: StayHistory,
    ) -> Decision:
        return evaluate(self._document, plate, confidence, zone, self.site, at, history)


def _named_plates(payload: bytes) -> str | None:
    """The plates hash a stored envelope's document names, unverified (``open_document``
    verifies); None for schema 1."""
    envelope = json.loads(payload)
    document = json.loads(envelope["document"])
    named = document.get("site_plates")
    if not isinstance(named, dict):
        return None
    sha256 = named.get("sha256")
    if not isinstance(sha256, str) or not re.fullmatch(SHA256_PATTERN, sha256):
        raise ValueError("no valid plates hash")
    return sha256


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
