"""Signed rule documents: the server signs each gateway's document with Ed25519, the gateway
verifies it with the public key from its config before it uses a single rule.

The envelope carries the document as the exact JSON text that was signed, so neither side has to
agree on a canonical form: the signature covers those bytes, and only after it holds are they
parsed. Keys are written as base64 of the raw 32-byte key (``generate_key_pair``) or as PEM.

Two schemas of document (contracts.exemptions):

- 1, ``RuleDocument``: the whole rule set, registry plates included, signed as one text;
- 2, ``GatewayRules``: the gateway's own rules and the site's ``SitePlates`` named by SHA-256.
  The envelope's ``site_plates`` holds that exact text, so a retained message is whole on its
  own (a gateway that was offline, or new, needs nothing else); a gateway that already holds
  plates with that hash does not parse them again.
- 3, ``GatewayRules`` without the text (what the server sends): the site's plates go once per
  change, signed on their own (``sign_site_plates``), retained on the site's plates topic.
  Each gateway's document names their hash and may carry a ``PlatesPatch`` from the set the
  server sent before: a gateway holding that set applies it (``PlatesPart.patched``: the size
  of the change, plus one serialisation and hash of the result to check it against the signed
  hash); any other gateway takes the whole set from the site topic (``PlatesWanted``, then
  ``complete`` with ``open_site_plates``).

The site's plates on the site topic (``sign_site_plates``) come in one of two forms; a gateway
reads both, told apart by their first bytes:

- schema 3: a JSON envelope whose ``document`` is the SitePlates JSON text (about 140 KB for
  10,000 plates, every quote escaped again inside the envelope);
- schema 4 (what the server sends): a ``PLATES_FRAME``, the same SitePlates JSON text compressed
  with zlib behind the key id and an Ed25519 signature over the compressed bytes (about 23 KB
  for 10,000 plates). The signature is checked before anything is inflated, and inflating stops
  past ``MAX_PLATES_TEXT_BYTES`` (a zip bomb, even signed, is refused: oversize). The text, and
  so the hash each gateway's document names, is the same as schema 3's: the gateways' documents
  stay schema 3, and a gateway that reads only schema 3 still takes permit changes and patches;
  only a whole set it fetches is refused (garbled, counted), its rules kept.

``open_document`` gives what a gateway runs: a schema 1 document as signed, a schema 2 or 3 one
with the site's plates merged in (contracts.registry_plates.with_registry, as the server does).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import zlib
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contracts.exemptions import (
    MAX_PATCH_PLATES,
    MAX_PLATES,
    GatewayRules,
    PlateLists,
    PlatesPatch,
    Rule,
    RuleDocument,
    SitePlates,
    WireDocument,
)
from contracts.registry_plates import (
    RegistryPlates,
    registry_allowlists,
    with_registry,
)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""The largest signed document a gateway takes (100,000 plates are about 1.3 MB)."""


PLATES_FRAME = b"CWP4"
"""A schema 4 site plates message: these 4 bytes, the signing key's id (16 ASCII hex digits),
the Ed25519 signature (64 bytes) of ``PLATES_SIGNED_PREFIX`` and the compressed bytes, then the
SitePlates JSON text compressed with zlib. Not JSON: a gateway that reads only schema 3 refuses
it (garbled) and keeps its rules."""

PLATES_SIGNED_PREFIX = b"civicwatch site plates 4\n"
"""What a plates frame's signature covers before the compressed bytes: no signature over a JSON
document can pass for a plates frame's, nor the other way round."""

MAX_PLATES_TEXT_BYTES = 3 * MAX_PLATES * 32 + 4096
"""The most a frame may inflate to: three full lists of plates (at most 8 characters, 3 UTF-8
bytes each, quoted, comma) and the rest of the SitePlates JSON, with room to spare (~9.6 MB).
Past it the frame is refused (oversize) without inflating further, whatever its signature."""

