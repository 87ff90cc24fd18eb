"""Exemption rules on the server: issue and revoke them, audit every change, and push each
affected gateway its newly signed rule document.

Property management issues and revokes temporary permits (dispatch/http/exemptions.py); the
other rule types (allowlists, family bays, time windows) go through ``issue_rule``. The residents'
vehicle registry (dispatch/registry.py) feeds its plates into every document of its site: a
``registry-resident`` and a ``registry-service`` allowlist, and its family plates added to each
family bay's ``family_plates``; only plates, never a name or a phone. Every change, in the same
transaction:

- the rule row is written (a revoked rule stays, marked, for the record);
- an entry is chained onto the exemption audit (storage.audit.entry_hash: an edited or
  deleted entry breaks the chain, ``verify_exemption_audit`` finds it);
- each gateway of the rule's site gets a new document version (monotonic, per gateway).

Each gateway's document is schema 3 (contracts.exemptions.GatewayRules): its own rules, and the
site registry's plates (identical for every gateway of the site) by SHA-256. Those plates are
serialised, hashed and signed once per change and published on their own, retained on the
site's plates topic (contracts.topics.site_plates_topic), only when they changed, as a
compressed signed frame (contracts.rule_signing.sign_site_plates: ~23 KB for 10,000 plates,
not a 140 KB JSON envelope). When this
process sent the site's plates before, each document also carries the patch from that set
(contracts.rule_signing.plates_patch; none past MAX_PATCH_PLATES): a gateway holding it applies
the patch, any other takes the whole set from the site topic. A registry edit then costs each
gateway the size of the change; a permit change signs 1,000 small documents and no plates.
The set a patch starts from is the one this process sent last or, for a process that sent none
yet (the registry CLI, an API process before its first change), the site's plates as committed
before the change (read on a connection of its own). When that is not the set a gateway holds
(it missed a change, another process changed the plates meanwhile) the hash tells it so and it
takes the whole set, as a new gateway does.

After the commit the publisher signs each affected gateway's document with the server's Ed25519
key and publishes it retained at QoS 1 on the gateway's rules topic; at server start every
gateway's document is published once (a new version each), and after a broker outage the newest
of each is published again on reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from contracts.events import PLATE_PATTERN, Identifier
from contracts.exemptions import (
    GatewayRules,
    PermitRule,
    Rule,
    RuleDocument,
    SitePlates,
    SitePlatesRef,
)
from contracts.mqtt import BrokerSettings, MqttSession, Subscriptions, process_client_id
from contracts.registry_plates import RegistryPlates
from contracts.rule_signing import (
    PlatesPart,
    plates_patch,
    private_key_from_text,
    sign_site_plates,
    sign_text,
    whole_document,
)
from contracts.sites import GatewayConfig, SiteConfig, SiteRegistry
from contracts.topics import rules_topic, site_plates_topic
from dispatch.exemption_settings import KEY_ENV_VAR as KEY_ENV_VAR
from dispatch.exemption_settings import ExemptionSettings as ExemptionSettings
from dispatch.warning_stage import repeat_offenders
from storage.audit import GENESIS_HASH, entry_hash
from storage.database import SessionFactory
from storage.tables import (
    ExemptionAudit,
    ExemptionRuleRow,
    GatewayStatusRow,
    RegistryVehicle,
    RuleDocumentVersion,
    utcnow,
)

log = logging.getLogger(__name__)

_RULE = TypeAdapter[Rule](Rule)
_RULES = TypeAdapter(list[Rule])
_EMPTY_RULES = '"rules":[]'  # where a document serialised without its rules has them


def load_signing_key(
    settings: ExemptionSettings, env_value: str | None
) -> Ed25519PrivateKey | None:
    """The key from the environment's value, else from the file; None when neither is named.
    A named key that cannot be read or parsed raises (OSError, ValueError): the start stops."""
    if env_value:
        return private_key_from_text(env_value)
    if settings.signing_key_file is None:
        return None
    return private_key_from_text(settings.signing_key_file.read_text())


class PermitIn(BaseModel):
    """A temporary permit as property management issues it."""

    model_config = ConfigDict(extra="forbid")

    site_id: Identifier
    zone_id: Identifier | None = None
    plate: str = Field(pattern=PLATE_PATTERN)
    valid_from: AwareDatetime
    valid_to: AwareDatetime
    reason: str = Field(min_length=1, max_length=200)


class RulePublic(BaseModel):
    id: str
    type: str
    site_id: str
    zone_id: str | None
    plate: str | None
    valid_from: datetime
    valid_to: datetime | None
    reason: str
    issued_at: datetime
    issued_by: str
    revoked_at: datetime | None
    revoked_by: str | None


class ExemptionError(Exception):
    def __init__(self, code: str, detail: str, params: dict[str, Any] | None = None) -> None:
        self.code = code
        self.detail = detail
        self.params = params or {}
        super().__init__(detail)


class RuleNotFoundError(ExemptionError):
    pass


def public(row: ExemptionRuleRow) -> RulePublic:
    return RulePublic(
        id=row.id,
        type=row.type,
        site_id=row.site_id,
        zone_id=row.zone_id,
        plate=row.plate,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        reason=row.reason,
        issued_at=row.issued_at,
        issued_by=row.issued_by,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


@dataclass(frozen=True)
class SignedDocument:
    topic: str
    payload: bytes
    version: int
    # A site's plates document carries the set it signs: sent once announced (after the commit).
    plates: PlatesPart | None = None


class ExemptionService:
    """Rules in the database, documents for the gateways; ``on_change`` gets the gateways whose
    documents changed, after the commit (the publisher)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        registry: SiteRegistry,
        signing_key: Ed25519PrivateKey,
        settings: ExemptionSettings | None = None,
        on_change: Callable[[Sequence[SignedDocument]], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = session_factory
        self._registry = registry
        self._key = signing_key
        self._settings = settings or ExemptionSettings()
        self._on_change = on_change
        self._clock = clock
        # The plates last sent per site by this process: the start of the next patch.
        self._plates_sent: dict[str, PlatesPart] = {}
        self._plates_lock = threading.Lock()

    def set_on_change(self, on_change: Callable[[Sequence[SignedDocument]], None]) -> None:
        self._on_change = on_change

    # -- changes -------------------------------------------------------------------------

    def now(self) -> datetime:
        """The service's clock (tests fix it)."""
        return self._clock()

    def issue_permit(self, permit: PermitIn, actor: str) -> RulePublic:
        """Issue a permit; ExemptionError for an unknown site or zone or an end before start."""
        fields = permit.model_dump() | {
            "id": f"permit-{uuid.uuid4().hex[:20]}",
            "issued_at": self._clock(),
        }
        try:
            rule = PermitRule.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ExemptionError(
                "invalid_request",
                f"invalid permit: {first['msg']}",
                {
                    "field": ".".join(str(p) for p in first["loc"]) or "valid_to",
                    "problem": first["msg"],
                },
            ) from exc
        return self.issue_rule(rule, actor)

    def issue_rule(self, rule: Rule, actor: str) -> RulePublic:
        """Store any rule (its id must be new), audit it, and push the new documents."""
        self._check_scope(rule.site_id, rule.zone_id)
        now = self._clock()
        with self._sessions() as session, session.begin():
            if session.get(ExemptionRuleRow, rule.id) is not None:
                raise ExemptionError("conflict", f"rule {rule.id} exists", {"rule_id": rule.id})
            row = ExemptionRuleRow(
                id=rule.id,
                site_id=rule.site_id,
                zone_id=rule.zone_id,
                type=rule.type,
                plate=rule.plate if isinstance(rule, PermitRule) else None,
                valid_from=rule.valid_from,
                valid_to=rule.valid_to,
                reason=rule.reason,
                body=rule.model_dump(mode="json"),
                issued_at=rule.issued_at,
                issued_by=actor,
            )
            session.add(row)
            append_audit(session, now, actor, "issued", rule.id, rule.reason, _summary(rule))
            documents = self._bump(session, rule.site_id, now)
            result = public(row)
        self._announce(documents)
        return result

    def revoke(self, rule_id: str, actor: str, reason: str) -> RulePublic:
        now = self._clock()
        with self._sessions() as session, session.begin():
            row = session.get(ExemptionRuleRow, rule_id, with_for_update=True)
            if row is None:
                raise RuleNotFoundError("not_found", f"rule {rule_id} not found", {"what": rule_id})
            if row.revoked_at is not None:
                raise ExemptionError("conflict", f"rule {rule_id} is already revoked")
            row.revoked_at = now
            row.revoked_by = actor
            append_audit(session, now, actor, "revoked", rule_id, reason, {"type": row.type})
            documents = self._bump(session, row.site_id, now)
            result = public(row)
        self._announce(documents)
        return result

    def list_rules(
        self, site_id: str | None = None, include_revoked: bool = False
    ) -> list[RulePublic]:
        with self._sessions() as session:
            query = select(ExemptionRuleRow).order_by(ExemptionRuleRow.issued_at.desc())
            if site_id is not None:
                query = query.where(ExemptionRuleRow.site_id == site_id)
            if not include_revoked:
                query = query.where(ExemptionRuleRow.revoked_at.is_(None))
            return [public(row) for row in session.scalars(query.limit(1000))]

    def get(self, rule_id: str) -> RulePublic:
        with self._sessions() as session:
            row = session.get(ExemptionRuleRow, rule_id)
            if row is None:
                raise RuleNotFoundError("not_found", f"rule {rule_id} not found", {"what": rule_id})
            return public(row)

    # -- documents -----------------------------------------------------------------------

    def publish_all(self) -> list[SignedDocument]:
        """Every gateway's document, a new version each, and every site's plates (server start,
        the daily republish: a broker that lost its retained messages gets them again)."""
        now = self._clock()
        with self._sessions() as session, session.begin():
            documents = [
                doc
                for site in self._registry.sites
                for doc in self._bump(session, site.id, now, plates_always=True)
            ]
        self._announce(documents)
        return documents

    def document(
        self, session: Session, gateway_id: str, version: int, at: datetime
    ) -> RuleDocument:
        """The rules a gateway runs: its site's unrevoked rules that have not ended, site-wide
        ones and those on the zones of its own cameras."""
        found = self._registry.gateway(gateway_id)
        if found is None:
            raise ValueError(f"unknown gateway {gateway_id!r}")
        site, gateway = found
        rules = self._site_rules(session, site.id, at)
        offenders = self._repeat_offenders(session, site.id, rules, at)
        part = PlatesPart.of(self._site_plates(session, site.id))
        return whole_document(
            self._gateway_document(site, gateway, rules, version, at, part, offenders), part
        )

    def _site_plates(self, session: Session, site_id: str) -> SitePlates:
        """The registry's plates of the site, the part every gateway's document names by hash."""
        plates = registry_plates(session, site_id)
        return SitePlates(
            site_id=site_id,
            changed_at=plates.changed_at,
            resident=list(plates.resident),
            service=list(plates.service),
            family=list(plates.family),
        )

    def _committed_plates(self, site_id: str) -> PlatesPart | None:
        """The site's plates as committed, read on a connection of its own (so without the
        caller's change, still uncommitted); None if that read fails (no patch then)."""
        try:
            with self._sessions() as other:
                return PlatesPart.of(self._site_plates(other, site_id))
        except SQLAlchemyError as exc:
            log.warning("site %s: plates before the change unreadable (%s); no patch", site_id, exc)
            return None

    def _site_rules(self, session: Session, site_id: str, at: datetime) -> list[Rule]:
        """Every rule of the site in force at ``at``, without the registry's plates (they go in
        the site's ``SitePlates``): read once per change, whatever the number of gateways (a
        site may have a thousand)."""
        rows = session.scalars(
            select(ExemptionRuleRow)
            .where(ExemptionRuleRow.site_id == site_id)
            .where(ExemptionRuleRow.revoked_at.is_(None))
            .order_by(ExemptionRuleRow.id)
        )
        return [
            _RULE.validate_python(row.body)
            for row in rows
            if row.valid_to is None or row.valid_to > at
        ]

    def _repeat_offenders(
        self, session: Session, site_id: str, rules: list[Rule], at: datetime
    ) -> list[str]:
        """The site's plates warned K times in D days (dispatch.warning_stage), once a build."""
        floor = self._settings.plate_confidence_floor
        return repeat_offenders(session, site_id, rules, at, floor)

    def _gateway_document(
        self,
        site: SiteConfig,
        gateway: GatewayConfig,
        site_rules: list[Rule],
        version: int,
        at: datetime,
        part: PlatesPart | SitePlatesRef,
        offenders: Sequence[str] = (),
    ) -> GatewayRules:
        # The gateway merges the plates in with with_registry, which keeps each rule's zone and
        # adds site-wide allowlists only: filtering by its zones here gives what filtering the
        # whole set would.
        reference = part if isinstance(part, SitePlatesRef) else SitePlatesRef(sha256=part.sha256)
        zones = {zone.id for camera in gateway.cameras for zone in camera.zones}
        return GatewayRules(
            site_id=site.id,
            gateway_id=gateway.id,
            version=version,
            issued_at=at,
            plate_confidence_floor=self._settings.plate_confidence_floor,
            rules=[rule for rule in site_rules if rule.zone_id is None or rule.zone_id in zones],
            repeat_offenders=list(offenders),
            site_plates=reference,
        )

    def bump(self, session: Session, site_id: str, at: datetime) -> list[SignedDocument]:
        """A new document version for every gateway of the site, inside the caller's
        transaction (the registry's changes); ``announce`` them after the commit."""
        return self._bump(session, site_id, at)

    def announce(self, documents: Sequence[SignedDocument]) -> None:
        self._announce(documents)

    def _bump(
        self, session: Session, site_id: str, at: datetime, plates_always: bool = False
    ) -> list[SignedDocument]:
        site = next(s for s in self._registry.sites if s.id == site_id)
        ids = [gateway.id for gateway in site.gateways]
        # One locking read for the site's version rows, not one per gateway.
        rows = {
            row.gateway_id: row
            for row in session.scalars(
                select(RuleDocumentVersion)
                .where(RuleDocumentVersion.gateway_id.in_(ids))
                .with_for_update()
            )
        }
        site_rules = self._site_rules(session, site.id, at)
        offenders = self._repeat_offenders(session, site.id, site_rules, at)
        part = PlatesPart.of(self._site_plates(session, site.id))  # once for every gateway
        with self._plates_lock:
            sent = self._plates_sent.get(site.id)
        signed = []
        if plates_always or sent is None or sent.sha256 != part.sha256:
            # The site's plates, signed once, ahead of the documents naming them (one
            # connection keeps the order: retained before any gateway asks).
            signed.append(
                SignedDocument(
                    site_plates_topic(site.id),
                    sign_site_plates(part, self._key),
                    max((row.version + 1 for row in rows.values()), default=1),
                    plates=part,
                )
            )
        # The patch starts from the plates this process sent last; a process that sent none
        # (the registry CLI, an API process before its first change) starts from the plates
        # as committed before this change, what the gateways hold when they missed nothing.
        base = sent if sent is not None or plates_always else self._committed_plates(site.id)
        patch = (
            plates_patch(base, part) if base is not None and base.sha256 != part.sha256 else None
        )
        reference = SitePlatesRef(sha256=part.sha256, patch=patch)
        # Gateways with the same zones run the same rules: serialise them once per set, not
        # once per gateway, and compose each gateway's document around them. The signature
        # covers the exact text, and through its hash the site's plates.
        rules_json: dict[tuple[str, ...], str] = {}
        for gateway in site.gateways:
            row = rows.get(gateway.id)
            if row is None:
                row = RuleDocumentVersion(gateway_id=gateway.id, version=0, issued_at=at)
                session.add(row)
            row.version += 1
            row.issued_at = at
            document = self._gateway_document(
                site, gateway, site_rules, row.version, at, reference, offenders
            )
            key = tuple(rule.id for rule in document.rules)
            if key not in rules_json:
                rules_json[key] = _RULES.dump_json(document.rules).decode()
            shell = document.model_copy(update={"rules": []}).model_dump_json()
            text = shell.replace(_EMPTY_RULES, f'"rules":{rules_json[key]}', 1)
            signed.append(
                SignedDocument(
                    rules_topic(site.id, gateway.id), sign_text(text, self._key), row.version
                )
            )
        session.flush()
        return signed

    def _announce(self, documents: Sequence[SignedDocument]) -> None:
        # Only a committed change's plates start the next patch: a transaction that rolled
        # back after its bump never announced, and the gateways never saw its plates.
        with self._plates_lock:
            for document in documents:
                if document.plates is not None:
                    self._plates_sent[document.plates.plates.site_id] = document.plates
        if documents and self._on_change is not None:
            self._on_change(documents)

    def _check_scope(self, site_id: str, zone_id: str | None) -> None:
        site = next((s for s in self._registry.sites if s.id == site_id), None)
        if site is None:
            raise ExemptionError("not_found", f"site {site_id} not found", {"what": site_id})
        if zone_id is None:
            return
        zones = {z.id for g in site.gateways for c in g.cameras for z in c.zones}
        if zone_id not in zones:
            raise ExemptionError(
                "not_found", f"zone {zone_id} not found on site {site_id}", {"what": zone_id}
            )


def append_audit(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    rule_id: str,
    reason: str,
    detail: dict[str, Any],
) -> None:
    """Chain an entry onto the exemption audit (rules, permits and the registry's changes)."""
    last = session.scalars(
        select(ExemptionAudit).order_by(ExemptionAudit.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS_HASH if last is None else last.entry_hash
    detail = {**detail, "rule_id": rule_id}
    entry = {
        "seq": seq,
        "case_id": None,
        "action": action,
        "from_state": None,
        "to_state": "",
        "actor": actor,
        "reason": reason,
        "at": at,
        "detail": detail,
    }
    session.add(
        ExemptionAudit(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            rule_id=rule_id,
            reason=reason,
            detail=detail,
            prev_hash=prev,
            entry_hash=entry_hash(entry, prev),
        )
    )


def registry_plates(session: Session, site_id: str) -> RegistryPlates:
    rows = session.execute(
        select(RegistryVehicle.plate, RegistryVehicle.category, RegistryVehicle.updated_at)
        .where(RegistryVehicle.site_id == site_id)
        .order_by(RegistryVehicle.plate)
    ).all()
    return RegistryPlates.of([(plate, category, at) for plate, category, at in rows])


def _summary(rule: Rule) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "type": rule.type,
        "site_id": rule.site_id,
        "zone_id": rule.zone_id,
        "valid_from": rule.valid_from.isoformat(),
        "valid_to": rule.valid_to.isoformat() if rule.valid_to is not None else None,
    }
    if isinstance(rule, PermitRule):
        summary["plate"] = rule.plate
    return summary


def verify_exemption_audit(session: Session) -> list[int]:
    """The seqs whose entry no longer matches its hash or its predecessor; empty: intact."""
    broken: list[int] = []
    prev = GENESIS_HASH
    expected_seq = 1
    for row in session.scalars(select(ExemptionAudit).order_by(ExemptionAudit.seq)):
        entry = {
            "seq": row.seq,
            "case_id": None,
            "action": row.action,
            "from_state": None,
            "to_state": "",
            "actor": row.actor,
            "reason": row.reason,
            "at": row.at,
            "detail": row.detail,
        }
        if (
            row.seq != expected_seq
            or row.prev_hash != prev
            or entry_hash(entry, prev) != row.entry_hash
        ):
            broken.append(row.seq)
        prev = row.entry_hash
        expected_seq = row.seq + 1
    return broken


class RulePublisher:
    """Publishes each gateway's newest signed document, retained, QoS 1; again on reconnect."""

    def __init__(self, broker: BrokerSettings, timeout_seconds: float = 5.0) -> None:
        self._latest: dict[str, SignedDocument] = {}
        self._lock = threading.Lock()
        self._timeout = timeout_seconds
        self.published = 0
        self.failures = 0
        self._session = MqttSession(
            broker,
            process_client_id("civicwatch-rules"),
            on_connected=self._on_connected,
        )

    def start(self) -> None:
        self._session.start()

    def stop(self) -> None:
        self._session.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._session.connected.wait(timeout)

    def publish(self, documents: Sequence[SignedDocument]) -> None:
        """Keep each as its gateway's newest, and send it now if connected."""
        with self._lock:
            fresh = []
            for document in documents:
                current = self._latest.get(document.topic)
                if current is None or document.version >= current.version:
                    self._latest[document.topic] = document
                    fresh.append(document)
        if self._session.connected.is_set():
            self._send(fresh)

    def _on_connected(self, _subscribed: Subscriptions) -> None:
        with self._lock:
            documents = list(self._latest.values())
        for document in documents:
            self._session.publish(document.topic, document.payload, qos=1, retain=True)

    def _send(self, documents: Sequence[SignedDocument]) -> None:
        """Hand every document to the client, then wait for their PUBACKs: a site's thousand
        gateways cost one round trip's wait, not a thousand in a row."""
        sent = [
            (document, self._session.publish(document.topic, document.payload, qos=1, retain=True))
            for document in documents
        ]
        deadline = time.monotonic() + self._timeout
        for document, info in sent:
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.001))
            except (RuntimeError, ValueError) as exc:
                self.failures += 1
                log.warning("rule document for %s not published: %s", document.topic, exc)
                continue
            if info.is_published():
                self.published += 1
            else:
                self.failures += 1
                log.warning("rule document for %s: no PUBACK in %gs", document.topic, self._timeout)


