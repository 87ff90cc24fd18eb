"""contracts.exemptions.evaluate: every rule type, overlaps, windows across midnight, time zones,
unreadable plates; and the document refusing what it must."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.exemptions import (
    AllowlistRule,
    Decision,
    FamilyBayRule,
    GatewayRules,
    Outcome,
    PermitRule,
    RuleDocument,
    StayHistory,
    TimeWindowRule,
    Why,
    WireDocument,
    evaluate,
)
from contracts.sites import SiteConfig, ZoneConfig, ZoneKind

SHANGHAI = SiteConfig(id="s1", timezone="Asia/Shanghai")
BAY = ZoneConfig(id="bay", kind=ZoneKind.NO_PARKING, polygon=[[0, 0], [1, 0], [1, 1]])
KERB = ZoneConfig(id="kerb", kind=ZoneKind.NO_PARKING, polygon=[[0, 0], [1, 0], [1, 1]])
LANE = ZoneConfig(id="lane", kind=ZoneKind.FIRE_LANE, polygon=[[0, 0], [1, 0], [1, 1]])
T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)  # Friday 10:00 in Shanghai
PLATE = "沪A12345"
OTHER = "京B54321"


def base(**extra: Any) -> dict[str, Any]:
    return {
        "site_id": "s1",
        "valid_from": T0 - timedelta(days=1),
        "reason": "test",
        "issued_at": T0 - timedelta(days=1),
        **extra,
    }


def doc(*rules: Any, floor: float = 0.8) -> RuleDocument:
    return RuleDocument(
        site_id="s1",
        gateway_id="g1",
        version=1,
        issued_at=T0,
        plate_confidence_floor=floor,
        rules=list(rules),
    )


def decide(
    document: RuleDocument | None,
    plate: str | None = PLATE,
    confidence: float | None = 0.95,
    zone: ZoneConfig = KERB,
    at: datetime = T0,
    started: datetime | None = None,
    earlier: tuple[datetime, ...] = (),
    site: SiteConfig = SHANGHAI,
) -> Decision:
    history = StayHistory(started or at - timedelta(minutes=10), earlier)
    return evaluate(document, plate, confidence, zone, site, at, history)


def allow(category: str = "resident", **extra: Any) -> AllowlistRule:
    return AllowlistRule(**base(id=f"allow-{category}", category=category, plates=[PLATE], **extra))


def bay(**extra: Any) -> FamilyBayRule:
    fields = {
        "id": "bay-rule",
        "zone_id": "bay",
        "max_minutes": 30,
        "max_visits_per_day": 2,
        "family_plates": ["苏E11111"],
        "family_max_minutes": 120,
    } | extra
    return FamilyBayRule(**base(**fields))


def test_no_document_and_no_rule_enforce() -> None:
    assert decide(None) == Decision(Outcome.ENFORCE, Why.NO_RULE)
    assert decide(doc()) == Decision(Outcome.ENFORCE, Why.NO_RULE)


def test_allowlisted_plate_is_exempt_and_another_is_not() -> None:
    assert decide(doc(allow())) == Decision(Outcome.EXEMPT, Why.ALLOWLISTED, "allow-resident")
    assert decide(doc(allow()), plate=OTHER).outcome is Outcome.ENFORCE


def test_plate_below_the_floor_is_never_exempted_by_plate() -> None:
    document = doc(allow(), PermitRule(**base(id="p1", plate=PLATE, valid_to=T0 + timedelta(1))))
    assert decide(document, confidence=0.79) == Decision(Outcome.ENFORCE, Why.PLATE_BELOW_FLOOR)
    assert decide(document, plate=None, confidence=None).why is Why.PLATE_BELOW_FLOOR
    assert decide(document, confidence=0.8).exempt


def test_validity_window_bounds_a_rule() -> None:
    rule = allow(valid_to=T0)  # exclusive end
    assert not decide(doc(rule)).exempt
    assert decide(doc(rule), at=T0 - timedelta(seconds=1)).exempt
    later = allow(valid_from=T0 + timedelta(hours=1))
    assert not decide(doc(later)).exempt


def test_zone_scoped_rule_only_covers_its_zone() -> None:
    rule = allow(zone_id="bay")
    assert decide(doc(rule), zone=BAY).exempt
    assert not decide(doc(rule), zone=KERB).exempt


def test_fire_lane_exempts_only_a_live_emergency_task() -> None:
    resident = allow()
    service = allow("service")
    emergency = allow(
        "emergency", valid_from=T0 - timedelta(hours=1), valid_to=T0 + timedelta(1 / 24)
    )
    window = TimeWindowRule(
        **base(id="w", start="00:00", end="23:59", weekdays=[1, 2, 3, 4, 5, 6, 7])
    )
    assert not decide(doc(resident, service, window), zone=LANE).exempt
    assert decide(doc(emergency), zone=LANE) == Decision(
        Outcome.EXEMPT, Why.ALLOWLISTED, "allow-emergency"
    )
    # The task is over: the lane is enforced again.
    assert not decide(doc(emergency), zone=LANE, at=T0 + timedelta(hours=2)).exempt


def test_emergency_entry_must_be_short() -> None:
    with pytest.raises(ValidationError, match="emergency"):
        allow("emergency")  # no valid_to
    with pytest.raises(ValidationError, match="emergency"):
        allow("emergency", valid_from=T0, valid_to=T0 + timedelta(hours=13))


def test_permit_exempts_its_plate_and_its_scope() -> None:
    permit = PermitRule(
        **base(id="move", plate=PLATE, zone_id="kerb", valid_to=T0 + timedelta(hours=2))
    )
    assert decide(doc(permit)) == Decision(Outcome.EXEMPT, Why.PERMIT, "move")
    assert not decide(doc(permit), zone=BAY).exempt
    assert not decide(doc(permit), plate=OTHER).exempt
    assert not decide(doc(permit), at=T0 + timedelta(hours=2)).exempt


def test_permit_end_before_start_is_refused() -> None:
    with pytest.raises(ValidationError, match="after"):
        PermitRule(**base(id="bad", plate=PLATE, valid_from=T0, valid_to=T0 - timedelta(hours=1)))
    with pytest.raises(ValidationError):
        PermitRule(**base(id="bad", plate=PLATE))  # a permit always ends


def test_hostile_rules_are_refused() -> None:
    with pytest.raises(ValidationError):
        PermitRule(**base(id="p", plate="not a plate", valid_to=T0 + timedelta(1)))
    with pytest.raises(ValidationError):
        AllowlistRule(**base(id="a", category="resident", plates=[PLATE], extra_field=1))
    with pytest.raises(ValidationError):
        TimeWindowRule(**base(id="w", start="24:00", end="25:00", weekdays=[1]))
    with pytest.raises(ValidationError):
        TimeWindowRule(**base(id="w", start="08:00", end="09:00", weekdays=[0]))
    with pytest.raises(ValidationError):
        AllowlistRule(**base(id="a", category="resident", plates=[PLATE], reason="x" * 201))
    with pytest.raises(ValidationError):
        AllowlistRule(
            **base(id="a", category="resident", plates=[PLATE], valid_from=datetime(2026, 1, 1))
        )
    with pytest.raises(ValidationError):
        bay(family_max_minutes=10)


def loading(**extra: Any) -> TimeWindowRule:
    return TimeWindowRule(
        **base(
            id="loading",
            **({"start": "07:00", "end": "09:00", "weekdays": [1, 2, 3, 4, 5]} | extra),
        )
    )


def shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def test_time_window_in_the_sites_time_zone() -> None:
    rule = loading()
    # Friday 4 December 2026, 08:00 in Shanghai is 00:00 UTC: open in Shanghai, not in UTC.
    assert decide(doc(rule), at=shanghai(4, 8)).exempt
    assert decide(doc(rule), at=shanghai(4, 8), plate=None, confidence=None).exempt  # any car
    assert not decide(doc(rule), at=shanghai(4, 9)).exempt  # end exclusive
    assert not decide(doc(rule), at=shanghai(5, 8)).exempt  # Saturday
    utc_site = SiteConfig(id="s1", timezone="UTC")
    assert not decide(doc(rule), at=shanghai(4, 8), site=utc_site).exempt


def test_time_window_across_midnight_belongs_to_its_start_day() -> None:
    rule = loading(start="22:00", end="02:00", weekdays=[5])  # Friday night
    assert decide(doc(rule), at=shanghai(4, 23)).exempt  # Friday 23:00
    assert decide(doc(rule), at=shanghai(5, 1, 30)).exempt  # Saturday 01:30, Friday's window
    assert not decide(doc(rule), at=shanghai(5, 2)).exempt
    assert not decide(doc(rule), at=shanghai(5, 23)).exempt  # Saturday night: no window
    assert not decide(doc(rule), at=shanghai(4, 1)).exempt  # Friday 01:00 is Thursday's window


def test_family_bay_any_car_up_to_n_minutes() -> None:
    document = doc(bay())
    start = T0
    assert decide(document, zone=BAY, started=start, at=start + timedelta(minutes=30)).exempt
    over = decide(document, zone=BAY, started=start, at=start + timedelta(minutes=31))
    assert over == Decision(Outcome.ENFORCE, Why.FAMILY_BAY_OVER_TIME, "bay-rule")
    assert not decide(document, zone=KERB, started=start, at=start + timedelta(minutes=5)).exempt


def test_family_bay_visits_per_local_day() -> None:
    document = doc(bay())
    start = shanghai(4, 20)
    same_day = (shanghai(4, 8), shanghai(4, 12))
    third = decide(
        document, zone=BAY, started=start, at=start + timedelta(minutes=5), earlier=same_day
    )
    assert third.why is Why.FAMILY_BAY_TOO_MANY_VISITS
    # 23:00 UTC the day before is 07:00 local on the 4th: still the same local day.
    second = (shanghai(3, 23),)
    assert decide(
        document, zone=BAY, started=start, at=start + timedelta(minutes=5), earlier=second
    ).exempt
    # Earlier visits on the previous local day do not count.
    yesterday = (shanghai(3, 8), shanghai(3, 12), shanghai(3, 18))
    assert decide(
        document, zone=BAY, started=start, at=start + timedelta(minutes=5), earlier=yesterday
    ).exempt


def test_family_plate_stays_longer_and_has_no_visit_limit() -> None:
    document = doc(bay())
    start = T0
    many = tuple(T0 - timedelta(minutes=m) for m in (10, 20, 30))
    family = decide(
        document,
        plate="苏E11111",
        zone=BAY,
        started=start,
        at=start + timedelta(minutes=100),
        earlier=many,
    )
    assert family == Decision(Outcome.EXEMPT, Why.FAMILY_BAY, "bay-rule")
    assert not decide(
        document, plate="苏E11111", zone=BAY, started=start, at=start + timedelta(minutes=121)
    ).exempt


def test_family_bay_unreadable_plate_is_warned_not_enforced() -> None:
    document = doc(bay())
    for plate, confidence in ((None, None), (PLATE, 0.3)):
        decision = decide(
            document,
            plate=plate,
            confidence=confidence,
            zone=BAY,
            at=T0 + timedelta(hours=3),
            started=T0,
        )
        assert decision == Decision(Outcome.WARN, Why.FAMILY_BAY_UNREADABLE_PLATE, "bay-rule")
    # A loading window still exempts whatever the plate.
    window = loading(start="00:00", end="23:59", weekdays=[1, 2, 3, 4, 5, 6, 7], zone_id="bay")
    assert decide(doc(bay(), window), plate=None, confidence=None, zone=BAY).exempt


def test_overlap_zone_rule_beats_site_rule_then_latest_wins() -> None:
    site_wide = allow()
    zone_only = AllowlistRule(
        **base(id="zone-allow", zone_id="kerb", category="service", plates=[PLATE])
    )
    assert decide(doc(site_wide, zone_only)).rule_id == "zone-allow"
    newer = AllowlistRule(**base(id="newer", category="service", plates=[PLATE], issued_at=T0))
    assert decide(doc(site_wide, newer)).rule_id == "newer"
    # Two family-bay rules on one bay: the newer one alone applies (max 30 -> 60 minutes).
    old = bay()
    new = bay(id="bay-v2", max_minutes=60, family_max_minutes=60, issued_at=T0)
    at = T0 + timedelta(minutes=45)
    assert decide(doc(old, new), zone=BAY, started=T0, at=at) == Decision(
        Outcome.EXEMPT, Why.FAMILY_BAY, "bay-v2"
    )
    assert decide(doc(old), zone=BAY, started=T0, at=at).why is Why.FAMILY_BAY_OVER_TIME
    # Over time in the bay, but the plate holds a permit: the permit exempts.
    permit = PermitRule(**base(id="p", plate=PLATE, valid_to=T0 + timedelta(days=1)))
    assert decide(doc(old, permit), zone=BAY, started=T0, at=at).why is Why.PERMIT


def test_large_allowlist_is_a_set_lookup() -> None:
    plates = [f"沪A{n:05d}" for n in range(100_000)]
    rule = AllowlistRule(**base(id="big", category="resident", plates=plates))
    document = doc(rule)
    assert decide(document, plate="沪A99999").exempt
    assert not decide(document, plate="沪B99999").exempt


def test_wire_documents_are_told_apart_by_schema_version() -> None:
    wire = TypeAdapter[RuleDocument | GatewayRules](WireDocument)
    base = {"site_id": "s1", "gateway_id": "g1", "version": 1, "issued_at": T0.isoformat()}
    # No schema_version: schema 1, as documents always parsed.
    assert isinstance(wire.validate_python(base), RuleDocument)
    named = base | {"schema_version": 2, "site_plates": {"sha256": "a" * 64}}
    assert isinstance(wire.validate_python(named), GatewayRules)
    for bad in (
        base | {"schema_version": 3},
        base | {"schema_version": 2},  # schema 2 names its site's plates
        named | {"site_plates": {"sha256": "not hex"}},
        base | {"site_plates": {"sha256": "a" * 64}},  # schema 1 has no plates by hash
    ):
        with pytest.raises(ValidationError):
            wire.validate_python(bad)