_FRAME_HEAD = len(PLATES_FRAME) + 16 + 64


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    document: str = Field(max_length=MAX_DOCUMENT_BYTES, description="the signed JSON text")
    signature: str = Field(max_length=200, description="base64 Ed25519 signature of document")
    key_id: str = Field(max_length=64, description="which key signed: key_id(public key)")
    site_plates: str | None = Field(
        default=None,
        max_length=MAX_DOCUMENT_BYTES,
        description="schema 2: the SitePlates JSON text the document names by SHA-256",
    )


_WIRE = TypeAdapter[RuleDocument | GatewayRules](WireDocument)


class RefusalReason(StrEnum):
    OVERSIZE = "oversize"
    GARBLED = "garbled"  # not an envelope, or not base64
    WRONG_KEY = "wrong_key"  # signed by another key
    BAD_SIGNATURE = "bad_signature"  # the right key id, but the signature does not hold
    INVALID_DOCUMENT = "invalid_document"  # signed, but not a valid RuleDocument
    # Schema 2: the site's plates are missing, do not match the signed hash, or are invalid.
    PLATES_MISSING = "plates_missing"
    PLATES_MISMATCH = "plates_mismatch"
    # The gateway's own checks (edge.rule_store):
    NO_KEY = "no_key"  # the gateway has no public key configured
    WRONG_GATEWAY = "wrong_gateway"  # signed, but for another gateway
    OLDER_VERSION = "older_version"  # older than the document in use


class RuleDocumentRefused(Exception):  # noqa: N818 - an outcome, named as the design names it
    def __init__(self, reason: RefusalReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


_CATEGORIES = ("resident", "service", "family")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of its SHA-256."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair() -> tuple[str, str]:
    """A new (private, public) pair, each as base64 of the raw key."""
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw_private).decode(), public_key_text(private.public_key())


