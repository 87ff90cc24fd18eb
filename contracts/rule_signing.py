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
  plates with that hash does not parse them again. The server serialises and hashes the site's
  plates once per change and splices the same quoted text into every gateway's envelope.

``open_document`` gives what a gateway runs: a schema 1 document as signed, a schema 2 one with
the site's plates merged in (contracts.registry_plates.with_registry, as the server does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import to_json

from contracts.exemptions import GatewayRules, Rule, RuleDocument, SitePlates, WireDocument
from contracts.registry_plates import RegistryPlates, with_registry

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""The largest signed document a gateway takes (100,000 plates are about 1.3 MB)."""


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
    def parse(cls, text: str) -> PlatesPart:
        """The gateway's side; ValidationError for text that is not SitePlates."""
        return cls(
            text, hashlib.sha256(text.encode()).hexdigest(), SitePlates.model_validate_json(text)
        )

    @cached_property
    def quoted(self) -> bytes:
        """The text as a JSON string, quoted once for every envelope it goes into."""
        return to_json(self.text)

    @cached_property
    def registry_rules(self) -> list[Rule]:
        """The site-wide allowlists of the registry's residents and service vehicles."""
        plates = self.plates
        registry = RegistryPlates(
            tuple(plates.resident), tuple(plates.service), (), plates.changed_at
        )
        return with_registry([], registry, plates.site_id)


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
    return envelope.model_dump_json().encode()


def sign_with_plates(text: str, part: PlatesPart, private_key: Ed25519PrivateKey) -> bytes:
    """The envelope of a schema 2 document's exact text (naming ``part`` by its hash), with the
    site's plates spliced in as quoted once: no per-gateway copy is serialised or signed."""
    envelope = sign_text(text, private_key)
    return b"".join((envelope[:-1], b',"site_plates":', part.quoted, b"}"))


@dataclass(frozen=True)
class Opened:
    """A verified envelope: the document the gateway runs, the envelope to keep (without the
    plates' text, which is kept apart, once per hash) and the site's plates for schema 2."""

    document: RuleDocument
    envelope: bytes
    plates: PlatesPart | None


def verify_document(payload: bytes, public_key: Ed25519PublicKey) -> RuleDocument:
    """The document if ``public_key`` signed it; RuleDocumentRefused (with a reason) otherwise."""
    return open_document(payload, public_key).document


def open_document(
    payload: bytes, public_key: Ed25519PublicKey, held: PlatesPart | None = None
) -> Opened:
    """Verify ``payload``; for schema 2 take the plates from ``held`` when its hash is the one
    signed (nothing parsed again), else from the envelope, checked against that hash."""
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
    try:
        document = _WIRE.validate_json(envelope.document)
    except ValidationError as exc:
        raise RuleDocumentRefused(RefusalReason.INVALID_DOCUMENT, str(exc)[:300]) from exc
    if isinstance(document, RuleDocument):
        return Opened(document, payload, None)
    part = _plates_for(document, envelope.site_plates, held)
    kept = envelope.model_copy(update={"site_plates": None}).model_dump_json(exclude_none=True)
    return Opened(whole_document(document, part), kept.encode(), part)


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
