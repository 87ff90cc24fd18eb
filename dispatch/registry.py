"""The residents' vehicle registry (issue 13 point 5): residents' plates, their family's plates
(孝心车位) and service vehicles, each with its owner's name and phone, per site.

Personal data. It is held on the server only:

- the gateways get the plates alone, through the signed rule documents (contracts/registry_plates
  .py, dispatch/exemptions.py): every change bumps the site's documents in its own transaction;
- property management (supervisors and workers) and the command centre's dispatchers read it
  whole and change it; admins and other departments' supervisors and workers read it masked
  (``张*``, ``138****1234``); integrations and council members not at all (``may_read``);
- every change (created, updated, deleted, imported) is chained onto the exemption audit
  (dispatch.exemptions.append_audit) with the plate and category, never the name or the phone.

CSV import (``parse_csv`` then ``RegistryService.import_rows``; the header in English or in
Chinese, categories as codes or their Chinese names) is all-or-nothing: one bad row
and nothing is stored; the report names every bad row, its column and the reason in both
languages. Rows add a plate or replace its entry (the plate is the key on a site); nothing is
deleted by an import. ``owner_of(sessions, site, plate)`` is the lookup other code calls (the
warning stage messages a registered owner).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.events import PLATE_PATTERN, Identifier
from contracts.exemptions import MAX_PLATES
from contracts.sites import SiteRegistry
from dispatch.config import Department, Role
from dispatch.exemptions import ExemptionService, SignedDocument, append_audit
from dispatch.residents.privacy import PhoneError, mask_phone, normalise_phone
from dispatch.web.i18n import translator
from dispatch.workflow import Actor as Principal
from storage.database import SessionFactory
from storage.tables import RegistryVehicle, utcnow

CSV_COLUMNS = ("plate", "category", "building", "unit", "owner_name", "phone")
"""The import's header, in this order; the export writes the same (and ``site_id`` first)."""
CSV_COLUMNS_ZH = ("车牌", "类别", "楼栋", "单元", "车主", "电话")
"""The same header in Chinese, accepted as well (a property office's own spreadsheet)."""
CATEGORY_ALIASES = {"住户": "resident", "亲属": "family", "服务车辆": "service"}
"""Categories may be written in Chinese too."""
MAX_CSV_BYTES = 1024 * 1024
MAX_CSV_ROWS = 5000
MAX_ERRORS = 200
"""The report lists at most this many bad rows (and says how many there were)."""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell that starts with one of these as a formula (CSV injection)."""


class Category(StrEnum):
    RESIDENT = "resident"
    FAMILY = "family"  # a resident's family: longer stays in the family bays (孝心车位)
    SERVICE = "service"


def may_edit(principal: Principal) -> bool:
    """Property management's supervisors and workers and the command centre's dispatchers."""
    if principal.role is Role.DISPATCHER:
        return True
    return (
        principal.role in (Role.SUPERVISOR, Role.WORKER)
        and principal.department is Department.PROPERTY_MANAGEMENT
    )


def may_read(principal: Principal) -> bool:
    """Whoever may edit (whole), admins and departments' people (masked)."""
    return may_edit(principal) or principal.role in (Role.ADMIN, Role.SUPERVISOR, Role.WORKER)


def mask_name(name: str) -> str:
    """``张三丰`` -> ``张**``, ``Li Wei`` -> ``L*****``: the first character kept."""
    if len(name) <= 1:
        return "*"
    return name[0] + "*" * (len(name) - 1)


def csv_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading ``'``."""
    return "'" + value if value.startswith(FORMULA_START) else value


