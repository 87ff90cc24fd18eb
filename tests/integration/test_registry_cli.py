"""`civicwatch registry import|export|list` through the CLI entry point (SQLite and PostgreSQL,
a real Mosquitto): an import is stored, on the audit chain and pushed signed to a real gateway,
which then exempts the plate; list masks names and phones; export writes the CSV; a bad file,
bad rows, an unknown or unnamed site, a missing file and an unreachable broker are each one
line in English and Chinese with their exit code, never a traceback, and bad rows store
nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from civicwatch.cli import main
from civicwatch.exit_codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_REGISTRY
from contracts.exemptions import StayHistory
from contracts.rule_signing import generate_key_pair, public_key_from_text
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from edge.rule_store import RuleStore
from storage.database import make_engine, make_session_factory
from storage.tables import ExemptionAudit, RegistryVehicle, utcnow
from tests.conftest import MosquittoProcess, free_port
from tests.factories import GATEWAY, PARKING_ZONE, SITE, make_registry

PRIVATE, PUBLIC = generate_key_pair()
HEADER = "plate,category,building,unit,owner_name,phone\r\n"
GOOD = (
    HEADER
    + "沪A12345,resident,3号楼,2-301,张三丰,13812341234\r\n沪B54321,service,,,李四,021-12345678\r\n"
)
NAME, PHONE = "张三丰", "13812341234"


def write_config(tmp_path: Path, database_url: str, broker_port: int) -> Path:
    key = tmp_path / "rules.key"
    key.write_text(PRIVATE)
    config = {
        "sites": [site.model_dump(mode="json") for site in make_registry().sites],
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "server": {
            "database_url": database_url,
            "ingest": {"evidence_dir": str(tmp_path / "evidence")},
            "exemptions": {"signing_key_file": str(key)},
        },
    }
    path = tmp_path / "civicwatch.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


@pytest.fixture
def config(
    tmp_path: Path, database_url: str, mosquitto: MosquittoProcess, monkeypatch: pytest.MonkeyPatch
) -> Path:
    for name in ("CIVICWATCH_DATABASE_URL", "CIVICWATCH_RULES_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    return write_config(tmp_path, database_url, mosquitto.port)


def stored(database_url: str) -> tuple[int, int]:
    """Registry entries and exemption audit entries in the database."""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.scalar(select(func.count()).select_from(RegistryVehicle))
            audit = session.scalar(select(func.count()).select_from(ExemptionAudit))
            return int(rows or 0), int(audit or 0)
    finally:
        engine.dispose()


def one_refusal(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("civicwatch:")]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0], captured.out


def test_import_reaches_a_real_gateway_then_list_and_export(
    config: Path,
    database_url: str,
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = make_registry().gateway(GATEWAY)
    assert found is not None
    site, gateway_config = found
    rules = RuleStore(tmp_path / "rules.json", public_key_from_text(PUBLIC), site, GATEWAY)
    gateway = EdgePublisher(
        mosquitto.settings, SITE, GATEWAY, Outbox(tmp_path / "outbox.sqlite"), 5, rules=rules
    )
    zone = gateway_config.cameras[0].zone(PARKING_ZONE)
    assert zone is not None
    source = tmp_path / "registry.csv"
    source.write_bytes(GOOD.encode("utf-8-sig"))
    gateway.start()
    try:
        assert (
            main(["registry", "import", str(source), "--config", str(config), "--site", SITE]) == 0
        )
        assert "2 rows, 2 created, 0 updated" in capsys.readouterr().out
        deadline = time.monotonic() + 10
        while not rules.decide("沪A12345", 0.95, zone, utcnow(), StayHistory(utcnow())).exempt:
            assert time.monotonic() < deadline, "the pushed document never exempted the plate"
            time.sleep(0.05)
    finally:
        gateway.stop()
    assert stored(database_url) == (2, 1)  # one audit entry for the import

    assert main(["registry", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "沪A12345\tresident\t3号楼-2-301\t张**\t138****1234" in listed
    assert NAME not in listed
    assert PHONE not in listed

    out = tmp_path / "export.csv"
    assert (
        main(["registry", "export", "--config", str(config), "--site", SITE, "--out", str(out)])
        == 0
    )
    exported = out.read_bytes().decode("utf-8-sig")
    assert exported.splitlines()[0] == "site_id,plate,category,building,unit,owner_name,phone"
    assert f"{SITE},沪A12345,resident,3号楼,2-301,{NAME},{PHONE}" in exported
    assert main(["registry", "export", "--config", str(config), "--site", SITE]) == 0
    assert "沪B54321" in capsys.readouterr().out


def test_refusals_are_one_bilingual_line_with_their_exit_code(
    config: Path, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(config)]) == 0  # refusals store nothing: not even
    capsys.readouterr()  # the schema, which stored() below needs
    bad_rows = tmp_path / "bad.csv"
    bad_rows.write_text(
        HEADER + "沪A12345,resident,,,张三,12\r\nAB-1,resident,,,=cmd,13812341234\r\n"
    )
    run = ["--config", str(config), "--site", SITE]
    assert main(["registry", "import", str(bad_rows), *run]) == EXIT_REGISTRY
    line, out = one_refusal(capsys)
    assert "3 of 2 rows are wrong; nothing was imported" in line
    assert "未导入任何数据" in line
    assert "row 2 / 第2行, phone: bad_phone" in out
    assert "row 3 / 第3行, plate: bad_plate" in out
    assert "'=cmd" in out  # the cell made safe to show
    assert stored(database_url)[0] == 0

    bad_header = tmp_path / "header.csv"
    bad_header.write_text("plate,name\r\n沪A12345,x\r\n")
    assert main(["registry", "import", str(bad_header), *run]) == EXIT_REGISTRY
    line, _ = one_refusal(capsys)
    assert "The first line must be exactly" in line
    assert " / " in line

    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    two_sites = ["registry", "import", str(good), "--config", str(config)]
    assert main(two_sites) == EXIT_CONFIG  # make_registry has two sites: name one
    line, _ = one_refusal(capsys)
    assert "--site" in line
    assert "请用 --site 指定" in line
    assert main([*two_sites, "--site", "nowhere"]) == EXIT_CONFIG
    assert "配置中没有小区" in one_refusal(capsys)[0]
    assert main(["registry", "import", str(tmp_path / "missing.csv"), *run]) == EXIT_CONFIG
    assert "找不到文件" in one_refusal(capsys)[0]
    assert main(["registry", "export", "--config", str(config), "--site", "nowhere"]) == EXIT_CONFIG
    one_refusal(capsys)
    assert stored(database_url) == (0, 0)


def test_an_unreachable_broker_stores_and_says_not_pushed(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, database_url, free_port())  # nothing listens there
    source = tmp_path / "registry.csv"
    source.write_text(GOOD)
    assert (
        main(["registry", "import", str(source), "--config", str(config), "--site", SITE])
        == EXIT_FAILURE
    )
    line, out = one_refusal(capsys)
    assert "not pushed" in line
    assert "未推送" in line
    assert "2 created" in out
    assert stored(database_url) == (2, 1)
