"""Who the server is on the broker: its deployment, its ingest client ids and its group.

Two processes with one client id kick each other off, and with a persistent session the
newcomer takes over the other's queued messages. Two deployments in one shared-subscription
group split each other's events. So:

- the deployment is named in the config, or derived from the database URL: servers that write
  to one database are one deployment, servers with different databases are not;
- ingest keeps a persistent session, so its id must survive restarts: it is derived from the
  deployment and the host (worker N adds ``-N``), never random;
- the deployment's ingest workers, in any process, share the group ``civicwatch-{deployment}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import make_url

from contracts.mqtt import host_name
from ingest.config import IngestSettings


def derived_deployment(database_url: str) -> str:
    """A short, stable name for the installation that writes to ``database_url``."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # A SQLite file serves one machine: the host and the file's path name the installation.
        path = Path(url.database or "").resolve() if url.database else "memory"
        identity = f"sqlite:{host_name()}:{path}"
    else:  # the same database, wherever the server runs; never the password
        identity = url.set(password=None).render_as_string(hide_password=False)
    return "db" + hashlib.sha256(identity.encode()).hexdigest()[:10]


def resolve_ingest(settings: IngestSettings, database_url: str) -> IngestSettings:
    """``settings`` with the deployment, the stable client id and the group filled in."""
    deployment = settings.deployment or derived_deployment(database_url)
    return settings.model_copy(
        update={
            "deployment": deployment,
            "client_id": settings.client_id or f"civicwatch-ingest-{deployment}-{host_name()}",
            "shared_group": settings.shared_group or f"civicwatch-{deployment}",
        }
    )
