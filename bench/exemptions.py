"""Exemption check cost at the edge: contracts.exemptions.evaluate with 100,000 registered plates.

    .venv/bin/python bench/exemptions.py [--plates 100000] [--events 20000]

Prints milliseconds per evaluate for an allowlisted plate (found early) and a family-bay plate
(every rule looked at), then a JSON summary. Issue 13's target: <= 1 ms per event.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from contracts.exemptions import (
    AllowlistRule,
    FamilyBayRule,
    PermitRule,
    RuleDocument,
    StayHistory,
    evaluate,
)
from contracts.sites import SiteConfig, ZoneConfig, ZoneKind

T0 = datetime(2026, 12, 4, 2, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plates", type=int, default=100_000)
    parser.add_argument("--permits", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    plates = [f"沪A{n:05d}" if n < 100_000 else f"沪B{n - 100_000:05d}" for n in range(args.plates)]
    base = {"site_id": "s1", "valid_from": T0 - timedelta(days=1), "reason": "r", "issued_at": T0}
    rules: list[AllowlistRule | FamilyBayRule | PermitRule] = [
        AllowlistRule(id="residents", category="resident", plates=plates, **base),
        FamilyBayRule(
            id="bay",
            zone_id="bay",
            max_minutes=30,
            max_visits_per_day=3,
            family_plates=plates[:1000],
            family_max_minutes=120,
            **base,
        ),
    ]
    rules += [
        PermitRule(id=f"p{i}", plate=f"京B{i:05d}", valid_to=T0 + timedelta(days=1), **base)
        for i in range(args.permits)
    ]
    document = RuleDocument(site_id="s1", gateway_id="g1", version=1, issued_at=T0, rules=rules)
    site = SiteConfig(id="s1")
    zone = ZoneConfig(id="bay", kind=ZoneKind.NO_PARKING, polygon=[[0, 0], [1, 0], [1, 1]])
    history = StayHistory(T0 - timedelta(minutes=5))
    results = {}
    for name, plate in (("allowlisted", plates[-1]), ("family_bay_visitor", "苏E00001")):
        evaluate(document, plate, 0.9, zone, site, T0, history)  # index built once
        start = time.perf_counter()
        for _ in range(args.events):
            evaluate(document, plate, 0.9, zone, site, T0, history)
        results[name] = round((time.perf_counter() - start) / args.events * 1000, 4)
        print(f"{name}: {results[name]} ms per evaluate")
    print(json.dumps({"plates": args.plates, "rules": len(rules), "ms_per_event": results}))


if __name__ == "__main__":
    main()
