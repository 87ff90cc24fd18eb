"""Signed rule documents at the gateway: forged, wrong key, older version, garbled JSON refused and
counted with the previous document kept; a taken one survives a restart from disk. Schema 2: the
site's plates by hash, kept apart and written once per hash; plates that do not match the signed
hash, or are missing, refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.exemptions import (
    FamilyBayRule,
    GatewayRules,
    PermitRule,
    RuleDocument,
    SitePlates,
    SitePlatesRef,
    StayHistory,
)
from contracts.registry_plates import RegistryPlates, with_registry
from contracts.rule_signing import (
    PlatesPart,
    RefusalReason,
    RuleDocumentRefused,
    generate_key_pair,
    private_key_from_text,
    public_key_from_text,
    sign_document,
    sign_with_plates,
    verify_document,
)
from contracts.sites import SiteConfig, ZoneConfig, ZoneKind
from edge.rule_store import RuleStore

SITE = SiteConfig(id="s1")
ZONE = ZoneConfig(id="kerb", kind=ZoneKind.NO_PARKING, polygon=[[0, 0], [1, 0], [1, 1]])
T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
PRIVATE, PUBLIC = generate_key_pair()
KEY = private_key_from_text(PRIVATE)
PUBLIC_KEY = public_key_from_text(PUBLIC)


def document(version: int, gateway: str = "g1", plate: str = "沪A12345") -> RuleDocument:
    permit = PermitRule(
        id=f"p{version}",
        site_id="s1",
        plate=plate,
        valid_from=T0 - timedelta(hours=1),
        valid_to=T0 + timedelta(hours=1),
        reason="move",
        issued_at=T0,
    )
    return RuleDocument(
        site_id="s1", gateway_id=gateway, version=version, issued_at=T0, rules=[permit]
    )


def store(tmp_path: Path) -> RuleStore:
    return RuleStore(tmp_path / "rules.json", PUBLIC_KEY, SITE, "g1")


def exempt(rules: RuleStore, plate: str = "沪A12345") -> bool:
    return rules.decide(plate, 0.99, ZONE, T0, StayHistory(T0 - timedelta(minutes=5))).exempt


def test_signed_document_round_trips() -> None:
    assert verify_document(sign_document(document(3), KEY), PUBLIC_KEY) == document(3)


def test_keys_load_from_pem_too() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = PUBLIC_KEY.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    payload = sign_document(document(1), private_key_from_text(pem))
    assert verify_document(payload, public_key_from_text(public_pem)).version == 1
    with pytest.raises(ValueError, match="32 bytes"):
        public_key_from_text("c2hvcnQ=")


def test_store_takes_newer_keeps_it_on_disk_and_survives_restart(tmp_path: Path) -> None:
    rules = store(tmp_path)
    assert rules.version is None
    assert not exempt(rules)
    assert rules.offer(sign_document(document(1), KEY))
    assert rules.offer(sign_document(document(2), KEY))
    assert rules.version == 2
    assert exempt(rules)
    assert rules.offer(sign_document(document(2), KEY))  # the retained copy again
    restarted = store(tmp_path)
    assert restarted.version == 2
    assert exempt(restarted)
    assert not list(tmp_path.glob(".*.tmp"))


def refused_with(rules: RuleStore, payload: bytes, reason: RefusalReason) -> None:
    before = rules.version
    assert not rules.offer(payload)
    assert rules.refused[reason] == 1
    assert rules.version == before


def test_older_version_refused(tmp_path: Path) -> None:
    rules = store(tmp_path)
    rules.offer(sign_document(document(5), KEY))
    refused_with(rules, sign_document(document(4), KEY), RefusalReason.OLDER_VERSION)


def test_forged_document_refused_and_previous_kept(tmp_path: Path) -> None:
    rules = store(tmp_path)
    rules.offer(sign_document(document(1), KEY))
    envelope = json.loads(sign_document(document(2), KEY))
    # Someone edits the signed text to add their own plate.
    envelope["document"] = envelope["document"].replace("沪A12345", "京B54321")
    refused_with(rules, json.dumps(envelope).encode(), RefusalReason.BAD_SIGNATURE)
    assert exempt(rules, "沪A12345")
    assert not exempt(rules, "京B54321")
    assert rules.version == 1


def test_wrong_key_refused(tmp_path: Path) -> None:
    rules = store(tmp_path)
    other_private, _ = generate_key_pair()
    refused_with(
        rules,
        sign_document(document(1), private_key_from_text(other_private)),
        RefusalReason.WRONG_KEY,
    )
    # The wrong key lying about its key id still fails the signature.
    envelope = json.loads(sign_document(document(1), private_key_from_text(other_private)))
    envelope["key_id"] = json.loads(sign_document(document(1), KEY))["key_id"]
    refused_with(rules, json.dumps(envelope).encode(), RefusalReason.BAD_SIGNATURE)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[]",
        b'{"document": "{}", "signature": "!!", "key_id": "x"}',
        json.dumps({"document": "{}", "signature": "", "key_id": "", "extra": 1}).encode(),
    ],
)
def test_garbled_refused(tmp_path: Path, payload: bytes) -> None:
    refused_with(store(tmp_path), payload, RefusalReason.GARBLED)


def test_signed_but_invalid_document_refused(tmp_path: Path) -> None:
    text = json.dumps({"site_id": "s1", "gateway_id": "g1", "version": 0})
    envelope = {
        "document": text,
        "signature": base64.b64encode(KEY.sign(text.encode())).decode(),
        "key_id": json.loads(sign_document(document(1), KEY))["key_id"],
    }
    refused_with(store(tmp_path), json.dumps(envelope).encode(), RefusalReason.INVALID_DOCUMENT)


def test_another_gateways_document_refused(tmp_path: Path) -> None:
    refused_with(
        store(tmp_path), sign_document(document(1, gateway="g2"), KEY), RefusalReason.WRONG_GATEWAY
    )


def test_no_key_configured_refuses_everything(tmp_path: Path) -> None:
    rules = RuleStore(tmp_path / "rules.json", None, SITE, "g1")
    refused_with(rules, sign_document(document(1), KEY), RefusalReason.NO_KEY)


def test_tampered_disk_copy_is_not_used(tmp_path: Path) -> None:
    rules = store(tmp_path)
    rules.offer(sign_document(document(1), KEY))
    path = tmp_path / "rules.json"
    path.write_bytes(path.read_bytes().replace("沪A12345".encode(), "京B54321".encode()))
    restarted = store(tmp_path)
    assert restarted.version is None
    assert restarted.refused[RefusalReason.BAD_SIGNATURE] == 1


def test_refused_error_names_its_reason() -> None:
    with pytest.raises(RuleDocumentRefused) as caught:
        verify_document(b"x" * (17 * 1024 * 1024), PUBLIC_KEY)
    assert caught.value.reason is RefusalReason.OVERSIZE


# -- schema 2: the site's plates by hash ------------------------------------------------------

RESIDENT = "沪R00001"
FAMILY = "沪F00001"


def site_plates(*resident: str) -> PlatesPart:
    return PlatesPart.of(
        SitePlates(site_id="s1", changed_at=T0, resident=list(resident), family=[FAMILY])
    )


def gateway_rules(version: int, part: PlatesPart, gateway: str = "g1") -> GatewayRules:
    bay = FamilyBayRule(
        id="bay",
        site_id="s1",
        zone_id="kerb",
        valid_from=T0 - timedelta(days=1),
        reason="孝心车位",
        issued_at=T0,
        max_minutes=1,
        max_visits_per_day=1,
        family_max_minutes=120,
    )
    return GatewayRules(
        site_id="s1",
        gateway_id=gateway,
        version=version,
        issued_at=T0,
        rules=[bay],
        site_plates=SitePlatesRef(sha256=part.sha256),
    )


def signed(version: int, part: PlatesPart, gateway: str = "g1") -> bytes:
    return sign_with_plates(gateway_rules(version, part, gateway).model_dump_json(), part, KEY)


def plates_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("rules.json.plates-*"))


def test_schema_2_runs_what_the_server_would_have_signed_whole() -> None:
    part = site_plates(RESIDENT)
    whole = verify_document(signed(3, part), PUBLIC_KEY)
    registry = RegistryPlates((RESIDENT,), (), (FAMILY,), T0)
    expected = RuleDocument(
        site_id="s1",
        gateway_id="g1",
        version=3,
        issued_at=T0,
        rules=with_registry(list(gateway_rules(3, part).rules), registry, "s1"),
    )
    assert whole.model_dump() == expected.model_dump()
    assert whole.schema_version == 1


def test_schema_2_plates_kept_apart_written_once_per_hash_and_reloaded(tmp_path: Path) -> None:
    rules = store(tmp_path)
    part = site_plates(RESIDENT)
    assert rules.offer(signed(1, part))
    assert exempt(rules, RESIDENT)
    [plates_file] = plates_files(tmp_path)
    assert plates_file.name == f"rules.json.plates-{part.sha256}"
    assert RESIDENT.encode() not in (tmp_path / "rules.json").read_bytes()
    written = plates_file.stat().st_mtime_ns, plates_file.stat().st_ino
    # The next version names the same plates: taken without writing (or parsing) them again.
    assert rules.offer(signed(2, part))
    assert (plates_file.stat().st_mtime_ns, plates_file.stat().st_ino) == written
    restarted = store(tmp_path)
    assert restarted.version == 2
    assert exempt(restarted, RESIDENT)
    # New plates: a new file, the old one gone, and the old plate no longer exempt.
    assert restarted.offer(signed(3, site_plates("沪R00002")))
    assert [p.name for p in plates_files(tmp_path)] != [plates_file.name]
    assert len(plates_files(tmp_path)) == 1
    assert not exempt(restarted, RESIDENT)
    assert exempt(restarted, "沪R00002")
    assert not list(tmp_path.glob(".*.tmp"))


def test_plates_not_matching_the_signed_hash_are_refused(tmp_path: Path) -> None:
    rules = store(tmp_path)
    part = site_plates(RESIDENT)
    assert rules.offer(signed(1, part))
    # A genuine document for new plates, with someone's own plate spliced into them.
    genuine = json.loads(signed(2, site_plates("沪R00002")))
    genuine["site_plates"] = genuine["site_plates"].replace("沪R00002", "京B54321")
    refused_with(rules, json.dumps(genuine).encode(), RefusalReason.PLATES_MISMATCH)
    assert exempt(rules, RESIDENT)
    assert not exempt(rules, "京B54321")
    # Plates of another site, hashed and signed as they are: still not this site's.
    other = PlatesPart.of(SitePlates(site_id="s2", resident=["京B54321"]))
    assert not rules.offer(signed(3, other))
    assert rules.refused[RefusalReason.PLATES_MISMATCH] == 2
    assert rules.version == 1


def test_plates_missing_are_refused(tmp_path: Path) -> None:
    rules = store(tmp_path)
    envelope = json.loads(signed(1, site_plates(RESIDENT)))
    del envelope["site_plates"]
    refused_with(rules, json.dumps(envelope).encode(), RefusalReason.PLATES_MISSING)


def test_tampered_plates_on_disk_are_not_used(tmp_path: Path) -> None:
    rules = store(tmp_path)
    assert rules.offer(signed(1, site_plates(RESIDENT)))
    [plates_file] = plates_files(tmp_path)
    plates_file.write_text(plates_file.read_text().replace(RESIDENT, "京B54321"))
    restarted = store(tmp_path)
    assert restarted.version is None
    assert restarted.refused[RefusalReason.PLATES_MISMATCH] == 1
    assert not exempt(restarted, "京B54321")
