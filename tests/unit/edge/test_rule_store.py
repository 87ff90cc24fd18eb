"""Signed rule documents at the gateway: forged, wrong key, older version, garbled JSON refused and
counted with the previous document kept; a taken one survives a restart from disk. Schema 2: the
site's plates by hash, kept apart and written once per hash; plates that do not match the signed
hash, or are missing, refused. Schema 3: a patch applied from the plates held, a wrong base or a
lost plates file answered by the whole set from the site topic, forged site plates refused.
The site's plates as a schema 4 frame (compressed, signed): forged, truncated, padded, a signed
zip bomb or a text that is not SitePlates refused and counted; schema 3's envelope still read."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from pydantic_core import to_json

from contracts.exemptions import (
    FamilyBayRule,
    GatewayRules,
    PermitRule,
    PlatesPatch,
    RuleDocument,
    SitePlates,
    SitePlatesRef,
    StayHistory,
)
from contracts.registry_plates import RegistryPlates, with_registry
from contracts.rule_signing import (
    MAX_PLATES_TEXT_BYTES,
    PLATES_FRAME,
    PLATES_SIGNED_PREFIX,
    PlatesPart,
    RefusalReason,
    RuleDocumentRefused,
    generate_key_pair,
    key_id,
    open_document,
    plates_patch,
    private_key_from_text,
    public_key_from_text,
    sign_document,
    sign_site_plates,
    sign_site_plates_envelope,
    sign_text,
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


def gateway_rules(
    version: int,
    part: PlatesPart,
    gateway: str = "g1",
    schema: Literal[2, 3] = 2,
    patch: PlatesPatch | None = None,
) -> GatewayRules:
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
        schema_version=schema,
        site_id="s1",
        gateway_id=gateway,
        version=version,
        issued_at=T0,
        rules=[bay],
        site_plates=SitePlatesRef(sha256=part.sha256, patch=patch),
    )


def signed(version: int, part: PlatesPart, gateway: str = "g1") -> bytes:
    """A schema 2 envelope, as a server of the release before sends it: the document's text
    signed, the site's plates' text beside it in the envelope (what the gateway still reads)."""
    envelope = sign_text(gateway_rules(version, part, gateway).model_dump_json(), KEY)
    return b"".join((envelope[:-1], b',"site_plates":', to_json(part.text), b"}"))


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


# -- schema 3: the site's plates on the site topic, and patches --------------------------------

OTHER_PRIVATE, _OTHER_PUBLIC = generate_key_pair()


def registry_of(*resident: str, at: datetime = T0) -> PlatesPart:
    return PlatesPart.of(
        SitePlates(site_id="s1", changed_at=at, resident=sorted(resident), family=[FAMILY])
    )


def schema_3(
    version: int, part: PlatesPart, before: PlatesPart | None = None, gateway: str = "g1"
) -> bytes:
    """What the server sends: no plates' text, a patch when it sent ``before``."""
    patch = plates_patch(before, part) if before is not None else None
    text = gateway_rules(version, part, gateway, schema=3, patch=patch).model_dump_json()
    return sign_text(text, KEY)


def holding(tmp_path: Path, part: PlatesPart, version: int = 1) -> RuleStore:
    """A store that took ``version`` and the whole set ``part`` from the site topic."""
    rules = store(tmp_path)
    assert not rules.offer(schema_3(version, part))
    assert rules.wanted_plates == part.sha256
    assert rules.offer_plates(sign_site_plates(part, KEY))
    assert rules.version == version
    assert rules.wanted_plates is None
    return rules


