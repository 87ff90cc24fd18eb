"""Signed rule documents: the server signs each gateway's RuleDocument with Ed25519, the gateway
verifies it with the public key from its config before it uses a single rule.

The envelope carries the document as the exact JSON text that was signed, so neither side has to
agree on a canonical form: the signature covers those bytes, and only after it holds are they
parsed. Keys are written as base64 of the raw 32-byte key (``generate_key_pair``) or as PEM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.exemptions import RuleDocument

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""The largest signed document a gateway takes (100,000 plates are about 1.3 MB)."""


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    document: str = Field(max_length=MAX_DOCUMENT_BYTES, description="the signed JSON text")
    signature: str = Field(max_length=200, description="base64 Ed25519 signature of document")
    key_id: str = Field(max_length=64, description="which key signed: key_id(public key)")


class RefusalReason(StrEnum):
    OVERSIZE = "oversize"
    GARBLED = "garbled"  # not an envelope, or not base64
    WRONG_KEY = "wrong_key"  # signed by another key
    BAD_SIGNATURE = "bad_signature"  # the right key id, but the signature does not hold
    INVALID_DOCUMENT = "invalid_document"  # signed, but not a valid RuleDocument
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


def verify_document(payload: bytes, public_key: Ed25519PublicKey) -> RuleDocument:
    """The document if ``public_key`` signed it; RuleDocumentRefused (with a reason) otherwise."""
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
        return RuleDocument.model_validate_json(envelope.document)
    except ValidationError as exc:
        raise RuleDocumentRefused(RefusalReason.INVALID_DOCUMENT, str(exc)[:300]) from exc
