"""The gateway's rule document: verified, kept on disk, never replaced by an older or forged one.

The server publishes each gateway's signed document retained on its rules topic
(contracts.topics.rules_topic). ``offer`` takes a payload from there: it is used only if its
signature holds under the public key in the gateway's config, it names this gateway, and its
version is not older than the one in use. A taken document is written to disk atomically (a
temporary file, fsync, rename) before it is used, so a restart starts from the last one taken,
checked again on load. Whatever is refused is counted by reason and logged; the previous
document stays in use.

Schemas 2 and 3 name the site's plates by hash (contracts.rule_signing). The store keeps them
apart: a base file ``<name>.plates-<hash>`` holding a whole set, written (atomically) before the
document that needs it, and in the document's own file (the envelope as it came) a
``plates_patch`` field with the patch from that base to the set in use. A schema 3 document
that carries a patch from the plates held is taken by applying it (the change's size, and one
hash of the result against the signed one) and writing only the document's file, with the
patches since the base composed into one; the base is written again only when that patch grows
past an eighth of the plates. A document naming plates the store cannot make (none held,
another set, a patch that does not give the signed hash) waits (``wanted_plates``) until
``offer_plates`` brings the whole set, signed, from the site's plates topic
(contracts.topics.site_plates_topic); the document in use stays meanwhile. Loading checks the
signature, and the plates' hash, again.
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
from pydantic import ValidationError

from contracts.exemptions import (
    SHA256_PATTERN,
    Decision,
    PlatesPatch,
    RuleDocument,
    StayHistory,
    evaluate,
)
from contracts.rule_signing import (
    Opened,
    PlatesPart,
    PlatesWanted,
    RefusalReason,
    RuleDocumentRefused,
    complete,
    compose,
    open_document,
    open_site_plates,
)
from contracts.sites import SiteConfig, ZoneConfig

log = logging.getLogger(__name__)

COMPACT_MIN_PLATES = 64
"""The composed patch beside a base file may hold this many plates, or an eighth of the set's,
whichever is more, before the base is written again."""


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
        self._base: str | None = None  # the hash of the plates file on disk
        self._patch: PlatesPatch | None = None  # from the base to ``_plates``
        self._pending: PlatesWanted | None = None  # a document waiting for the site's plates
        self._spare: PlatesPart | None = None  # site plates that came but were not wanted
        self.refused: Counter[str] = Counter()
        self.plates_wanted = 0  # documents that waited for the whole set from the site topic
        self.plates_fetched = 0  # whole sets taken from the site topic
        self.plates_patched = 0  # documents taken by applying their patch
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

    @property
    def wanted_plates(self) -> str | None:
        """The SHA-256 of the site plates a newer document waits for (subscribe to the site's
        plates topic while it is not None); None: nothing waits."""
        pending = self._pending
        return pending.sha256 if pending is not None else None

    def _load(self) -> None:
        try:
            payload = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("rule document %s unreadable: %s", self.path, exc)
            return
        try:
            envelope, patch = _stored(payload)
            opened = self._check(self._with_plates_on_disk(envelope, patch), None)
            base = patch.from_sha256 if patch is not None else _named_plates(envelope)
        except PlatesWanted as wanted:
            self.refused[RefusalReason.PLATES_MISSING] += 1
            self._pending = wanted  # the broker's site topic may still have them
            log.error("rule document on disk (%s) refused: %s", self.path, wanted)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.error("rule document on disk (%s) refused: %s", self.path, exc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.refused[RefusalReason.GARBLED] += 1
            log.error("rule document on disk (%s) unreadable: %s", self.path, exc)
        else:
            self._document, self._plates = opened.document, opened.plates
            self._base, self._patch = base, patch
            log.info("rules version %d loaded from %s", opened.document.version, self.path)

    def _plates_file(self, sha256: str) -> Path:
        return self.path.with_name(f"{self.path.name}.plates-{sha256}")

    def _with_plates_on_disk(self, envelope: bytes, patch: PlatesPatch | None) -> bytes:
        """The stored envelope with the plates it names put back in, to be checked as if it had
        just arrived (their hash against the signed one): the base file, with the stored patch
        applied; as stored for schema 1, or when the base cannot be read (then refused)."""
        try:
            named = _named_plates(envelope)
            if named is None:
                return envelope
            base = patch.from_sha256 if patch is not None else named
            text = self._plates_file(base).read_text(encoding="utf-8")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("site plates for %s unreadable: %s", self.path, exc)
            return envelope
        if patch is not None:
            try:
                text = PlatesPart.parse(text).patched(patch, named).text
            except ValidationError as exc:
                raise RuleDocumentRefused(RefusalReason.INVALID_DOCUMENT, str(exc)[:300]) from exc
        return json.dumps(json.loads(envelope) | {"site_plates": text}).encode()

    def _check(self, payload: bytes, held: PlatesPart | None) -> Opened:
        if self._key is None:
            raise RuleDocumentRefused(RefusalReason.NO_KEY, "no rules public key configured")
        try:
            opened = open_document(payload, self._key, held)
        except PlatesWanted as wanted:
            self._ours(wanted.document.site_id, wanted.document.gateway_id)
            raise
        self._ours(opened.document.site_id, opened.document.gateway_id)
        return opened

    def _ours(self, site_id: str, gateway_id: str) -> None:
        if gateway_id != self.gateway_id or site_id != self.site.id:
            raise RuleDocumentRefused(
                RefusalReason.WRONG_GATEWAY,
                f"for {site_id}/{gateway_id}, not {self.site.id}/{self.gateway_id}",
            )

    def offer(self, payload: bytes) -> bool:
        """Take a signed document from the broker; True when it is now the one in use. A
        document that must wait for the site's plates answers False (``wanted_plates``)."""
        try:
            opened = self._check(payload, self._plates)
        except PlatesWanted as wanted:
            if wanted.after is not None:  # its patch did not give the signed plates
                self.refused[wanted.after] += 1
            return self._wait(wanted)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.warning("rule document refused (%s); keeping version %s", exc, self.version)
            return False
        return self._take(opened)

    def offer_plates(self, payload: bytes) -> bool:
        """Take the site's signed plates from the site's plates topic; True when the document
        that waited for them is now the one in use. Forged, garbled or another site's plates
        are refused and counted; signed plates that no document waits for are kept aside for
        the next document that names them."""
        if self._key is None:
            self.refused[RefusalReason.NO_KEY] += 1
            return False
        try:
            part = open_site_plates(payload, self._key, self.site.id)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.warning("site plates refused (%s); keeping version %s", exc, self.version)
            return False
        with self._lock:
            pending = self._pending
            if pending is None or pending.sha256 != part.sha256:
                self._spare = part
                return False
        return self._complete(pending, part)

    def _wait(self, wanted: PlatesWanted) -> bool:
        version = wanted.document.version
        with self._lock:
            current = self.version
            if current is not None and version <= current:
                if version < current:
                    self.refused[RefusalReason.OLDER_VERSION] += 1
                return version == current  # the retained copy again: in use already
            pending = self._pending
            if pending is not None and pending.document.version > version:
                return False
            self._pending = wanted
            self.plates_wanted += 1
            spare = self._spare
        log.info("rules version %d waits for the site's plates %s", version, wanted.sha256[:16])
        if spare is not None and spare.sha256 == wanted.sha256:
            return self._complete(wanted, spare)
        return False

    def _complete(self, wanted: PlatesWanted, part: PlatesPart) -> bool:
        try:
            opened = complete(wanted, part)
        except RuleDocumentRefused as exc:
            self.refused[exc.reason] += 1
            log.warning("site plates refused (%s); keeping version %s", exc, self.version)
            return False
        self.plates_fetched += 1
        return self._take(opened)

    def _take(self, opened: Opened) -> bool:
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
            if opened.patch is not None:
                self.plates_patched += 1
            pending = self._pending
            if pending is not None and pending.document.version <= document.version:
                self._pending = None
            if self._spare is not None and self._spare.sha256 == self.plates_sha256:
                self._spare = None
        log.info("rules version %d in use (%d rules)", document.version, len(document.rules))
        return True

    @property
    def plates_sha256(self) -> str | None:
        plates = self._plates
        return plates.sha256 if plates is not None else None

    def _store(self, opened: Opened) -> None:
        """Plates first, then the document. The same plates: the base and its patch stay.
        Patched from the plates held: the patch since the base grows by this one, and only
        the document's file is written (the base again once that patch is past an eighth of
        the plates). A whole set: it becomes the base. The base replaced goes last. Nothing
        is listed: a gateway's folder may hold many files (a simulator's a thousand
        gateways')."""
        plates, held = opened.plates, self._plates
        base, patch = self._base, self._patch
        if plates is None:
            base, patch = None, None
        elif held is not None and plates.sha256 == held.sha256:
            pass
        elif (
            opened.patch is not None
            and base is not None
            and held is not None
            and opened.patch.from_sha256 == held.sha256  # not another thread's plates since
        ):
            patch = compose(patch, opened.patch, base)
            if patch.added.count() + patch.removed.count() > max(
                COMPACT_MIN_PLATES, plates.count // 8
            ):
                base, patch = plates.sha256, None
        else:
            base, patch = plates.sha256, None
        if plates is not None and base == plates.sha256 and base != self._base:
            _write_atomically(self._plates_file(base), plates.text.encode())
        stored = opened.envelope
        if patch is not None:  # the envelope as it came, and beside its fields the patch
            fields = json.loads(stored) | {"plates_patch": patch.model_dump(mode="json")}
            stored = json.dumps(fields, ensure_ascii=False).encode()
        _write_atomically(self.path, stored)
        if self._base is not None and self._base != base:
            self._plates_file(self._base).unlink(missing_ok=True)
        self._base, self._patch = base, patch

    def decide(
        self,
        plate: str | None,
        confidence: float | None,
        zone: ZoneConfig,
        at: datetime,
        history: StayHistory,
    ) -> Decision:
        return evaluate(self._document, plate, confidence, zone, self.site, at, history)


def _stored(payload: bytes) -> tuple[bytes, PlatesPatch | None]:
    """The envelope and the patch from the base plates file in a document's file: the
    envelope's own fields, and ``plates_patch`` beside them when the plates in use are the
    base's with a patch (the signature covers the document's text, whatever the envelope's
    bytes)."""
    fields = json.loads(payload)
    if not isinstance(fields, dict) or "plates_patch" not in fields:
        return payload, None
    patch = PlatesPatch.model_validate(fields.pop("plates_patch"))
    return json.dumps(fields).encode(), patch


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
