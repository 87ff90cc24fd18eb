"""Run the product as its users do: `civicwatch server` and `civicwatch replay` as processes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import yaml

from tests.conftest import MODEL_DIR, free_port, wait_for_port

CONFIGS = Path(__file__).resolve().parent / "configs"
DISPATCHER_TOKEN = "e2e-dispatcher-token-000001"
DEPARTMENT_TOKENS = {
    "law_enforcement": "e2e-law-enforcement-token-01",
    "fire_rescue": "e2e-fire-rescue-token-000001",
}
CIVICWATCH = [sys.executable, "-m", "civicwatch.cli"]


@dataclass
class Deployment:
    """One site's config made runnable against a private broker and a scratch database."""

    workdir: Path
    site_config: str
    broker_port: int
    database_url: str
    dwell_seconds: float | None = None  # overrides every zone's dwell
    api_port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        document: dict[str, Any] = yaml.safe_load((CONFIGS / self.site_config).read_text())
        if self.dwell_seconds is not None:
            for site in document["sites"]:
                for gateway in site["gateways"]:
                    for camera in gateway["cameras"]:
                        for zone in camera["zones"]:
                            zone["dwell_seconds"] = self.dwell_seconds
        document["broker"] = {"host": "127.0.0.1", "port": self.broker_port}
        document["edge"] = {
            "data_dir": str(self.workdir / "edge"),
            "resend_after_seconds": 5,
            "detector": {"model": str(MODEL_DIR)},
        }
        document["server"] = {
            "database_url": self.database_url,
            "ingest": {
                "evidence_dir": str(self.workdir / "evidence"),
                "client_id": f"ingest-{self.api_port}",
            },
            "api": {
                "host": "127.0.0.1",
                "port": self.api_port,
                "sla_sweep_seconds": 5,
                "tokens": [
                    {"name": "centre", "role": "dispatcher", "token": DISPATCHER_TOKEN},
                    *(
                        {"name": d, "role": "worker", "department": d, "token": t}
                        for d, t in DEPARTMENT_TOKENS.items()
                    ),
                ],
            },
        }
        self.config_path = self.workdir / "civicwatch.yaml"
        self.config_path.write_text(yaml.safe_dump(document, allow_unicode=True))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.env.pop("CIVICWATCH_MODEL", None)
        self.env.pop("CIVICWATCH_DATABASE_URL", None)

    def start_server(self) -> None:
        log = (self.workdir / "server.log").open("ab")
        self.server = subprocess.Popen(
            [*CIVICWATCH, "server", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        wait_for_port(self.api_port, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz").status_code == 200:
                    return
            except httpx.TimeoutException:  # a first answer slower than 5 s (a loaded machine)
                pass  # is no answer yet: ask again until the deadline, as for a 503
            time.sleep(0.05)
        raise TimeoutError(f"server not ready; log: {self.server_log()}")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=30)
            self.server = None

    def server_log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-4000:]

    def replay_process(
        self, camera: str, source: Path, *extra: str, terminal: bool = False
    ) -> subprocess.Popen[bytes]:
        """`civicwatch replay` with its stderr in replay.log. With ``terminal`` the stderr is a
        pseudo-terminal, as when a person runs it: the replay then also says when the clip has
        ended ("replay: N frames, M events"), which a test can wait for instead of sleeping."""
        log = (self.workdir / "replay.log").open("ab")
        reader, writer = pty.openpty() if terminal else (-1, log.fileno())
        process = subprocess.Popen(
            [
                *CIVICWATCH,
                "replay",
                "--config",
                str(self.config_path),
                "--camera",
                camera,
                "--source",
                str(source),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=writer,
            env=self.env,
        )
        if terminal:
            os.close(writer)  # the child holds its own copy; EOF comes when it exits
            threading.Thread(target=_drain, args=(reader, log), daemon=True).start()
        else:
            log.close()
        return process

    def replay_log(self) -> str:
        return (self.workdir / "replay.log").read_text(errors="replace")

    def replay(self, camera: str, source: Path, *extra: str) -> dict[str, Any]:
        process = self.replay_process(camera, source, *extra)
        out, _ = process.communicate(timeout=900)
        log = self.replay_log()[-4000:]
        assert process.returncode == 0, f"replay exited {process.returncode}: {log}"
        summary: dict[str, Any] = json.loads(out)
        return summary

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def get(self, path: str, token: str = DISPATCHER_TOKEN) -> httpx.Response:
        return httpx.get(
            f"{self.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


def _drain(reader: int, log: BinaryIO) -> None:
    """Copy a pseudo-terminal's output into the log until the process on it exits (a full
    terminal buffer would block the process's writes)."""
    with log:
        while True:
            try:
                chunk = os.read(reader, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            log.write(chunk)
            log.flush()
    os.close(reader)