def test_schema_3_whole_set_from_the_site_topic_then_a_patch_applied(tmp_path: Path) -> None:
    first = registry_of(RESIDENT)
    rules = holding(tmp_path, first)
    assert rules.plates_fetched == 1
    assert exempt(rules, RESIDENT)
    [base] = plates_files(tmp_path)
    written = base.stat().st_mtime_ns, base.stat().st_ino
    # One resident added: the patch is applied, nothing fetched, only the document written.
    second = registry_of(RESIDENT, "沪R00002", at=T0 + timedelta(minutes=1))
    assert rules.offer(schema_3(2, second, before=first))
    assert rules.version == 2
    assert rules.plates_patched == 1
    assert rules.plates_fetched == 1
    assert rules.wanted_plates is None
    assert exempt(rules, "沪R00002")
    assert (base.stat().st_mtime_ns, base.stat().st_ino) == written
    # It runs what the server would have signed whole.
    whole = verify_document(signed(2, second), PUBLIC_KEY)
    assert rules.document is not None
    assert rules.document.model_dump() == whole.model_dump()
    # A resident removed: the patches since the base are composed on disk; a restart rebuilds.
    third = registry_of("沪R00002", at=T0 + timedelta(minutes=2))
    assert rules.offer(schema_3(3, third, before=second))
    assert plates_files(tmp_path) == [base]
    restarted = store(tmp_path)
    assert restarted.version == 3
    assert not exempt(restarted, RESIDENT)
    assert exempt(restarted, "沪R00002")
    assert not restarted.refused
    # And the restarted store takes the next patch from the plates it rebuilt.
    fourth = registry_of("沪R00002", "沪R00003", at=T0 + timedelta(minutes=3))
    assert restarted.offer(schema_3(4, fourth, before=third))
    assert restarted.plates_patched == 1
    assert exempt(restarted, "沪R00003")


def test_schema_3_patch_from_another_set_waits_for_the_whole_set(tmp_path: Path) -> None:
    held = registry_of(RESIDENT)
    rules = holding(tmp_path, held)
    # The server patches from a set this gateway never held (it missed a change).
    missed = registry_of(RESIDENT, "沪R00002", at=T0 + timedelta(minutes=1))
    newest = registry_of(RESIDENT, "沪R00002", "沪R00003", at=T0 + timedelta(minutes=2))
    assert not rules.offer(schema_3(3, newest, before=missed))
    assert rules.wanted_plates == newest.sha256
    assert rules.version == 1  # the previous document stays in use meanwhile
    assert exempt(rules, RESIDENT)
    assert not exempt(rules, "沪R00003")
    assert not rules.refused  # waiting is not a refusal
    assert rules.offer_plates(sign_site_plates(newest, KEY))
    assert rules.version == 3
    assert rules.plates_fetched == 2
    assert exempt(rules, "沪R00003")
    assert len(plates_files(tmp_path)) == 1
    assert store(tmp_path).version == 3


def test_schema_3_patch_not_giving_the_signed_hash_counts_a_mismatch_and_fetches(
    tmp_path: Path,
) -> None:
    held = registry_of(RESIDENT)
    rules = holding(tmp_path, held)
    wanted = registry_of(RESIDENT, "沪R00002", at=T0 + timedelta(minutes=1))
    # A patch from the plates held that does not end at the signed hash (a server bug).
    wrong = PlatesPatch(
        from_sha256=held.sha256,
        changed_at=T0 + timedelta(minutes=1),
        added={"resident": ["沪R00009"]},
    )
    text = gateway_rules(2, wanted, schema=3, patch=wrong).model_dump_json()
    assert not rules.offer(sign_text(text, KEY))
    assert rules.refused[RefusalReason.PLATES_MISMATCH] == 1
    assert rules.wanted_plates == wanted.sha256
    assert not exempt(rules, "沪R00009")
    assert rules.offer_plates(sign_site_plates(wanted, KEY))
    assert rules.version == 2
    assert exempt(rules, "沪R00002")
    assert not exempt(rules, "沪R00009")