class VehicleIn(BaseModel):
    """One registry entry as property management writes it (API body, or one CSV row)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    site_id: Identifier
    plate: str = Field(pattern=PLATE_PATTERN)
    category: Category
    building: str = Field(default="", max_length=32)
    unit: str = Field(default="", max_length=32)
    owner_name: str = Field(min_length=1, max_length=64)
    phone: str = Field(min_length=5, max_length=24, description="stored as digits (+86 dropped)")

    @field_validator("building", "unit", "owner_name")
    @classmethod
    def _no_formula(cls, value: str) -> str:
        if value.startswith(FORMULA_START):
            raise ValueError("must not start with = + - @ (a spreadsheet formula)")
        if any(ord(c) < 32 for c in value):
            raise ValueError("must not hold control characters")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        try:
            return normalise_phone(value)
        except PhoneError as exc:
            raise ValueError(str(exc)) from exc


class VehicleView(BaseModel):
    """An entry as the caller may see it: ``masked`` says whether name and phone are."""

    id: str
    site_id: str
    plate: str
    category: Category
    building: str
    unit: str
    owner_name: str
    phone: str
    masked: bool
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class Contact:
    """Whom to tell about a plate: the registered owner (``owner_of``)."""

    site_id: str
    plate: str
    category: Category
    owner_name: str
    phone: str
    building: str
    unit: str


def view(row: RegistryVehicle, principal: Principal) -> VehicleView:
    whole = may_edit(principal)
    return VehicleView(
        id=row.id,
        site_id=row.site_id,
        plate=row.plate,
        category=Category(row.category),
        building=row.building,
        unit=row.unit,
        owner_name=row.owner_name if whole else mask_name(row.owner_name),
        phone=row.phone if whole else mask_phone(row.phone),
        masked=not whole,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def owner_of(sessions: SessionFactory, site_id: str, plate: str) -> Contact | None:
    """The registered owner of ``plate`` on ``site_id`` (any category; for a family plate the
    resident's contact as registered), or None when the plate is not in the registry."""
    with sessions() as session:
        row = session.scalars(
            select(RegistryVehicle).where(
                RegistryVehicle.site_id == site_id, RegistryVehicle.plate == plate
            )
        ).first()
        if row is None:
            return None
        return Contact(
            row.site_id,
            row.plate,
            Category(row.category),
            row.owner_name,
            row.phone,
            row.building,
            row.unit,
        )


class RegistryError(Exception):
    def __init__(
        self, status: int, code: str, detail: str, params: dict[str, Any] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.params = params or {}
        super().__init__(detail)


# -- CSV -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """One reason a CSV row was refused. ``row`` counts the file's records, the header being
    row 1; ``value`` is the cell made safe to show (csv_safe, at most 40 characters)."""

    row: int
    column: str
    code: str
    value: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "value": self.value,
            "message": {
                lang: translator(lang)(f"registry.csv_error.{self.code}")
                for lang in ("en", "zh-CN")
            },
        }


@dataclass
class ParsedCsv:
    rows: list[VehicleIn] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    row_count: int = 0


class CsvRefusedError(RegistryError):
    """The file as a whole cannot be read (codes ``csv_*``; counted by reason)."""


_PYDANTIC_CODES = {
    "string_pattern_mismatch": "bad_plate",
    "string_too_short": "missing_value",
    "string_too_long": "too_long",
    "enum": "bad_category",
    "missing": "missing_value",
}


def refusal_code(column: str, problem: Mapping[str, Any]) -> str:
    """The registry's code (``bad_plate``, ``bad_phone``, ``formula`` ...) for one pydantic
    problem with ``column``: the CSV row report's and the single edits' refusal counts."""
    code = _PYDANTIC_CODES.get(str(problem.get("type")), "invalid_value")
    if column == "phone" and problem.get("type") == "value_error":
        code = "bad_phone"
    elif problem.get("type") == "value_error":
        code = "formula" if "formula" in str(problem.get("msg")) else "invalid_value"
    if column == "phone" and code == "missing_value":
        code = "bad_phone"
    return code


def _row_error(row: int, exc: ValidationError, cells: dict[str, str]) -> list[RowError]:
    found = []
    for problem in exc.errors():
        column = str(problem["loc"][0]) if problem["loc"] else ""
        code = refusal_code(column, problem)
        found.append(RowError(row, column, code, csv_safe(cells.get(column, ""))[:40]))
    return found


def parse_csv(data: bytes, site_id: str) -> ParsedCsv:
    """The rows of an import, or CsvRefusedError for a file that cannot be one (too large, not
    UTF-8, empty, a wrong header, too many rows). Row errors are collected, not raised."""
    if len(data) > MAX_CSV_BYTES:
        raise CsvRefusedError(
            413, "csv_too_large", "the file is over the limit", {"limit": MAX_CSV_BYTES}
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvRefusedError(
            422, "csv_not_utf8", "the file is not UTF-8 text", {"offset": exc.start}
        ) from exc
    if "\x00" in text:
        raise CsvRefusedError(422, "csv_not_utf8", "the file holds NUL characters (not text)")
    if not text.strip():
        raise CsvRefusedError(422, "csv_empty", "the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip().lower() for cell in next(reader)]
    except csv.Error as exc:
        raise CsvRefusedError(422, "csv_unreadable", f"not CSV: {exc}") from exc
    if tuple(header) == CSV_COLUMNS_ZH:
        header = list(CSV_COLUMNS)
    if tuple(header) != CSV_COLUMNS:
        raise CsvRefusedError(
            422,
            "csv_bad_header",
            "the header must be " + ",".join(CSV_COLUMNS),
            {"expected": ",".join(CSV_COLUMNS)},
        )
    parsed = ParsedCsv()
    seen: dict[str, int] = {}
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            parsed.row_count += 1
            if parsed.row_count > MAX_CSV_ROWS:
                raise CsvRefusedError(
                    413, "csv_too_many_rows", "too many rows", {"limit": MAX_CSV_ROWS}
                )
            row = reader.line_num
            if len(record) != len(CSV_COLUMNS):
                parsed.errors.append(RowError(row, "", "wrong_column_count", str(len(record))))
                continue
            cells = dict(zip(CSV_COLUMNS, record, strict=True))
            category = cells["category"].strip()
            cells["category"] = CATEGORY_ALIASES.get(category, category)
            try:
                vehicle = VehicleIn.model_validate({"site_id": site_id, **cells})
            except ValidationError as exc:
                parsed.errors.extend(_row_error(row, exc, cells))
                continue
            if vehicle.plate in seen:
                parsed.errors.append(RowError(row, "plate", "duplicate_plate", vehicle.plate))
                continue
            seen[vehicle.plate] = row
            parsed.rows.append(vehicle)
    except csv.Error as exc:
        raise CsvRefusedError(422, "csv_unreadable", f"not CSV: {exc}") from exc
    if parsed.row_count == 0:
        raise CsvRefusedError(422, "csv_empty", "the file has a header and no rows")
    return parsed


def export_csv(rows: Sequence[RegistryVehicle]) -> bytes:
    """UTF-8 with a BOM (a spreadsheet then reads the Chinese right), every cell csv_safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("site_id", *CSV_COLUMNS))
    for row in rows:
        cells = (row.site_id, row.plate, row.category, row.building, row.unit)
        writer.writerow([csv_safe(c) for c in (*cells, row.owner_name, row.phone)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# -- the service -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int


class RegistryService:
    """The registry's changes: each in one transaction with its audit entry and the site's new
    rule documents, published after the commit (no ``exemptions``: nothing is published)."""

    def __init__(
        self,
        sessions: SessionFactory,
        sites: SiteRegistry,
        exemptions: ExemptionService | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._sites = sites
        self._exemptions = exemptions
        self._clock = clock

    def check_site(self, site_id: str) -> None:
        if not any(site.id == site_id for site in self._sites.sites):
            raise RegistryError(404, "not_found", f"site {site_id} not found", {"what": site_id})

    def entries(
        self, site_id: str | None = None, plate: str | None = None, limit: int = 1000
    ) -> list[RegistryVehicle]:
        with self._sessions() as session:
            query = select(RegistryVehicle).order_by(RegistryVehicle.site_id, RegistryVehicle.plate)
            if site_id is not None:
                query = query.where(RegistryVehicle.site_id == site_id)
            if plate:
                query = query.where(RegistryVehicle.plate.contains(plate, autoescape=True))
            rows = list(session.scalars(query.limit(limit)))
            session.expunge_all()
            return rows

    def get(self, vehicle_id: str) -> RegistryVehicle:
        with self._sessions() as session:
            row = session.get(RegistryVehicle, vehicle_id)
            if row is None:
                raise RegistryError(404, "not_found", "no such entry", {"what": vehicle_id})
            session.expunge(row)
            return row

    def create(self, vehicle: VehicleIn, actor: str) -> RegistryVehicle:
        self.check_site(vehicle.site_id)
        now = self._clock()
        with self._transaction() as session:
            if self._find(session, vehicle.site_id, vehicle.plate) is not None:
                raise RegistryError(
                    409, "plate_registered", "the plate is registered", {"plate": vehicle.plate}
                )
            self._check_room(session, vehicle.site_id, 1)
            row = self._add(session, vehicle, actor, now)
            append_audit(session, now, actor, "registry_created", row.id, "", _summary(row))
            documents = self._bump(session, vehicle.site_id, now)
            session.flush()
            session.expunge(row)
        self._announce(documents)
        return row

    def update(self, vehicle_id: str, vehicle: VehicleIn, actor: str) -> RegistryVehicle:
        self.check_site(vehicle.site_id)
        now = self._clock()
        with self._transaction() as session:
            row = session.get(RegistryVehicle, vehicle_id, with_for_update=True)
            if row is None:
                raise RegistryError(404, "not_found", "no such entry", {"what": vehicle_id})
            if row.site_id != vehicle.site_id:
                raise RegistryError(
                    422, "invalid_request", "an entry cannot move to another site", {}
                )
            other = self._find(session, vehicle.site_id, vehicle.plate)
            if other is not None and other.id != row.id:
                raise RegistryError(
                    409, "plate_registered", "the plate is registered", {"plate": vehicle.plate}
                )
            changed = _changed(row, vehicle)
            _assign(row, vehicle, actor, now)
            detail = _summary(row) | {"changed": changed}
            append_audit(session, now, actor, "registry_updated", row.id, "", detail)
            documents = self._bump(session, row.site_id, now)
            session.flush()
            session.expunge(row)
        self._announce(documents)
        return row

    def delete(self, vehicle_id: str, actor: str) -> None:
        now = self._clock()
        with self._transaction() as session:
            row = session.get(RegistryVehicle, vehicle_id, with_for_update=True)
            if row is None:
                raise RegistryError(404, "not_found", "no such entry", {"what": vehicle_id})
            append_audit(session, now, actor, "registry_deleted", row.id, "", _summary(row))
            session.delete(row)
            documents = self._bump(session, row.site_id, now)
        self._announce(documents)

    def import_rows(self, site_id: str, rows: Sequence[VehicleIn], actor: str) -> ImportResult:
        """Store every row (a new plate is added, a registered one replaced) in one
        transaction, one audit entry for the import, and one new document per gateway."""
        self.check_site(site_id)
        now = self._clock()
        created = updated = 0
        with self._transaction() as session:
            existing = {  # only the file's plates: the site may hold 100,000
                row.plate: row
                for row in session.scalars(
                    select(RegistryVehicle).where(
                        RegistryVehicle.site_id == site_id,
                        RegistryVehicle.plate.in_([v.plate for v in rows]),
                    )
                )
            }
            fresh = [v for v in rows if v.plate not in existing]
            self._check_room(session, site_id, len(fresh))
            for vehicle in rows:
                row = existing.get(vehicle.plate)
                if row is None:
                    self._add(session, vehicle, actor, now)
                    created += 1
                elif _changed(row, vehicle):
                    _assign(row, vehicle, actor, now)
                    updated += 1
            append_audit(
                session,
                now,
                actor,
                "registry_imported",
                f"registry-{site_id}"[:64],
                "",
                {
                    "site_id": site_id,
                    "created": created,
                    "updated": updated,
                    "plates": sorted(v.plate for v in rows)[:MAX_CSV_ROWS],
                },
            )
            documents = self._bump(session, site_id, now) if created or updated else []
        self._announce(documents)
        return ImportResult(created, updated)

    def rows_for_export(self, site_id: str) -> list[RegistryVehicle]:
        return self.entries(site_id, limit=MAX_PLATES)

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One change's transaction; a unique key another request took meanwhile (the same
        plate registered at the same moment, the audit's next entry) is a 409, never a 500."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise RegistryError(
                409, "conflict", "changed at the same time by another request; try again"
            ) from exc

    def _find(self, session: Session, site_id: str, plate: str) -> RegistryVehicle | None:
        return session.scalars(
            select(RegistryVehicle).where(
                RegistryVehicle.site_id == site_id, RegistryVehicle.plate == plate
            )
        ).first()

    def _check_room(self, session: Session, site_id: str, adding: int) -> None:
        count = session.scalar(
            select(func.count())
            .select_from(RegistryVehicle)
            .where(RegistryVehicle.site_id == site_id)
        )
        if (count or 0) + adding > MAX_PLATES:
            raise RegistryError(
                422, "registry_full", "the site's registry is full", {"limit": MAX_PLATES}
            )

    def _add(
        self, session: Session, vehicle: VehicleIn, actor: str, now: datetime
    ) -> RegistryVehicle:
        row = RegistryVehicle(
            id=f"vehicle-{uuid.uuid4().hex[:20]}",
            site_id=vehicle.site_id,
            created_at=now,
            created_by=actor,
        )
        _assign(row, vehicle, actor, now)
        session.add(row)
        return row

    def _bump(self, session: Session, site_id: str, now: datetime) -> list[SignedDocument]:
        if self._exemptions is None:
            return []
        session.flush()  # the document reads the registry as this transaction leaves it
        return self._exemptions.bump(session, site_id, now)

    def _announce(self, documents: list[SignedDocument]) -> None:
        if self._exemptions is not None:
            self._exemptions.announce(documents)


def _assign(row: RegistryVehicle, vehicle: VehicleIn, actor: str, now: datetime) -> None:
    row.plate = vehicle.plate
    row.category = vehicle.category.value
    row.building = vehicle.building
    row.unit = vehicle.unit
    row.owner_name = vehicle.owner_name
    row.phone = vehicle.phone
    row.updated_at = now
    row.updated_by = actor


def _changed(row: RegistryVehicle, vehicle: VehicleIn) -> list[str]:
    """The fields that differ (names only: the audit never holds a name or a phone)."""
    fields = ("plate", "category", "building", "unit", "owner_name", "phone")
    new = vehicle.model_dump(mode="json")
    return [name for name in fields if getattr(row, name) != new[name]]


def _summary(row: RegistryVehicle) -> dict[str, Any]:
    """What the audit keeps of an entry: no name, no phone."""
    return {"site_id": row.site_id, "plate": row.plate, "category": row.category}
