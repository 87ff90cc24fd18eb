"""submit_report on SQLite and PostgreSQL: join or open, the three tiers, limits, photos, hostile
input, and the audit chain, through the public function with real objects."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.events import Phase, ViolationKind
from contracts.sites import SiteRegistry
from dispatch.calendar import WorkingCalendar
from dispatch.config import (
    Department,
    ReportRateLimits,
    ResidentSettings,
    Role,
    RoutingSettings,
    SlaSettings,
    Tier,
    TierRule,
)
from dispatch.metrics import DispatchMetrics
from dispatch.residents.intake import (
    Channel,
    IntakeDeps,
    PlanPoint,
    ReportReceipt,
    ReportRefused,
    ReportSubmission,
    submit_report,
)
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.sla import SlaSweep
from dispatch.workflow import Action, Actor, Command, Workflow
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import (
    Case,
    CaseEvidence,
    CaseTransition,
    Consultation,
    GuidanceTemplate,
    ReportLimitHit,
    ReportPhoto,
    ResidentReport,
)
from tests.factories import (
    FIRE_LANE_ZONE,
    SITE,
    T0,
    EventFactory,
    make_ingest,
    make_registry,
    migrated_database,
)

NOW = T0 + timedelta(minutes=10)  # the camera saw the fire lane blocked at T0
K = ViolationKind
GPS_IFD = 0x8825


def _registry() -> SiteRegistry:
    """The factory sites, the fire lane beside 3号楼 at the plan's middle."""
    data = make_registry().model_dump()
    zone = data["sites"][0]["gateways"][0]["cameras"][0]["zones"][1]
    assert zone["id"] == FIRE_LANE_ZONE
    zone.update(building="3号楼", plan_position={"x": 0.5, "y": 0.5})
    return SiteRegistry.model_validate(data)


def photo_with_gps(seed: int = 1) -> bytes:
    image = Image.new("RGB", (120, 80), (seed * 40 % 256, 90, 30))
    exif = Image.Exif()
    exif[0x010F] = "ResidentPhone"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (31.0, 14.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


@dataclass
class Rig:
    sessions: SessionFactory
    deps: IntakeDeps
    edge: EventFactory
    tmp_path: Path

    def submit(self, deps: IntakeDeps | None = None, **fields: Any) -> ReportReceipt:
        values: dict[str, Any] = {
            "category": K.NOISE,
            "site_id": SITE,
            "description": "loud music",
            "client_address": "198.51.100.7",
        } | fields
        with self.sessions() as session:
            receipt = submit_report(session, ReportSubmission(**values), deps=deps or self.deps)
            session.commit()
            return receipt

    def refused(self, deps: IntakeDeps | None = None, **fields: Any) -> ReportRefused:
        with pytest.raises(ReportRefused) as caught:
            self.submit(deps, **fields)
        return caught.value

    def with_settings(self, **changes: Any) -> IntakeDeps:
        return replace(self.deps, settings=self.deps.settings.model_copy(update=changes))

    def at(self, moment: datetime) -> IntakeDeps:
        return replace(self.deps, clock=lambda: moment)


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[Rig]:
    with migrated_database(database_url) as (_engine, sessions):
        store = EvidenceStore(tmp_path / "evidence")
        registry = _registry()
        routing = RoutingSettings()
        deps = IntakeDeps(
            settings=ResidentSettings(),
            registry=registry,
            router=ResidentAwareRouter(routing, registry=registry),
            routing=routing,
            evidence_store=store,
            clock=lambda: NOW,
        )
        yield Rig(sessions, deps, EventFactory(), tmp_path)


def _camera_fire_lane_case(rig: Rig) -> int:
    ingest = make_ingest(rig.sessions, rig.tmp_path / "evidence")
    event = rig.edge.event(Phase.OPENED, zone_id=FIRE_LANE_ZONE, kind=K.FIRE_LANE_BLOCKING)
    ingest.service.store(event)
    with rig.sessions() as session:
        case_id = session.scalars(select(Case.id)).one()
    return case_id


def _actions(session: Session, case_id: int) -> list[str]:
    rows = session.scalars(
        select(CaseTransition.action)
        .where(CaseTransition.case_id == case_id)
        .order_by(CaseTransition.seq)
    )
    return list(rows)


def _chain_intact(rig: Rig) -> None:
    with rig.sessions() as session:
        report = verify_chain(session)
        assert report.intact, report.problems


# --- one case per problem ----------------------------------------------------------------------


def test_a_fire_lane_report_joins_the_cameras_open_case(rig: Rig) -> None:
    camera_case = _camera_fire_lane_case(rig)
    receipt = rig.submit(
        category=K.FIRE_LANE_BLOCKING,
        building="3号楼",
        channel=Channel.QR,
        token_id="poster-3",
        photos=[photo_with_gps()],
        phone="138 1234 1234",
    )
    assert (receipt.case_id, receipt.joined, receipt.tier) == (camera_case, True, Tier.DEPARTMENT)
    assert receipt.tracking_path == f"/report/t/{receipt.tracking_code}"
    with rig.sessions() as session:
        case = session.get_one(Case, camera_case)
        assert (case.source, case.camera_id, case.state) == ("camera", "cam-a1", "dispatched")
        entry = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == camera_case, CaseTransition.action == "report"
            )
        ).one()
        assert entry.detail == {
            "tracking_code": receipt.tracking_code,
            "channel": "qr",
            "joined": True,
        }
        assert (entry.from_state, entry.to_state) == ("dispatched", "dispatched")
        report = session.scalars(select(ResidentReport)).one()
        assert (report.phone, report.token_id, report.building) == (
            "13812341234",
            "poster-3",
            "3号楼",
        )
        photo = session.scalars(select(ReportPhoto)).one()
        labels = session.scalars(
            select(CaseEvidence.label).where(CaseEvidence.sha256 == photo.sha256)
        ).all()
        assert labels == ["resident"]  # the console shows it beside the camera's frames
    stored = Image.open(io.BytesIO(rig.deps.evidence_store.read(photo.sha256)))
    assert dict(stored.getexif()) == {}
    assert "exif" not in stored.info
    _chain_intact(rig)


