"""The site's plates as patches (schema 3): the server's patch takes the set before to the set
after, byte for byte (the same SHA-256); patches compose; a patch that does not start from the
plates held or does not end at the signed hash is refused; hostile patches are invalid; the
joined text a patched set is checked by is pydantic's, byte for byte."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts.exemptions import GatewayRules, PlatesPatch, SitePlates, SitePlatesRef
from contracts.rule_signing import (
    PlatesPart,
    RefusalReason,
    RuleDocumentRefused,
    compose,
    plates_patch,
    site_plates_json,
)

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
SHA = "0" * 64


def plates(seed: int, count: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    pool = [f"沪{letter}{n:05d}" for letter in "ABCDEFGH" for n in range(count // 4)]
    chosen = rng.sample(pool, count)
    return {
        "resident": sorted(chosen[: count // 2]),
        "service": sorted(chosen[count // 2 : count * 3 // 4]),
        "family": sorted(chosen[count * 3 // 4 :]),
    }


def part(lists: dict[str, list[str]], at: datetime = T0, site: str = "s1") -> PlatesPart:
    return PlatesPart.of(SitePlates(site_id=site, changed_at=at, **lists))


def edited(lists: dict[str, list[str]], seed: int, changes: int) -> dict[str, list[str]]:
    """Plates added, removed and moved between categories."""
    rng = random.Random(seed)
    out = {name: set(listed) for name, listed in lists.items()}
    held = {plate for listed in out.values() for plate in listed}
    for n in range(changes):
        name = rng.choice(list(out))
        action = n % 3
        if action == 0:
            plate = f"京Z{seed % 10}{n:04d}"
            if plate not in held:
                out[name].add(plate)
                held.add(plate)
        elif out[name]:
            plate = rng.choice(sorted(out[name]))
            out[name].discard(plate)
            if action == 2:  # moved to another category
                out[rng.choice([k for k in out if k != name])].add(plate)
            else:
                held.discard(plate)
    return {name: sorted(listed) for name, listed in out.items()}


@pytest.mark.parametrize("seed", range(6))
def test_the_servers_patch_gives_the_same_text_and_hash(seed: int) -> None:
    before = part(plates(seed, 400))
    after = part(edited(plates(seed, 400), seed, 30), T0 + timedelta(seconds=seed))
    patch = plates_patch(before, after)
    assert patch is not None
    patched = before.patched(patch, after.sha256)
    assert patched.text == after.text
    assert patched.sha256 == after.sha256
    # Through the wire: the patch as a document carries it.
    document = GatewayRules(
        site_id="s1",
        gateway_id="g1",
        version=1,
        issued_at=T0,
        site_plates=SitePlatesRef(sha256=after.sha256, patch=patch),
    )
    again = GatewayRules.model_validate_json(document.model_dump_json()).site_plates.patch
    assert again is not None
    assert before.patched(again, after.sha256).text == after.text


def test_patches_compose_into_one_from_the_base() -> None:
    sets = [plates(7, 300)]
    for n in range(5):
        sets.append(edited(sets[-1], 100 + n, 20))
    parts = [part(lists, T0 + timedelta(minutes=n)) for n, lists in enumerate(sets)]
    composed: PlatesPatch | None = None
    for before, after in itertools.pairwise(parts):
        step = plates_patch(before, after)
        assert step is not None
        composed = compose(composed, step, parts[0].sha256)
    assert composed is not None
    assert composed.from_sha256 == parts[0].sha256
    assert parts[0].patched(composed, parts[-1].sha256).text == parts[-1].text


def test_a_patch_from_other_plates_or_to_another_hash_is_refused() -> None:
    before = part(plates(1, 100))
    after = part(edited(plates(1, 100), 1, 10))
    patch = plates_patch(before, after)
    assert patch is not None
    with pytest.raises(RuleDocumentRefused) as caught:
        after.patched(patch, after.sha256)  # not the plates it starts from
    assert caught.value.reason is RefusalReason.PLATES_MISMATCH
    with pytest.raises(RuleDocumentRefused) as caught:
        before.patched(patch, SHA)  # not the hash signed
    assert caught.value.reason is RefusalReason.PLATES_MISMATCH
    held = before.plates.resident[0]
    adds_held = PlatesPatch(from_sha256=before.sha256, added={"resident": [held]})
    removes_absent = PlatesPatch(from_sha256=before.sha256, removed={"resident": ["京A00000"]})
    for wrong in (adds_held, removes_absent):
        with pytest.raises(RuleDocumentRefused) as caught:
            before.patched(wrong, after.sha256)
        assert caught.value.reason is RefusalReason.PLATES_MISMATCH


def test_large_changes_and_other_sites_get_no_patch() -> None:
    before = part(plates(2, 400))
    assert plates_patch(before, part(plates(3, 400)), limit=50) is None
    assert plates_patch(before, part(plates(2, 400), site="s2")) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"added": {"resident": ["沪A00001"]}, "removed": {"resident": ["沪A00001"]}},
        {"added": {"family": ["沪A00001", "沪A00001"]}},
        {"added": {"resident": ["NOT A PLATE"]}},
        {"from_sha256": "xyz"},
        {"added": {"resident": []}, "extra": 1},
    ],
)
def test_hostile_patches_are_invalid(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PlatesPatch.model_validate({"from_sha256": SHA} | fields)


def test_a_schema_2_document_carries_no_patch() -> None:
    with pytest.raises(ValidationError, match="schema 2"):
        GatewayRules(
            schema_version=2,
            site_id="s1",
            gateway_id="g1",
            version=1,
            issued_at=T0,
            site_plates=SitePlatesRef(sha256=SHA, patch=PlatesPatch(from_sha256=SHA)),
        )


@pytest.mark.parametrize("seed", range(4))
def test_the_joined_text_is_pydantics_text(seed: int) -> None:
    """``site_plates_json`` (a patched set's check) writes what ``model_dump_json`` writes, for
    any lists (empty ones too), any plate form and no newest change."""
    rng = random.Random(seed)
    forms = ["沪A12345", "粤B1234挂", "京AD12345", "使123456", "WJ京12345", "WJ1234X"]
    lists = {
        name: sorted({f"{rng.choice(forms)[:-1]}{n % 10}" for n in range(rng.randint(0, 30))})
        for name in ("resident", "service", "family")
    }
    for at in (T0, None):
        sites = SitePlates(site_id=f"site-{seed}.x_1", changed_at=at, **lists)
        assert site_plates_json(sites) == sites.model_dump_json()
    empty = SitePlates(site_id="s1")
    assert site_plates_json(empty) == empty.model_dump_json()
