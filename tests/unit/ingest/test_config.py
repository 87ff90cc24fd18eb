"""Ingest settings refuse combinations that would silently do the wrong thing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from civicwatch.mqtt_identity import resolve_ingest
from civicwatch.server import worker_client_ids
from ingest.config import IngestSettings


def test_the_servers_workers_share_the_deployments_group() -> None:
    settings = resolve_ingest(IngestSettings(workers=2, deployment="staging"), "sqlite:///x.db")
    assert settings.shared_group == "civicwatch-staging"


def test_each_worker_has_its_own_stable_client_id() -> None:
    assert worker_client_ids(IngestSettings(client_id="ingest")) == ["ingest"]
    settings = IngestSettings(client_id="ingest", workers=3, shared_group="ingest")
    assert worker_client_ids(settings) == ["ingest-1", "ingest-2", "ingest-3"]


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        IngestSettings.model_validate({"worker": 2})