def test_a_report_at_the_lanes_plan_point_joins_it_too(rig: Rig) -> None:
    camera_case = _camera_fire_lane_case(rig)
    near = rig.submit(category=K.FIRE_LANE_BLOCKING, plan_point=PlanPoint(x=0.55, y=0.47))
    assert (near.case_id, near.joined) == (camera_case, True)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"plan_point": PlanPoint(x=0.9, y=0.9)}, "too far on the plan"),
        ({"building": "7号楼"}, "another building"),
        ({"category": K.ILLEGAL_PARKING, "building": "3号楼"}, "another kind"),
        ({"site_id": "site-b", "building": "3号楼"}, "another site"),
        ({}, "names no place: only a case naming none"),
    ],
)
def test_a_report_elsewhere_opens_its_own_case(rig: Rig, change: dict[str, Any], why: str) -> None:
    camera_case = _camera_fire_lane_case(rig)
    fields: dict[str, Any] = {"category": K.FIRE_LANE_BLOCKING} | change
    receipt = rig.submit(**fields)
    assert not receipt.joined, why
    assert receipt.case_id != camera_case


def test_a_report_after_the_merge_window_opens_a_new_case(rig: Rig) -> None:
    camera_case = _camera_fire_lane_case(rig)
    late = rig.at(T0 + timedelta(minutes=121))  # the camera last saw it at T0
    receipt = rig.submit(late, category=K.FIRE_LANE_BLOCKING, building="3号楼")
    assert not receipt.joined
    assert receipt.case_id != camera_case


def test_reports_join_a_report_born_case_and_keep_it_joinable(rig: Rig) -> None:
    first = rig.submit(plan_point=PlanPoint(x=0.2, y=0.2))
    later = rig.at(NOW + timedelta(minutes=100))
    second = rig.submit(later, plan_point=PlanPoint(x=0.25, y=0.22), client_address="b")
    # 100 + 100 minutes after the first report, but only 100 after the second: still one case.
    latest = rig.at(NOW + timedelta(minutes=200))
    third = rig.submit(latest, plan_point=PlanPoint(x=0.21, y=0.2), client_address="c")
    away = rig.submit(latest, plan_point=PlanPoint(x=0.6, y=0.6), client_address="d")
    assert not first.joined
    assert (second.joined, second.case_id) == (True, first.case_id)
    assert (third.joined, third.case_id) == (True, first.case_id)
    assert not away.joined
    assert away.case_id != first.case_id
    with rig.sessions() as session:
        assert _actions(session, first.case_id) == [
            "register",
            "report",
            "dispatch",
            "report",
            "report",
        ]


def test_a_closed_case_is_never_joined(rig: Rig) -> None:
    household = rig.submit(category=K.NEIGHBOUR_DISPUTE, building="2号楼")
    again = rig.submit(category=K.NEIGHBOUR_DISPUTE, building="2号楼", client_address="x")
    assert not again.joined
    assert again.case_id != household.case_id


# --- the three tiers --------------------------------------------------------------------------


