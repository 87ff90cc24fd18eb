from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MosquittoProcess
from tests.e2e.harness import Deployment


@pytest.fixture
def deploy(
    tmp_path: Path, mosquitto: MosquittoProcess, database_url: str
) -> Iterator[list[Deployment]]:
    """Deployments made by a test; their servers are stopped at the end."""
    made: list[Deployment] = []
    yield made
    for deployment in made:
        deployment.stop_server()
