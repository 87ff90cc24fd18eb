"""Single registry changes that are refused (add, edit, delete) are counted like refused CSV
imports: ``civicwatch_registry_import_refused_total{reason}`` with the entry's code, whether
the body was refused before the handler ran (bad plate, bad phone, formula cell) or by it
(forbidden role, unknown entry, a plate registered twice). Nothing is stored. SQLite and
PostgreSQL, the real app (the ``rig`` of test_registry)."""

from __future__ import annotations

from typing import Any

from tests.integration.test_registry import PLATE, Rig, rig  # noqa: F401 (the fixture)

MISSING = "vehicle-0000000000"


def test_each_refused_single_change_is_counted_by_reason(rig: Rig) -> None:  # noqa: F811
    cases: list[tuple[str, Any, str, int]] = [
        ("pm", {"plate": "AB-123"}, "bad_plate", 422),
        ("pm", {"plate": "沪B00001", "phone": "12"}, "bad_phone", 422),
        ("pm", {"plate": "沪B00002", "owner_name": "=HYPERLINK(1)"}, "formula", 422),
        ("law", {"plate": "沪B00003"}, "forbidden", 403),
    ]
    for who, extra, reason, status in cases:
        before = rig.refused(reason)
        answer = rig.register(who, **extra)
        assert answer.status_code == status, answer.text
        assert rig.refused(reason) == before + 1, reason
    assert rig.rows() == []

    assert rig.register().status_code == 201
    assert rig.register().status_code == 409  # the same plate again
    assert rig.refused("plate_registered") == 1
    (entry,) = rig.rows()
    edit = {
        "site_id": entry.site_id,
        "plate": "沪A1234",
        "category": "resident",
        "owner_name": "张三",
        "phone": "13812341234",
    }
    refused = rig.call("PUT", f"/registry/vehicles/{entry.id}", "pm", edit)
    assert refused.status_code == 422
    assert rig.refused("bad_plate") == 2
    assert rig.call("DELETE", f"/registry/vehicles/{MISSING}", "pm").status_code == 404
    assert rig.refused("not_found") == 1
    assert rig.call("DELETE", f"/registry/vehicles/{entry.id}", "law").status_code == 403
    assert rig.refused("forbidden") == 2
    assert [row.plate for row in rig.rows()] == [PLATE]


def test_reads_and_accepted_changes_are_not_counted(rig: Rig) -> None:  # noqa: F811
    assert rig.register().status_code == 201
    assert rig.call("GET", "/registry/vehicles", "pm").status_code == 200
    assert rig.call("GET", "/registry/vehicles", "integration").status_code == 403  # a read
    samples = [
        sample
        for metric in rig.metrics.collect()
        if metric.name == "civicwatch_registry_import_refused"
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]
    assert samples == []