def test_forged_or_foreign_site_plates_are_refused_and_counted(tmp_path: Path) -> None:
    held = registry_of(RESIDENT)
    rules = holding(tmp_path, held)
    wanted = registry_of(RESIDENT, "沪R00002", at=T0 + timedelta(minutes=1))
    assert not rules.offer(schema_3(2, wanted))
    forged = registry_of(RESIDENT, "京B54321", at=T0 + timedelta(minutes=1))
    # Signed by another key; a genuine envelope with a plate spliced in; another site's
    # plates signed with the right key; garbage.
    other_key = private_key_from_text(OTHER_PRIVATE)
    assert not rules.offer_plates(sign_site_plates(forged, other_key))
    spliced = json.loads(sign_site_plates_envelope(wanted, KEY))  # as schema 3 sent them
    spliced["document"] = spliced["document"].replace("沪R00002", "京B54321")
    assert not rules.offer_plates(json.dumps(spliced).encode())
    foreign = PlatesPart.of(SitePlates(site_id="s2", resident=["京B54321"]))
    assert not rules.offer_plates(sign_site_plates(foreign, KEY))
    assert not rules.offer_plates(b"{not json")
    assert rules.refused == {
        RefusalReason.WRONG_KEY: 1,
        RefusalReason.BAD_SIGNATURE: 1,
        RefusalReason.PLATES_MISMATCH: 1,
        RefusalReason.GARBLED: 1,
    }
    # Genuine plates of another set (an older change): not taken, nothing counted.
    assert not rules.offer_plates(sign_site_plates(held, KEY))
    assert rules.version == 1
    assert not exempt(rules, "京B54321")
    assert rules.wanted_plates == wanted.sha256
    assert rules.offer_plates(sign_site_plates(wanted, KEY))
    assert rules.version == 2


def test_site_plates_that_came_first_are_used_by_the_document_naming_them(
    tmp_path: Path,
) -> None:
    rules = holding(tmp_path, registry_of(RESIDENT))
    missed = registry_of(RESIDENT, "沪R00002", at=T0 + timedelta(minutes=1))
    assert not rules.offer(schema_3(2, missed, before=registry_of("沪R00007")))
    newer = registry_of("沪R00003", at=T0 + timedelta(minutes=2))
    # The site topic already has the next change's plates before its document comes.
    assert not rules.offer_plates(sign_site_plates(newer, KEY))
    assert rules.offer(schema_3(3, newer, before=registry_of("沪R00007")))
    assert rules.version == 3
    assert exempt(rules, "沪R00003")
    assert rules.wanted_plates is None  # the older document waiting for its plates is dropped


def test_older_document_waiting_for_plates_is_refused(tmp_path: Path) -> None:
    rules = holding(tmp_path, registry_of(RESIDENT), version=5)
    assert not rules.offer(schema_3(4, registry_of("沪R00002")))
    assert rules.refused[RefusalReason.OLDER_VERSION] == 1
    assert rules.wanted_plates is None
    assert rules.offer(schema_3(5, registry_of(RESIDENT)))  # the retained copy again


def test_many_patches_write_the_base_again_past_an_eighth(tmp_path: Path) -> None:
    plates = [f"沪R{n:05d}" for n in range(200)]
    part = registry_of(*plates)
    rules = holding(tmp_path, part)
    [base] = plates_files(tmp_path)
    for n in range(70):  # 70 plates added, one a change: past COMPACT_MIN_PLATES (64)
        after = registry_of(*plates, *(f"沪N{m:05d}" for m in range(n + 1)))
        assert rules.offer(schema_3(n + 2, after, before=part))
        part = after
    assert rules.plates_patched == 70
    [rebased] = plates_files(tmp_path)
    assert rebased != base
    stored = json.loads((tmp_path / "rules.json").read_bytes())
    assert stored.get("plates_patch") is not None  # the changes since the new base
    assert len(stored["plates_patch"]["added"]["resident"]) < 64
    restarted = store(tmp_path)
    assert restarted.version == 71
    assert exempt(restarted, "沪N00069")


def test_tampered_patch_on_disk_is_not_used(tmp_path: Path) -> None:
    first = registry_of(RESIDENT)
    rules = holding(tmp_path, first)
    assert rules.offer(schema_3(2, registry_of(RESIDENT, "沪R00002"), before=first))
    path = tmp_path / "rules.json"
    path.write_text(path.read_text().replace("沪R00002", "京B54321"))
    restarted = store(tmp_path)
    assert restarted.version is None
    assert restarted.refused[RefusalReason.PLATES_MISMATCH] == 1
    assert not exempt(restarted, "京B54321")


