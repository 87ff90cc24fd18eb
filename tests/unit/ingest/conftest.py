from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.database import SessionFactory
from tests.factories import migrated_database


@pytest.fixture
def session_factory(database_url: str) -> Iterator[SessionFactory]:
    with migrated_database(database_url) as (_engine, sessions):
        yield sessions
