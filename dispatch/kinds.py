"""What the server knows about each violation kind beyond the wire, registered in one place.

The kinds themselves are in contracts.kinds. Here each gets its default route (when no routing
rule of the config matches), its Open311 service and whether its camera can verify a fix.
Importing this module checks that every kind has an entry, so a kind added without one stops
the server at start instead of failing inside the ingest transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from contracts.kinds import ViolationKind, require_every_kind
from dispatch.config import DeadlineClock, Department, Priority, Route, Tier


@dataclass(frozen=True, slots=True)
class ServiceListing:
    """A kind as Open311 GeoReport v2 lists it (services.json); its code is the kind's value."""

    name: str
    description: str
    keywords: str
    group: str


@dataclass(frozen=True, slots=True)
class DispatchKind:
    default_route: Route
    service: ServiceListing
    camera_verifies: bool
    """Whether a resolved case is re-checked by its camera (the zone is watched for occupants)."""


DISPATCH_KINDS: Mapping[ViolationKind, DispatchKind] = MappingProxyType(
    {
        ViolationKind.ILLEGAL_PARKING: DispatchKind(
            default_route=Route(
                department=Department.LAW_ENFORCEMENT,
                priority=Priority.NORMAL,
                ack_minutes=30,
                sla_minutes=120,
            ),
            service=ServiceListing(
                "违法停车", "机动车在禁停区域停放超过允许时长", "停车,禁停,机动车,违停", "市容交通"
            ),
            camera_verifies=True,
        ),
        ViolationKind.FIRE_LANE_BLOCKING: DispatchKind(
            default_route=Route(
                department=Department.FIRE_RESCUE,
                priority=Priority.URGENT,
                ack_minutes=5,
                sla_minutes=30,
                clock=DeadlineClock.CALENDAR,
            ),
            service=ServiceListing(
                "占用消防通道", "车辆或物品占用、堵塞消防车通道", "消防通道,堵塞,占道", "消防安全"
            ),
            camera_verifies=True,
        ),
        ViolationKind.ILLEGAL_STRUCTURE: DispatchKind(
            default_route=Route(
                department=Department.LAW_ENFORCEMENT,
                priority=Priority.LOW,
                ack_minutes=24 * 60,
                sla_minutes=7 * 24 * 60,
            ),
            service=ServiceListing(
                "违法建设", "禁建区域内新出现的搭建物", "违建,搭建,违法建设", "城市管理"
            ),
            camera_verifies=False,  # the edge watches no occupants in a no-build zone
        ),
        # Resident categories (docs/residents.md says why each goes where). No camera sees them,
        # so none is verified by camera. Shared-space upkeep is property management's first, with
        # the residents' council (小事协商); safety and public order go to a department.
        ViolationKind.NOISE: DispatchKind(
            default_route=Route(
                department=Department.PUBLIC_SECURITY,
                priority=Priority.NORMAL,
                ack_minutes=30,
                sla_minutes=240,
            ),
            service=ServiceListing(
                "噪声扰民", "施工、娱乐或商铺噪声影响居民休息", "噪声,噪音,扰民,施工", "社会治安"
            ),
            camera_verifies=False,
        ),
        ViolationKind.GARBAGE: DispatchKind(
            default_route=Route(
                department=Department.PROPERTY_MANAGEMENT,
                tier=Tier.COMMUNITY,
                escalate_to=Department.LAW_ENFORCEMENT,
                priority=Priority.NORMAL,
                ack_minutes=120,
                sla_minutes=24 * 60,
                clock=DeadlineClock.WORKING,
            ),
            service=ServiceListing(
                "垃圾堆放", "公共区域垃圾未清运或乱堆乱放", "垃圾,堆放,清运,卫生", "环境卫生"
            ),
            camera_verifies=False,
        ),
        ViolationKind.BROKEN_LIGHTING: DispatchKind(
            default_route=Route(
                department=Department.PROPERTY_MANAGEMENT,
                tier=Tier.COMMUNITY,
                escalate_to=Department.LAW_ENFORCEMENT,
                priority=Priority.LOW,
                ack_minutes=240,
                sla_minutes=3 * 24 * 60,
                clock=DeadlineClock.WORKING,
            ),
            service=ServiceListing(
                "照明损坏", "楼道、道路或公共区域的灯不亮", "路灯,楼道灯,照明,不亮", "设施维护"
            ),
            camera_verifies=False,
        ),
        ViolationKind.WATER_LEAK: DispatchKind(
            default_route=Route(
                department=Department.PROPERTY_MANAGEMENT,
                tier=Tier.COMMUNITY,
                escalate_to=Department.LAW_ENFORCEMENT,
                priority=Priority.HIGH,
                ack_minutes=60,
                sla_minutes=24 * 60,
            ),
            service=ServiceListing(
                "漏水渗水", "公共管道、屋面或楼上渗漏水", "漏水,渗水,水管,爆管", "设施维护"
            ),
            camera_verifies=False,
        ),
        ViolationKind.EBIKE_CHARGING: DispatchKind(
            default_route=Route(
                department=Department.FIRE_RESCUE,
                priority=Priority.HIGH,
                ack_minutes=30,
                sla_minutes=4 * 60,
            ),
            service=ServiceListing(
                "电动车违规充电",
                "电动自行车在楼道、楼梯间或室内停放充电",
                "电动车,充电,飞线,楼道",
                "消防安全",
            ),
            camera_verifies=False,
        ),
        ViolationKind.NEIGHBOUR_DISPUTE: DispatchKind(
            default_route=Route(
                department=Department.PROPERTY_MANAGEMENT,
                tier=Tier.HOUSEHOLD,
                escalate_to=Department.PUBLIC_SECURITY,  # when mediation fails too
                priority=Priority.LOW,
                ack_minutes=24 * 60,
                sla_minutes=7 * 24 * 60,
                clock=DeadlineClock.WORKING,
            ),
            service=ServiceListing(
                "邻里纠纷",
                "邻里之间的家庭私事矛盾，先由居民自治、按需调解",
                "邻里,纠纷,调解",
                "邻里自治",
            ),
            camera_verifies=False,
        ),
    }
)

DEFAULT_ROUTES: Mapping[ViolationKind, Route] = MappingProxyType(
    {kind: registered.default_route for kind, registered in DISPATCH_KINDS.items()}
)
VERIFIED_KINDS = frozenset(kind for kind, entry in DISPATCH_KINDS.items() if entry.camera_verifies)

require_every_kind(DISPATCH_KINDS, ViolationKind, "dispatch.kinds.DISPATCH_KINDS")