@dataclass
class Exemptions:
    """What the composition root runs: the service the API uses and the publisher it feeds."""

    service: ExemptionService
    publisher: RulePublisher

    def start(self) -> None:
        """Connect. Every gateway's document is published by the sweep's leader
        (``service.publish_all``, a scheduled job), and on each change by the process making it."""
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()


def build_exemptions(
    session_factory: SessionFactory,
    registry: SiteRegistry,
    broker: BrokerSettings,
    settings: ExemptionSettings,
    env_value: str | None,
) -> Exemptions | None:
    """None (logged) when no signing key is named: permits are refused, gateways get nothing."""
    key = load_signing_key(settings, env_value)
    if key is None:
        log.warning(
            "exemptions are off: no rules signing key (set %s or server.exemptions."
            "signing_key_file); permit routes answer 404",
            KEY_ENV_VAR,
        )
        return None
    publisher = RulePublisher(broker)
    service = ExemptionService(
        session_factory, registry, key, settings, on_change=publisher.publish
    )
    return Exemptions(service, publisher)


class GatewayVersion(BaseModel):
    """A gateway's running rule document against the newest the server signed for it."""

    site_id: str
    gateway_id: str
    latest_version: int | None = Field(description="the newest signed; None: none yet")
    running_version: int | None = Field(description="from its retained status; None: unknown")
    state: str | None = Field(description="its last reported state (online, offline, ...)")
    reported_at: datetime | None
    behind: bool = Field(description="it runs an older version than the newest, or none")


def gateway_versions(session: Session, registry: SiteRegistry) -> list[GatewayVersion]:
    """Every configured gateway, in site order: ``behind`` when the server signed a version
    it does not report running (a gateway that never reported one is behind too)."""
    query = select(RuleDocumentVersion.gateway_id, RuleDocumentVersion.version)
    latest: dict[str, int] = {gateway: version for gateway, version in session.execute(query)}
    status = {row.gateway_id: row for row in session.scalars(select(GatewayStatusRow))}
    out = []
    for site in registry.sites:
        for gateway in site.gateways:
            signed = latest.get(gateway.id)
            row = status.get(gateway.id)
            running = row.rules_version if row is not None else None
            out.append(
                GatewayVersion(
                    site_id=site.id,
                    gateway_id=gateway.id,
                    latest_version=signed,
                    running_version=running,
                    state=row.state if row is not None else None,
                    reported_at=row.received_at if row is not None else None,
                    behind=signed is not None and (running is None or running < signed),
                )
            )
    return out
