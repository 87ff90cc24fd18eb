"""The analysis report's periods and figures, on a real database with hand-placed cases: each
figure is checked against what the rows say (docs/reports.md defines them)."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from pydantic import HttpUrl, SecretStr
from sqlalchemy import insert, select

from bench.report_seed import STREET, draw_plan, seed_registry
from contracts.sites import SiteRegistry
from dispatch.config import Department
from dispatch.notification_settings import NotificationSettings, WebhookSettings
from dispatch.notifications.reports import REPORT_EVENT, enqueue_report
from dispatch.reports.charts import ReportFontMissingError, find_cjk_font
from dispatch.reports.figures import count_figures
from dispatch.reports.period import (
    Period,
    ReportError,
    Scope,
    last_finished,
    parse_day,
    parse_period,
    resolve_place,
    window,
)
from dispatch.reports.service import SCHEDULE, ReportRequest, ReportService, notice_of
from dispatch.workflow import Action
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import (
    AnalysisReport,
    CameraHealthChange,
    Case,
    CaseTransition,
    Notification,
    SitePlanImage,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAY = date(2026, 5, 1)
SITE = "compound-east"
CAMERA = "compound-east-cam0"
MIN = timedelta(minutes=1)


def local(day: int, hour: int = 10, month: int = 5) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


def case_row(case_id: int, created: datetime, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": case_id,
        "violation_id": uuid.uuid4(),
        "kind": "illegal_parking",
        "site_id": SITE,
        "gateway_id": f"gw-{SITE}",
        "camera_id": CAMERA,
        "zone_id": "z0-no_parking",
        "zone_kind": "no_parking",
        "state": "accepted",
        "department": "law_enforcement",
        "started_at": created,
        "opened_at": created,
        "last_observed_at": created,
        "dwell_seconds": 300.0,
        "created_at": created,
        "updated_at": created,
        "overdue": False,
        "chain_broken": False,
        "escalation_level": 0,
    }
    row.update(values)
    return row


@pytest.fixture
def registry() -> SiteRegistry:
    return seed_registry()


def test_a_week_runs_monday_to_sunday_and_a_month_from_the_first_in_local_time() -> None:
    week = window(Period.WEEK, date(2026, 5, 7), SHANGHAI)  # a Thursday
    assert week.first_day == date(2026, 5, 4)
    assert week.last_day == date(2026, 5, 10)
    assert week.start == datetime(2026, 5, 3, 16, tzinfo=UTC)  # 00:00 in Shanghai
    month = window(Period.MONTH, date(2026, 2, 14), SHANGHAI)
    assert (month.first_day, month.last_day) == (date(2026, 2, 1), date(2026, 2, 28))
    assert month.previous(SHANGHAI).first_day == date(2026, 1, 1)
    now = datetime(2026, 6, 1, 1, tzinfo=UTC)  # Monday 09:00 in Shanghai
    assert last_finished(Period.WEEK, now, SHANGHAI).first_day == date(2026, 5, 25)
    assert last_finished(Period.MONTH, now, SHANGHAI).first_day == date(2026, 5, 1)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda r: parse_period("fortnight"), "bad_period"),
        (lambda r: parse_day("2026-13-01"), "bad_date"),
        (lambda r: parse_day("'; drop table cases"), "bad_date"),
        (lambda r: parse_day("1999-12-31"), "early_date"),
        (lambda r: resolve_place(r, "city", "x"), "bad_scope"),
        (lambda r: resolve_place(r, Scope.SITE, "nowhere"), "no_site"),
        (lambda r: resolve_place(r, Scope.STREET, "nowhere"), "no_street"),
    ],
)
def test_bad_input_is_refused_with_a_code_the_page_translates(
    registry: SiteRegistry, call: Any, code: str
) -> None:
    with pytest.raises(ReportError) as refused:
        call(registry)
    assert refused.value.code == code
    assert "\n" not in str(refused.value)


def test_a_period_that_has_not_ended_is_refused(
    session_factory: SessionFactory, registry: SiteRegistry
) -> None:
    service = ReportService(session_factory, registry, clock=lambda: local(20))
    with pytest.raises(ReportError) as refused:
        service.generate(ReportRequest(Period.MONTH, Scope.SITE, SITE, date(2026, 5, 2)), "me")
    assert refused.value.code == "not_ended"


def test_figures_count_kinds_trends_rates_plates_uptime_and_false_alarms(
    session_factory: SessionFactory, registry: SiteRegistry
) -> None:
    rows = [
        # accepted in 5 min (deadline 10), resolved in time, closed: plate seen twice
        case_row(
            1,
            local(4, 9),  # Monday 09:00
            ack_due_at=local(4, 9) + 10 * MIN,
            acknowledged_at=local(4, 9) + 5 * MIN,
            sla_due_at=local(4, 9) + 120 * MIN,
            resolved_at=local(4, 9) + 60 * MIN,
            closed_at=local(4, 9) + 90 * MIN,
            state="closed",
            plate_text="沪A12345",
            plate_confidence=0.95,
        ),
        # accepted late (20 min), never resolved: overdue
        case_row(
            2,
            local(6, 22),  # Wednesday 22:00
            ack_due_at=local(6, 22) + 10 * MIN,
            acknowledged_at=local(6, 22) + 20 * MIN,
            sla_due_at=local(6, 22) + 120 * MIN,
            plate_text="沪A12345",
            plate_confidence=0.95,
        ),
        # a fire case, never accepted
        case_row(
            3,
            local(7, 9),
            kind="fire_lane_blocking",
            zone_id="z0-fire_lane",
            zone_kind="fire_lane",
            department="fire_rescue",
            ack_due_at=local(7, 9) + 5 * MIN,
            sla_due_at=local(7, 9) + 30 * MIN,
            plate_text="沪B00001",
            plate_confidence=0.95,
        ),
        # merged duplicates are not counted; the previous week had two cases
        case_row(4, local(8), state="merged", plate_text="沪B00001", plate_confidence=0.95),
        case_row(5, local(28, month=4)),
        case_row(6, local(29, month=4), kind="fire_lane_blocking", department="fire_rescue"),
        # outside the place: another compound
        case_row(7, local(5), site_id="compound-west", camera_id="compound-west-cam0"),
    ]
    with session_factory.begin() as session:
        session.execute(insert(Case), rows)
        session.add(
            CaseTransition(
                case_id=1,
                from_state="resolved",
                to_state="closed",
                actor="desk",
                reason="",
                at=local(4, 9) + 90 * MIN,
                action=Action.CLOSE.value,
                detail={"close_reason": "false_alarm"},
            )
        )
        # healthy from before the week; offline for 24 h from Tuesday 00:00
        for at, health in [
            (local(1, 0), "ok"),
            (local(5, 0), "offline"),
            (local(6, 0), "ok"),
        ]:
            session.add(CameraHealthChange(camera_id=CAMERA, site_id=SITE, health=health, at=at))
    place = resolve_place(registry, Scope.SITE, SITE)
    with session_factory() as session:
        f = count_figures(
            session, registry, place, window(Period.WEEK, date(2026, 5, 4), place.zone)
        )

    assert f.total == 3
    assert f.previous_total == 2
    assert {(k.key, k.current, k.previous) for k in f.kinds} == {
        ("illegal_parking", 2, 1),
        ("fire_lane_blocking", 1, 1),
    }
    assert next(k for k in f.kinds if k.key == "illegal_parking").change_pct == 100.0
    law = next(d for d in f.departments if d.department == "law_enforcement")
    assert (law.cases, law.accepted, law.accepted_in_time, law.closed) == (2, 2, 1, 1)
    assert (law.with_deadline, law.resolved_in_time, law.overdue) == (2, 1, 1)
    assert law.response_rate == 0.5
    assert law.resolution_rate == 0.5
    assert law.in_time_share == 0.5
    assert law.median_accept_minutes == pytest.approx(12.5)
    assert law.median_close_minutes == pytest.approx(90)
    fire = next(d for d in f.departments if d.department == "fire_rescue")
    assert (fire.response_rate, fire.overdue, fire.median_accept_minutes) == (0.0, 1, None)
    assert f.hour_weekday[0][9] == 1
    assert f.hour_weekday[2][22] == 1
    assert f.hour_weekday[3][9] == 1
    assert [(p.plate, p.case_ids) for p in f.plates] == [("沪A12345", (1, 2))]
    # both zones of the camera share one location name: one hot spot
    assert f.hot_spots[0].cases == 3
    assert f.hot_spots[0].site_name == "东苑小区"
    plan = f.plans[0]
    assert sum(p.cases for p in plan.points) == 3
    assert plan.unplaced == 0
    uptime = next(u for u in f.uptime if u.camera_id == CAMERA)
    assert uptime.healthy_share == pytest.approx(6 / 7)
    assert uptime.known_share == pytest.approx(1.0)
    silent = next(u for u in f.uptime if u.camera_id == "compound-east-cam1")
    assert silent.healthy_share is None
    assert silent.known_share == 0.0
    assert [(a.camera_id, a.false_alarm, a.not_a_violation) for a in f.false_alarms] == [
        (CAMERA, 1, 0)
    ]


def test_the_schedule_makes_each_due_report_once_and_tells_every_webhook(
    session_factory: SessionFactory, registry: SiteRegistry
) -> None:
    with session_factory.begin() as session:
        session.execute(insert(Case), [case_row(1, local(12)), case_row(2, local(20))])
    settings = NotificationSettings(
        webhooks=[
            WebhookSettings(
                department=department,
                url=HttpUrl(f"https://{department.value.replace('_', '-')}.example/hook"),
                secret=SecretStr("0123456789abcdef"),
            )
            for department in (Department.LAW_ENFORCEMENT, Department.FIRE_RESCUE)
        ]
    )
    # Monday 1 June 2026, 05:00 in Shanghai: not due until 06:00
    clock = [datetime(2026, 5, 31, 21, tzinfo=UTC)]
    service = ReportService(session_factory, registry, clock=lambda: clock[0])

    def deliver(made: Any) -> int:
        return enqueue_report(session_factory, settings, notice_of(made), clock=lambda: clock[0])

    assert service.run_schedule(deliver) == 0
    clock[0] = datetime(2026, 5, 31, 22, 30, tzinfo=UTC)  # 06:30
    # two sites and their street, each a week and a month
    assert service.run_schedule(deliver) == 6
    assert service.run_schedule(deliver) == 0  # made once
    with session_factory() as session:
        reports = session.scalars(select(AnalysisReport)).all()
        sent = session.scalars(select(Notification)).all()
    assert {(r.period, r.scope, r.scope_id) for r in reports} == {
        (period, scope, scope_id)
        for period in ("week", "month")
        for scope, scope_id in (
            ("site", "compound-east"),
            ("site", "compound-west"),
            ("street", STREET),
        )
    }
    assert all(r.generated_by == SCHEDULE and r.language == "zh-CN" for r in reports)
    assert all(r.pdf.startswith(b"%PDF") and "社情研判" in r.html for r in reports)
    east_month = next(r for r in reports if (r.period, r.scope_id) == ("month", "compound-east"))
    assert east_month.period_start == datetime(2026, 4, 30, 16, tzinfo=UTC)
    assert len(sent) == 12  # 6 reports x 2 webhooks
    assert {n.event_type for n in sent} == {REPORT_EVENT}
    assert {n.department for n in sent} == {"law_enforcement", "fire_rescue"}
    told = next(n.payload["report"] for n in sent if n.payload["report"]["id"] == east_month.id)
    assert told["headline"]["cases"] == 2
    assert told["first_day"] == "2026-05-01"
    assert told["last_day"] == "2026-05-31"
    assert told["url"].endswith(f"/console/reports/{east_month.id}")
    assert "pdf" not in {k for k in told if k != "pdf_url"}  # the PDF itself stays on the server


def test_generating_again_replaces_the_stored_report(
    session_factory: SessionFactory, registry: SiteRegistry
) -> None:
    service = ReportService(session_factory, registry, clock=lambda: local(1, month=7))
    request = ReportRequest(Period.WEEK, Scope.SITE, SITE, date(2026, 5, 6), "en")
    first = service.generate(request, "desk")
    with session_factory.begin() as session:
        session.execute(insert(Case), [case_row(1, local(6))])
    again = service.generate(request, "desk")
    assert again.report_id == first.report_id
    assert (first.figures.total, again.figures.total) == (0, 1)
    assert "weekly joint analysis report" in again.html


def test_an_uploaded_plan_image_is_the_heat_maps_background(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    registry = seed_registry(draw_plan(tmp_path / "configured.png"))
    store = EvidenceStore(tmp_path / "evidence")
    picture = io.BytesIO()
    Image.new("RGB", (400, 300), (0, 0, 255)).save(picture, format="PNG")  # all blue
    data = picture.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    store.put(data, sha)
    with session_factory.begin() as session:
        session.execute(insert(Case), [case_row(1, local(6))])
        session.add(
            SitePlanImage(
                site_id=SITE,
                sha256=sha,
                content_type="image/png",
                width=400,
                height=300,
                uploaded_by="admin",
                uploaded_at=local(1),
            )
        )
    service = ReportService(
        session_factory, registry, clock=lambda: local(1, month=7), evidence_store=store
    )
    made = service.generate(ReportRequest(Period.WEEK, Scope.SITE, SITE, date(2026, 5, 6)), "me")
    assert made.figures.plans[0].image == store.path(sha)
    without = ReportService(session_factory, registry, clock=lambda: local(1, month=7))
    again = without.generate(ReportRequest(Period.WEEK, Scope.SITE, SITE, date(2026, 5, 6)), "me")
    assert again.figures.plans[0].image == tmp_path / "configured.png"


def test_without_a_chinese_font_the_report_names_the_package_to_install() -> None:
    assert (
        find_cjk_font(["/fonts/DejaVuSans.ttf", "/x/wqy-microhei.ttc"]).name == "wqy-microhei.ttc"
    )
    with pytest.raises(ReportFontMissingError, match="install fonts-wqy-microhei"):
        find_cjk_font(["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"])
