"""The whole YAML config: one file for a site's gateways and its server.

Loading validates it against pydantic models and reports each error with the file, the line
and the dotted path of the field, e.g.
``configs/x.yaml:14: sites.0.gateways.0.cameras.0.zones.1.dwell_seconds: ...``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from contracts.mqtt import BrokerSettings
from contracts.sites import SiteRegistry
from dispatch.config import (
    TOKEN_ADVICE,
    ApiSettings,
    ResidentSettings,
    RoutingSettings,
    SlaSettings,
    VerificationSettings,
    token_weakness,
)
from dispatch.exemption_settings import ExemptionSettings
from dispatch.notification_settings import NotificationSettings
from edge.config import MODEL_ENV_VAR, EdgeSettings
from ingest.config import IngestSettings

# Deployments (compose, systemd) set these instead of editing the shared site file.
ENVIRONMENT_OVERRIDES: dict[str, tuple[str, ...]] = {
    MODEL_ENV_VAR: ("edge", "detector", "model"),
    "CIVICWATCH_DATABASE_URL": ("server", "database_url"),
    "CIVICWATCH_BROKER_HOST": ("broker", "host"),
    "CIVICWATCH_BROKER_PORT": ("broker", "port"),
    "CIVICWATCH_BROKER_USERNAME": ("broker", "username"),
    "CIVICWATCH_BROKER_PASSWORD": ("broker", "password"),
    "CIVICWATCH_API_HOST": ("server", "api", "host"),
    "CIVICWATCH_API_PORT": ("server", "api", "port"),
}


class RetentionSettings(BaseModel):
    """How long personal data in evidence is kept (storage/evidence_retention.py)."""

    model_config = ConfigDict(extra="forbid")

    evidence_days: int | None = Field(
        default=180,
        ge=1,
        le=36500,
        description=(
            "days a closed case's evidence images (and its residents' report photos) are kept "
            "after it closed; then the sweep leader removes them. Cases not closed keep theirs. "
            "0 is refused (it would remove evidence the moment a case closes); null keeps "
            "evidence for good"
        ),
    )
    job_seconds: float = Field(
        default=3600.0, ge=60, description="how often the sweep leader runs the retention job"
    )
    case_batch: int = Field(
        default=100, ge=1, le=1000, description="cases whose evidence goes in one transaction"
    )


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = Field(
        default="sqlite:///var/civicwatch.db",
        description=(
            "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB; $CIVICWATCH_DATABASE_URL wins"
        ),
    )
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    residents: ResidentSettings = Field(default_factory=ResidentSettings)
    exemptions: ExemptionSettings = Field(
        default_factory=ExemptionSettings, description="signed rule documents for the gateways"
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="the evidence retention period"
    )
    training_data_dir: Path | None = Field(
        default=None,
        description=(
            "where false alarms' and kind changes' close-ups are written as YOLO data, a folder"
            " per camera; default: training-data beside server.ingest.evidence_dir"
        ),
    )

    @property
    def training_data_folder(self) -> Path:
        if self.training_data_dir is not None:
            return self.training_data_dir
        return self.ingest.evidence_dir.parent / "training-data"


# Secrets that ship in examples; a production deployment must replace every one.
PLACEHOLDER_SECRET_MARKERS = ("dev-", "example", "change-me", "changeme")


class CivicwatchConfig(SiteRegistry):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production refuses the example tokens and passwords",
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @model_validator(mode="after")
    def _sites_name_known_time_zones(self) -> CivicwatchConfig:
        # Time-of-day routing rules read the site's zone; a typo must fail at load, not at routing.
        for site in self.sites:
            try:
                ZoneInfo(site.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"site {site.id}: unknown time zone {site.timezone!r}") from exc
        return self

    @model_validator(mode="after")
    def _routing_names_known_places(self) -> CivicwatchConfig:
        # A typo in a rule would otherwise make it silently never match.
        sites = {site.id for site in self.sites}
        zones = {
            zone.id
            for site in self.sites
            for gateway in site.gateways
            for camera in gateway.cameras
            for zone in camera.zones
        }
        for number, rule in enumerate(self.server.routing.rules, start=1):  # as dispatch counts
            if rule.site_id is not None and rule.site_id not in sites:
                raise ValueError(f"routing rule #{number} names unknown site {rule.site_id!r}")
            if rule.zone_id is not None and rule.zone_id not in zones:
                raise ValueError(f"routing rule #{number} names unknown zone {rule.zone_id!r}")
        return self

    @model_validator(mode="after")
    def _residents_name_known_sites(self) -> CivicwatchConfig:
        # Each unknown site is refused at its own line, like a typo in a routing rule.
        sites = {site.id for site in self.sites}
        residents = self.server.residents
        problems = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_site",
                    "tier rule #{number} names unknown site {site}",
                    {"number": index + 1, "site": site},
                ),
                loc=("server", "residents", "tier_rules", index, "sites"),
                input=site,
            )
            for index, rule in enumerate(residents.tier_rules)
            for site in rule.sites or ()
            if site not in sites
        ]
        problems.extend(
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_site", "buildings named for unknown site {site}", {"site": site}
                ),
                loc=("server", "residents", "buildings", site),
                input=site,
            )
            for site in residents.buildings
            if site not in sites
        )
        if problems:
            raise ValidationError.from_exception_data("CivicwatchConfig", problems)
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> CivicwatchConfig:
        if self.environment != "production":
            return self
        # Each weak token is refused at its own line.
        problems = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "weak_token",
                    "production refuses the token of {name}: {why}; {advice}",
                    {"name": token.name, "why": why, "advice": TOKEN_ADVICE},
                ),
                loc=("server", "api", "tokens", index, "token"),
                input=token.name,
            )
            for index, token in enumerate(self.server.api.tokens)
            if (why := token_weakness(token.token.get_secret_value())) is not None
        ]
        refusals = []
        if self.server.api.accounts.dev_users:
            # Their passwords are in the (shared) config file: no default login outside development.
            refusals.append(
                "server.api.accounts.dev_users (create accounts with `civicwatch user add`)"
            )
        secrets: dict[str, SecretStr] = {}
        if self.broker.password is not None:
            secrets["broker.password"] = self.broker.password
        for hook in self.server.notifications.webhooks:
            secrets[f"server.notifications.webhooks[{hook.department}: {hook.url}]"] = hook.secret
        placeholders = [
            where
            for where, secret in secrets.items()
            if any(m in secret.get_secret_value().lower() for m in PLACEHOLDER_SECRET_MARKERS)
        ]
        if placeholders:
            refusals.append("example secrets; replace " + ", ".join(placeholders))
        if refusals and not problems:
            raise ValueError("production refuses " + "; and ".join(refusals))
        if refusals:
            problems.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "production_refusal",
                        "production refuses {what}",
                        {"what": "; and ".join(refusals)},
                    ),
                    loc=(),
                    input=self.environment,
                )
            )
        if problems:
            raise ValidationError.from_exception_data("CivicwatchConfig", problems)
        return self


class ConfigError(Exception):
    """A config that cannot be used; ``str()`` lists every problem, one per line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> CivicwatchConfig:
    """Read, validate and apply environment overrides. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}: invalid YAML: {problem}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path}:1: the config must be a mapping of sections"])
    from_environment = _apply_environment(data, environ)
    try:
        return CivicwatchConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = _line_of(root, loc)
            field = ".".join(str(part) for part in loc) or "(top level)"
            variable = from_environment.get(tuple(str(part) for part in loc))
            source = f" (from ${variable})" if variable else ""
            problems.append(f"{path}:{line}: {field}: {error['msg']}{source}")
        raise ConfigError(path, problems) from exc


def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    """Write set variables into the document; returns field path -> variable for error messages."""
    applied: dict[tuple[str, ...], str] = {}
    for variable, path in ENVIRONMENT_OVERRIDES.items():
        value = environ.get(variable)
        if not value:
            continue
        section = data
        for key in path[:-1]:
            child = section.get(key)
            if not isinstance(child, dict):
                child = {}
                section[key] = child
            section = child
        section[path[-1]] = value
        applied[path] = variable
    return applied


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """1-based line of the deepest YAML node on ``loc`` that exists."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