def test_a_department_matter_is_dispatched_like_a_camera_case(rig: Rig) -> None:
    receipt = rig.submit(category=K.NOISE, building="5号楼", unit="2单元")
    assert (receipt.joined, receipt.tier) == (False, Tier.DEPARTMENT)
    with rig.sessions() as session:
        case = session.get_one(Case, receipt.case_id)
        assert (case.source, case.camera_id, case.gateway_id, case.zone_id, case.zone_kind) == (
            "web",
            "",
            "",
            "",
            "",
        )
        assert (case.state, case.department, case.tier, case.priority) == (
            "dispatched",
            "public_security",
            "department",
            "normal",
        )
        assert case.ack_due_at == NOW + timedelta(minutes=30)
        assert case.sla_due_at == NOW + timedelta(minutes=240)
        assert _actions(session, case.id) == ["register", "report", "dispatch"]
        dispatch = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case.id, CaseTransition.action == "dispatch"
            )
        ).one()
        # The notification pump reads the department from the dispatch entry, as for cameras.
        assert dispatch.detail["department"] == "public_security"
        assert dispatch.actor == "dispatch"
    _chain_intact(rig)


def test_a_community_matter_opens_a_consultation(rig: Rig) -> None:
    receipt = rig.submit(category=K.GARBAGE, building="1号楼")
    assert receipt.tier is Tier.COMMUNITY
    with rig.sessions() as session:
        case = session.get_one(Case, receipt.case_id)
        consultation = session.scalars(select(Consultation)).one()
        assert (case.department, case.tier, case.escalate_to, case.state) == (
            "property_management",
            "community",
            "law_enforcement",
            "dispatched",
        )
        assert (consultation.case_id, consultation.site_id, consultation.state) == (
            case.id,
            SITE,
            "open",
        )
        assert consultation.quorum == 3
        assert consultation.deadline_at == NOW + timedelta(hours=72)
        assert case.sla_due_at == consultation.deadline_at


def test_a_household_matter_gets_guidance_and_closes(rig: Rig) -> None:
    receipt = rig.submit(category=K.NEIGHBOUR_DISPUTE, building="2号楼")
    assert receipt.tier is Tier.HOUSEHOLD
    with rig.sessions() as session:
        case = session.get_one(Case, receipt.case_id)
        assert (case.state, case.tier, case.department, case.closed_at) == (
            "closed",
            "household",
            None,
            NOW,
        )
        assert _actions(session, case.id) == ["register", "report", "reply", "close"]
        reply = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case.id, CaseTransition.action == "reply"
            )
        ).one()
        assert reply.detail["public"] is True
        assert "邻里" in reply.detail["body_zh"]
        assert "neighbours" in reply.detail["body_en"]
    _chain_intact(rig)


def test_the_admins_guidance_template_wins(rig: Rig) -> None:
    with rig.sessions() as session:
        session.add(
            GuidanceTemplate(
                category="neighbour_dispute",
                body_zh="请先找楼长。",
                body_en="Talk to your building lead first.",
                updated_by="admin",
                updated_at=NOW,
            )
        )
        session.commit()
    receipt = rig.submit(category=K.NEIGHBOUR_DISPUTE)
    with rig.sessions() as session:
        reply = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == receipt.case_id, CaseTransition.action == "reply"
            )
        ).one()
        assert (reply.reason, reply.detail["body_en"]) == (
            "请先找楼长。",
            "Talk to your building lead first.",
        )


def test_the_tier_rule_table_decides_new_cases(rig: Rig) -> None:
    deps = rig.with_settings(
        tier_rules=[
            TierRule(categories=[K.NOISE], sites=["site-b"], tier=Tier.HOUSEHOLD),
            TierRule(categories=[K.NOISE], tier=Tier.COMMUNITY),
        ]
    )
    at_b = rig.submit(deps, site_id="site-b")
    at_a = rig.submit(deps, client_address="other")
    assert (at_b.tier, at_a.tier) == (Tier.HOUSEHOLD, Tier.COMMUNITY)
    with rig.sessions() as session:
        case = session.get_one(Case, at_a.case_id)
        assert (case.department, case.escalate_to) == ("property_management", "public_security")


def test_a_report_case_can_be_transferred(rig: Rig) -> None:
    receipt = rig.submit(category=K.NOISE)
    workflow = Workflow(reroute=rig.deps.router.assignment)
    dispatcher = Actor("desk", Role.DISPATCHER)
    with rig.sessions() as session:
        case = session.get_one(Case, receipt.case_id)
        workflow.apply(
            session,
            case,
            Command(Action.TRANSFER, reason="not police", department=Department.LAW_ENFORCEMENT),
            dispatcher,
            now=NOW,
        )
        session.commit()
        assert (case.department, case.tier) == ("law_enforcement", "department")
        assert case.sla_due_at == NOW + timedelta(minutes=240)