def test_lost_plates_file_waits_for_the_site_topic_after_a_restart(tmp_path: Path) -> None:
    part = registry_of(RESIDENT)
    holding(tmp_path, part)
    for plates_file in plates_files(tmp_path):
        plates_file.unlink()
    restarted = store(tmp_path)
    assert restarted.version is None
    assert restarted.refused[RefusalReason.PLATES_MISSING] == 1
    assert restarted.wanted_plates == part.sha256
    assert restarted.offer_plates(sign_site_plates(part, KEY))
    assert restarted.version == 1
    assert exempt(restarted, RESIDENT)


# -- schema 4 site plates: a compressed, signed frame ------------------------------------------


def frame(packed: bytes, signer: str = PRIVATE) -> bytes:
    """A plates frame around ``packed`` (zlib bytes, or anything), signed by ``signer``."""
    private = private_key_from_text(signer)
    signature = private.sign(PLATES_SIGNED_PREFIX + packed)
    return PLATES_FRAME + key_id(private.public_key()).encode() + signature + packed


def test_schema_4_frame_is_compact_and_schema_3_envelope_still_read(tmp_path: Path) -> None:
    part = registry_of(*(f"沪A{n:05d}" for n in range(10_000)))
    payload = sign_site_plates(part, KEY)
    assert payload.startswith(PLATES_FRAME)
    envelope = sign_site_plates_envelope(part, KEY)
    assert len(payload) * 5 < len(envelope)  # ~23 KB against ~140 KB
    # A gateway of the release before reads the site topic as a JSON envelope: refused, garbled.
    with pytest.raises(RuleDocumentRefused) as refused:
        open_document(payload, PUBLIC_KEY)
    assert refused.value.reason == RefusalReason.GARBLED
    for name, plates in (("frame", payload), ("envelope", envelope)):
        rules = store(tmp_path / name)
        assert not rules.offer(schema_3(1, part))
        assert rules.offer_plates(plates), name
        assert rules.version == 1
        assert exempt(rules, "沪A09999")
        [base] = plates_files(tmp_path / name)
        assert base.read_text(encoding="utf-8") == part.text  # the text the hash is of
        assert store(tmp_path / name).version == 1


def test_schema_4_hostile_frames_are_refused_and_counted(tmp_path: Path) -> None:
    rules = holding(tmp_path, registry_of(RESIDENT))
    wanted = registry_of(RESIDENT, "沪R00002", at=T0 + timedelta(minutes=1))
    assert not rules.offer(schema_3(2, wanted))
    genuine = sign_site_plates(wanted, KEY)
    packed = genuine[len(PLATES_FRAME) + 16 + 64 :]
    bomb = zlib.compress(b'{"site_id":"s1","resident":["' + b" " * MAX_PLATES_TEXT_BYTES, 9)
    invalid = wanted.text.replace("沪R00002", "NOT A PLATE").encode()
    hostile = {
        "forged, another key": frame(packed, OTHER_PRIVATE),
        "forged, our key's id": genuine[:20] + frame(packed, OTHER_PRIVATE)[20:],
        "truncated": genuine[:-10],
        "truncated, then signed": frame(packed[:-10]),
        "padded, then signed": frame(packed + b"more"),
        "not zlib, signed": frame(b"plates"),
        "too short": PLATES_FRAME + b"0" * 20,
        "a zip bomb, signed": frame(bomb),
        "not a plate, signed": frame(zlib.compress(invalid)),
    }
    for name, payload in hostile.items():
        assert not rules.offer_plates(payload), name
    assert len(bomb) < 20_000  # ~9.6 MB of text in a few KB: refused at the cap
    assert rules.refused == {
        RefusalReason.WRONG_KEY: 1,
        RefusalReason.BAD_SIGNATURE: 2,
        RefusalReason.GARBLED: 4,
        RefusalReason.OVERSIZE: 1,
        RefusalReason.INVALID_DOCUMENT: 1,
    }
    assert rules.version == 1
    assert exempt(rules, RESIDENT)
    assert rules.offer_plates(genuine)
    assert rules.version == 2
    assert exempt(rules, "沪R00002")
