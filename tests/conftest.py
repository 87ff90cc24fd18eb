"""Fixtures shared by every test: real brokers, real databases, the real detector and footage."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from contracts.mqtt import BrokerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
MODEL_DIR = SHARED / "models" / "yolo11n_int8_openvino_model"
POSTGRES_ADMIN_URL = os.environ.get(
    "CIVICWATCH_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session", autouse=True)
def _ultralytics_offline(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Ultralytics must never reach for the network: offline flag and a config dir with a font."""
    config_dir = tmp_path_factory.mktemp("ultralytics")
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    # Ultralytics looks for the font both at the top and under its Ultralytics/ settings folder.
    for folder in (config_dir, config_dir / "Ultralytics"):
        folder.mkdir(exist_ok=True)
        shutil.copy(font, folder / "Arial.ttf")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)


@pytest.fixture(scope="session")
def model_path() -> Path:
    if not MODEL_DIR.is_dir():
        pytest.fail(f"the test detector is missing: {MODEL_DIR}")
    return MODEL_DIR


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class MosquittoProcess:
    """A private Mosquitto on a free port, with its own config; can be stopped and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"  # as root Mosquitto would drop to 'mosquitto', who cannot write tmp_path
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> BrokerSettings:
        return BrokerSettings(host="127.0.0.1", port=self.port)

    def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (Debian package mosquitto)")
    broker = MosquittoProcess(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


def _postgres_scratch_database(template: str | None = None) -> Generator[str, None, None]:
    """A new database on the test server, dropped afterwards: empty, or a copy of ``template``."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"civicwatch_test_{uuid.uuid4().hex[:10]}"
    copy_of = f' TEMPLATE "{template}"' if template is not None else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    except Exception as exc:  # the suite must say why, not skip silently
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not usable: {exc}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once on SQLite and once on PostgreSQL.

    Where the test's ``session_factory`` fixture (tests/unit/*/conftest.py) migrates it to the
    newest schema first thing, the PostgreSQL one is made straight from the migrated template
    (tests/factories.py) instead of created empty and then replaced by that copy."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'civicwatch.db'}"
    elif "session_factory" in request.fixturenames:
        from tests.factories import postgres_copy_of_migrated_template

        yield from postgres_copy_of_migrated_template()
    else:
        yield from _postgres_scratch_database()