def test_an_unsettled_consultation_goes_to_a_department_at_its_deadline(rig: Rig) -> None:
    """The SLA sweep's community-tier transfer, on a case no camera saw (no zone kind)."""
    receipt = rig.submit(category=K.GARBAGE, building="1号楼")
    router = rig.deps.router
    sweep = SlaSweep(
        rig.sessions,
        Workflow(reroute=router.assignment),
        WorkingCalendar(),
        SlaSettings(),
        DispatchMetrics(CollectorRegistry()),
        router,
    )
    sweep.run(NOW + timedelta(hours=71))  # before the deadline: escalations maybe, no transfer
    with rig.sessions() as session:
        assert session.get_one(Case, receipt.case_id).department == "property_management"
    later = NOW + timedelta(hours=72, minutes=1)
    sweep.run(later)
    with rig.sessions() as session:
        case = session.get_one(Case, receipt.case_id)
        assert (case.department, case.tier, case.state) == (
            "law_enforcement",
            "department",
            "dispatched",
        )
        assert "transfer" in _actions(session, case.id)
    _chain_intact(rig)


# --- limits -----------------------------------------------------------------------------------


def test_reports_beyond_the_address_limit_get_429_with_retry_after(rig: Rig) -> None:
    deps = rig.with_settings(limits=ReportRateLimits(per_address=2))

    def at(minutes: int) -> IntakeDeps:
        return replace(deps, clock=lambda: NOW + timedelta(minutes=minutes))

    rig.submit(at(0), building="1号楼")
    rig.submit(at(20), building="2号楼")
    refused = rig.refused(at(30), building="4号楼")
    assert (refused.status_code, refused.code) == (429, "report_rate_limited")
    assert refused.headers == {"Retry-After": str(30 * 60)}  # when the first report ages out
    assert refused.params["key_kind"] == "address"
    another = rig.submit(at(30), building="4号楼", client_address="203.0.113.9")
    assert not another.joined
    assert rig.submit(at(61), building="6号楼").case_id  # the first report aged out


def test_the_phone_and_poster_limits_hold_across_addresses(rig: Rig) -> None:
    deps = rig.with_settings(limits=ReportRateLimits(per_phone=1, per_token=2))
    rig.submit(deps, phone="13812341234", client_address="a")
    refused = rig.refused(deps, phone="+86 13812341234", client_address="b")
    assert refused.params["key_kind"] == "phone"
    for address in ("c", "d"):
        rig.submit(deps, channel=Channel.QR, token_id="poster-1", client_address=address)
    refused = rig.refused(deps, channel=Channel.QR, token_id="poster-1", client_address="e")
    assert refused.params["key_kind"] == "token"
    with rig.sessions() as session:
        keys = session.scalars(select(ReportLimitHit.key).where(ReportLimitHit.key_kind == "phone"))
        assert all("13812341234" not in key for key in keys)  # counted by hash only


# --- hostile input ----------------------------------------------------------------------------


def _nothing_written(rig: Rig) -> None:
    with rig.sessions() as session:
        for table in (Case, ResidentReport, ReportPhoto, ReportLimitHit, CaseTransition):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table


@pytest.mark.parametrize(
    ("fields", "code", "status"),
    [
        ({"photos": [b"<svg onload=alert(1)>"]}, "report_photo_type", 422),
        ({"photos": [b"\xff\xd8\xff" + b"A" * 100]}, "report_photo_damaged", 422),
        ({"photos": [b"\xff\xd8\xff" + bytes(9 * 1024 * 1024)]}, "report_photo_too_large", 413),
        ({"photos": [photo_with_gps(n) for n in range(4)]}, "report_too_many_photos", 422),
        ({"site_id": "nowhere"}, "report_unknown_site", 422),
        ({"unit": "2单元"}, "report_unit_without_building", 422),
        ({"description": "x" * 2001}, "report_text_too_long", 422),
        ({"description": "nul\x00byte"}, "report_text_invalid", 422),
        ({"building": "3号楼\n7号楼"}, "report_text_invalid", 422),
        ({"phone": "110"}, "report_bad_phone", 422),
        ({"description": "   "}, "report_empty", 422),
        ({"channel": Channel.QR}, "report_qr_needs_token", 422),
    ],
)
def test_hostile_input_is_refused_and_nothing_is_written(
    rig: Rig, fields: dict[str, Any], code: str, status: int
) -> None:
    refused = rig.refused(**fields)
    assert (refused.code, refused.status_code) == (code, status)
    _nothing_written(rig)


def test_a_building_the_site_does_not_have_is_refused(rig: Rig) -> None:
    # The site names buildings (the fire lane's 3号楼, and these): others are refused.
    deps = rig.with_settings(buildings={SITE: ["1号楼", "2号楼"]})
    refused = rig.refused(deps, building="99号楼")
    assert refused.params == {"site_id": SITE, "building": "99号楼"}
    assert rig.submit(deps, building="1号楼").case_id


def test_script_in_text_is_stored_as_text(rig: Rig) -> None:
    script = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    receipt = rig.submit(description=script, building="3号楼")
    with rig.sessions() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert report.description == script  # escaping on output is the pages' job
        assert report.tracking_code == receipt.tracking_code
