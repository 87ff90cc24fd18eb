from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MosquittoProcess
from tests.e2e.harness import Deployment
from tests.factories import start_from_migrated_template


@pytest.fixture
def deploy(
    tmp_path: Path, mosquitto: MosquittoProcess, database_url: str
) -> Iterator[list[Deployment]]:
    """Deployments made by a test; their servers are stopped at the end.

    The scratch database starts as a copy of the one the real migrations brought to head once per
    test process (tests/factories.py): `civicwatch server` finds it current instead of migrating
    it again (one to two seconds a server). The migrations are proven in tests/integration."""
    start_from_migrated_template(database_url)
    made: list[Deployment] = []
    yield made
    for deployment in made:
        deployment.stop_server()