def public_key_text(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """A private key from base64 of its raw 32 bytes, or from PEM; ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw32(text))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A public key from base64 of its raw 32 bytes, or from PEM; ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw32(text))


def _raw32(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 key has 32 bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class PlatesPart:
    """A site's plates as one exact JSON text, its SHA-256 and, parsed once, the rules they
    make (the registry's allowlists; family plates go into each family bay)."""

    text: str
    sha256: str
    plates: SitePlates

    @classmethod
    def of(cls, plates: SitePlates) -> PlatesPart:
        """The server's side: serialise once per change."""
        text = plates.model_dump_json()
        return cls(text, hashlib.sha256(text.encode()).hexdigest(), plates)

    @classmethod
    def parse(cls, text: str | bytes) -> PlatesPart:
        """The gateway's side, from the text or its UTF-8 bytes (a frame's, inflated: hashed
        and parsed as they are, not encoded again); ValidationError for text that is not
        SitePlates, UnicodeDecodeError for bytes that are not UTF-8."""
        raw = text if isinstance(text, bytes) else text.encode()
        plates = SitePlates.model_validate_json(raw)
        decoded = raw.decode() if isinstance(text, bytes) else text
        return cls(decoded, hashlib.sha256(raw).hexdigest(), plates)

    @property
    def count(self) -> int:
        plates = self.plates
        return len(plates.resident) + len(plates.service) + len(plates.family)

    @cached_property
    def registry_rules(self) -> list[Rule]:
        """The site-wide allowlists of the registry's residents and service vehicles, as
        ``with_registry`` makes them; the plates were checked when they were parsed (or the
        patch that made them was), so not again."""
        plates = self.plates
        return registry_allowlists(
            plates.site_id, plates.resident, plates.service, plates.changed_at, checked=True
        )

    def patched(self, patch: PlatesPatch, sha256: str) -> PlatesPart:
        """These plates changed by ``patch``, which must start from them and end at ``sha256``
        (the hash the signed document names); RuleDocumentRefused (plates_mismatch) otherwise.
        Costs the change's size in list edits, then one serialisation (``site_plates_json``:
        a join per list) and SHA-256 of the result: no plate is parsed or checked again. The
        whole result is hashed on purpose: the patch is signed, but one that does not give the
        set the document names (a server's bug) must not become the plates in use."""
        if patch.from_sha256 != self.sha256:
            raise RuleDocumentRefused(
                RefusalReason.PLATES_MISMATCH,
                f"patch from {patch.from_sha256[:16]}, plates held {self.sha256[:16]}",
            )
        lists: dict[str, list[str]] = {}
        for name in _CATEGORIES:
            listed: list[str] = getattr(self.plates, name)
            added: list[str] = getattr(patch.added, name)
            removed: list[str] = getattr(patch.removed, name)
            if not added and not removed:
                lists[name] = listed
                continue
            edited = list(listed)
            for plate in removed:
                at = bisect.bisect_left(edited, plate)
                if at == len(edited) or edited[at] != plate:
                    raise RuleDocumentRefused(
                        RefusalReason.PLATES_MISMATCH, f"patch removes {name} plate not held"
                    )
                del edited[at]
            for plate in added:
                at = bisect.bisect_left(edited, plate)
                if at < len(edited) and edited[at] == plate:
                    raise RuleDocumentRefused(
                        RefusalReason.PLATES_MISMATCH, f"patch adds {name} plate already held"
                    )
                edited.insert(at, plate)
            lists[name] = edited
        plates = SitePlates.model_construct(
            site_id=self.plates.site_id,
            changed_at=patch.changed_at,
            resident=lists["resident"],
            service=lists["service"],
            family=lists["family"],
        )
        text = site_plates_json(plates)
        part = PlatesPart(text, hashlib.sha256(text.encode()).hexdigest(), plates)
        if part.sha256 != sha256:
            raise RuleDocumentRefused(
                RefusalReason.PLATES_MISMATCH, f"patched plates do not hash to {sha256[:16]}"
            )
        return part


_LISTS_SHELL = '"resident":[],"service":[],"family":[]'


def site_plates_json(plates: SitePlates) -> str:
    """``plates.model_dump_json()``, the same text, written with one join per list instead of
    pydantic serialising each plate (99,000 plates: about 1 ms against 8.5). Valid plates need
    no JSON escape (contracts.events.PLATE_PATTERN), nor does a site id (Identifier); a text
    that still came out different would hash to something other than the signed hash, and
    the gateway takes the whole set instead (tests compare both ways of writing)."""
    shell = SitePlates.model_construct(
        site_id=plates.site_id, changed_at=plates.changed_at, resident=[], service=[], family=[]
    ).model_dump_json()
    head, tail = shell.split(_LISTS_SHELL)

    def listed(values: list[str]) -> str:
        return '["' + '","'.join(values) + '"]' if values else "[]"

    return "".join(
        (
            head,
            f'"resident":{listed(plates.resident)},"service":{listed(plates.service)}',
            f',"family":{listed(plates.family)}',
            tail,
        )
    )


def plates_patch(
    before: PlatesPart, after: PlatesPart, limit: int = MAX_PATCH_PLATES
) -> PlatesPatch | None:
    """The server's side: the patch from ``before`` to ``after``, or None when more than
    ``limit`` plates changed (the gateways take the whole set then) or the site differs."""
    if before.plates.site_id != after.plates.site_id:
        return None
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    changed = 0
    for name in _CATEGORIES:
        old, new = set(getattr(before.plates, name)), set(getattr(after.plates, name))
        added[name], removed[name] = sorted(new - old), sorted(old - new)
        changed += len(added[name]) + len(removed[name])
        if changed > limit:
            return None
    return PlatesPatch(
        from_sha256=before.sha256,
        changed_at=after.plates.changed_at,
        added=PlateLists(**added),
        removed=PlateLists(**removed),
    )


def _lists(by: dict[str, list[str]]) -> PlateLists:
    return PlateLists.model_construct(
        resident=by["resident"], service=by["service"], family=by["family"]
    )


def compose(first: PlatesPatch | None, then: PlatesPatch, base: str) -> PlatesPatch:
    """One patch from ``base`` doing ``first`` (None: nothing, from ``base``) then ``then``:
    what a gateway keeps on disk beside the plates file of ``base``. Unchecked: the gateway
    checks the result's hash against the signed one whenever it applies it."""
    if first is None:
        return then.model_copy(update={"from_sha256": base})
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    for name in _CATEGORIES:
        a1, r1 = set(getattr(first.added, name)), set(getattr(first.removed, name))
        a2, r2 = set(getattr(then.added, name)), set(getattr(then.removed, name))
        added[name] = sorted((a1 | a2) - (r1 | r2))
        removed[name] = sorted((r1 | r2) - (a1 | a2))
    return PlatesPatch.model_construct(
        from_sha256=first.from_sha256,
        changed_at=then.changed_at,
        added=_lists(added),
        removed=_lists(removed),
    )


def whole_document(document: GatewayRules, part: PlatesPart) -> RuleDocument:
    """The rules a gateway runs from a schema 2 document and its site's plates: the same
    ``with_registry`` gives as the server building a schema 1 document would."""
    plates = part.plates
    family = RegistryPlates(family=tuple(plates.family), changed_at=plates.changed_at)
    rules = with_registry(list(document.rules), family, document.site_id) + part.registry_rules
    return RuleDocument(
        site_id=document.site_id,
        gateway_id=document.gateway_id,
        version=document.version,
        issued_at=document.issued_at,
        plate_confidence_floor=document.plate_confidence_floor,
        rules=rules,
        repeat_offenders=document.repeat_offenders,
    )


def sign_document(document: RuleDocument, private_key: Ed25519PrivateKey) -> bytes:
    """The wire payload: the envelope holding the document's JSON and its signature."""
    return sign_text(document.model_dump_json(), private_key)


def sign_text(text: str, private_key: Ed25519PrivateKey) -> bytes:
    """The envelope for a document's exact JSON text, e.g. one the server composed around rules
    it serialised once for many gateways; the gateway parses it as a RuleDocument."""
    signature = private_key.sign(text.encode())
    envelope = _Envelope(
        document=text,
        signature=base64.b64encode(signature).decode(),
        key_id=key_id(private_key.public_key()),
    )
    return envelope.model_dump_json(exclude_none=True).encode()


def sign_site_plates(part: PlatesPart, private_key: Ed25519PrivateKey) -> bytes:
    """The site's plates as a ``PLATES_FRAME`` (schema 4): what the server keeps retained on the
    site's plates topic, compressed and signed once per change."""
    packed = zlib.compress(part.text.encode(), 6)
    signature = private_key.sign(PLATES_SIGNED_PREFIX + packed)
    signer = key_id(private_key.public_key()).encode("ascii")
    return b"".join((PLATES_FRAME, signer, signature, packed))


def sign_site_plates_envelope(part: PlatesPart, private_key: Ed25519PrivateKey) -> bytes:
    """The site's plates as a server of schema 3 sent them: a JSON envelope whose ``document``
    is the SitePlates text (what a gateway still reads)."""
    return sign_text(part.text, private_key)


def open_site_plates(payload: bytes, public_key: Ed25519PublicKey, site_id: str) -> PlatesPart:
    """The plates from a site plates message (a schema 4 frame, or a schema 3 envelope) if
    ``public_key`` signed them and they are ``site_id``'s; RuleDocumentRefused (oversize,
    garbled, wrong_key, bad_signature, invalid_document, plates_mismatch for another site's)
    otherwise."""
    text: str | bytes
    if payload.startswith(PLATES_FRAME):
        text = _inflated_frame(payload, public_key)
    else:
        envelope = _verified_envelope(payload, public_key)
        if envelope.site_plates is not None:
            raise RuleDocumentRefused(
                RefusalReason.GARBLED, "a plates envelope holds no site_plates"
            )
        text = envelope.document
    try:
        part = PlatesPart.parse(text)
    except ValidationError as exc:
        raise RuleDocumentRefused(RefusalReason.INVALID_DOCUMENT, str(exc)[:300]) from exc
    except UnicodeDecodeError as exc:
        raise RuleDocumentRefused(RefusalReason.GARBLED, "plates text not UTF-8") from exc
    if part.plates.site_id != site_id:
        raise RuleDocumentRefused(
            RefusalReason.PLATES_MISMATCH, f"plates of site {part.plates.site_id!r}"
        )
    return part


def _inflated_frame(payload: bytes, public_key: Ed25519PublicKey) -> bytes:
    """The SitePlates text (UTF-8) of a ``PLATES_FRAME`` once its signature holds: checked over
    the compressed bytes first, then they are inflated, at most MAX_PLATES_TEXT_BYTES."""
    if len(payload) > MAX_DOCUMENT_BYTES + 4096:
        raise RuleDocumentRefused(RefusalReason.OVERSIZE, f"{len(payload)} bytes")
    if len(payload) <= _FRAME_HEAD:
        raise RuleDocumentRefused(RefusalReason.GARBLED, "a plates frame too short")
    start = len(PLATES_FRAME)
    signer = payload[start : start + 16].decode("ascii", "replace")
    if signer != key_id(public_key):
        raise RuleDocumentRefused(RefusalReason.WRONG_KEY, f"signed by key {signer!r}, not ours")
    signature, packed = payload[start + 16 : _FRAME_HEAD], payload[_FRAME_HEAD:]
    try:
        public_key.verify(signature, PLATES_SIGNED_PREFIX + packed)
    except InvalidSignature as exc:
        raise RuleDocumentRefused(RefusalReason.BAD_SIGNATURE, "signature does not hold") from exc
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(packed, MAX_PLATES_TEXT_BYTES + 1)
    except zlib.error as exc:
        raise RuleDocumentRefused(RefusalReason.GARBLED, f"not zlib: {exc}") from exc
    if len(raw) > MAX_PLATES_TEXT_BYTES or inflate.unconsumed_tail:
        raise RuleDocumentRefused(
            RefusalReason.OVERSIZE, f"inflates past {MAX_PLATES_TEXT_BYTES} bytes"
        )
    if not inflate.eof or inflate.unused_data:
        raise RuleDocumentRefused(RefusalReason.GARBLED, "compressed plates cut short or padded")
    return raw


@dataclass(frozen=True)
class Opened:
    """A verified envelope: the document the gateway runs, the envelope to keep (without the
    plates' text, which is kept apart, once per hash), the site's plates for schemas 2 and 3,
    and the signed patch that made them from the plates held (None: held, or a whole set)."""

    document: RuleDocument
    envelope: bytes
    plates: PlatesPart | None
    patch: PlatesPatch | None = None


class PlatesWanted(RuleDocumentRefused):
    """A schema 3 document whose signature holds, but whose plates this gateway cannot make
    from the ones it holds (none, another set, or a patch that did not give the signed hash:
    ``after`` says which refusal that was). Not in use until ``complete`` gets the whole set
    from the site's plates topic."""

    def __init__(
        self, document: GatewayRules, envelope: bytes, after: RefusalReason | None = None
    ) -> None:
        self.document = document
        self.envelope = envelope
        self.after = after
        self.sha256 = document.site_plates.sha256
        super().__init__(RefusalReason.PLATES_MISSING, f"site plates {self.sha256[:16]} wanted")


def complete(wanted: PlatesWanted, part: PlatesPart) -> Opened:
    """The document ``wanted`` with the site's plates ``part`` (from ``open_site_plates``);
    RuleDocumentRefused (plates_mismatch) when they are not the ones it names."""
    if part.sha256 != wanted.sha256:
        raise RuleDocumentRefused(
            RefusalReason.PLATES_MISMATCH, f"site plates do not hash to {wanted.sha256[:16]}"
        )
    if part.plates.site_id != wanted.document.site_id:
        raise RuleDocumentRefused(
            RefusalReason.PLATES_MISMATCH, f"plates of site {part.plates.site_id!r}"
        )
    return Opened(whole_document(wanted.document, part), wanted.envelope, part)


def verify_document(payload: bytes, public_key: Ed25519PublicKey) -> RuleDocument:
    """The document if ``public_key`` signed it; RuleDocumentRefused (with a reason) otherwise."""
    return open_document(payload, public_key).document


def _verified_envelope(payload: bytes, public_key: Ed25519PublicKey) -> _Envelope:
    if len(payload) > MAX_DOCUMENT_BYTES + 4096:
        raise RuleDocumentRefused(RefusalReason.OVERSIZE, f"{len(payload)} bytes")
    try:
        envelope = _Envelope.model_validate_json(payload)
        signature = base64.b64decode(envelope.signature, validate=True)
    except (ValidationError, binascii.Error, ValueError) as exc:
        raise RuleDocumentRefused(RefusalReason.GARBLED, str(exc)[:300]) from exc
    if envelope.key_id != key_id(public_key):
        raise RuleDocumentRefused(
            RefusalReason.WRONG_KEY, f"signed by key {envelope.key_id[:16]!r}, not ours"
        )
    try:
        public_key.verify(signature, envelope.document.encode())
    except InvalidSignature as exc:
        raise RuleDocumentRefused(RefusalReason.BAD_SIGNATURE, "signature does not hold") from exc
    return envelope


def open_document(
    payload: bytes, public_key: Ed25519PublicKey, held: PlatesPart | None = None
) -> Opened:
    """Verify ``payload``; for schemas 2 and 3 take the plates from ``held`` when its hash is
    the one signed (nothing parsed again), else from the envelope, checked against that hash;
    for schema 3 else by applying the document's patch to ``held``, or raise PlatesWanted."""
    envelope = _verified_envelope(payload, public_key)
    try:
        document = _WIRE.validate_json(envelope.document)
    except ValidationError as exc:
        raise RuleDocumentRefused(RefusalReason.INVALID_DOCUMENT, str(exc)[:300]) from exc
    if isinstance(document, RuleDocument):
        return Opened(document, payload, None)
    if envelope.site_plates is None:
        kept = payload
    else:
        bare = envelope.model_copy(update={"site_plates": None})
        kept = bare.model_dump_json(exclude_none=True).encode()
    wanted = document.site_plates.sha256
    patch = document.site_plates.patch
    if envelope.site_plates is None and (held is None or held.sha256 != wanted):
        if patch is not None and held is not None and patch.from_sha256 == held.sha256:
            try:
                part = held.patched(patch, wanted)
            except RuleDocumentRefused as exc:
                raise PlatesWanted(document, kept, exc.reason) from exc
            return Opened(whole_document(document, part), kept, part, patch)
        if document.schema_version >= 3:
            raise PlatesWanted(document, kept)
    part = _plates_for(document, envelope.site_plates, held)
    return Opened(whole_document(document, part), kept, part)


def _plates_for(document: GatewayRules, text: str | None, held: PlatesPart | None) -> PlatesPart:
    wanted = document.site_plates.sha256
    if held is not None and held.sha256 == wanted:
        return held
    if text is None:
        raise RuleDocumentRefused(RefusalReason.PLATES_MISSING, f"no site plates {wanted[:16]}")
    if hashlib.sha256(text.encode()).hexdigest() != wanted:
        raise RuleDocumentRefused(
            RefusalReason.PLATES_MISMATCH, f"site plates do not hash to {wanted[:16]}"
        )
    try:
        part = PlatesPart.parse(text)
    except ValidationError as exc:
        raise RuleDocumentRefused(RefusalReason.INVALID_DOCUMENT, str(exc)[:300]) from exc
    if part.plates.site_id != document.site_id:
        raise RuleDocumentRefused(
            RefusalReason.PLATES_MISMATCH, f"plates of site {part.plates.site_id!r}"
        )
    return part
