"""The repository's shape is tested: the dependency rule and the published contract.

Data flows edge -> contracts -> ingest -> dispatch. import-linter checks the static imports
(contracts in pyproject.toml); the subprocess tests catch what static analysis cannot: a
third-party package that drags server code in. docs/asyncapi.yaml must name the topics
and messages that contracts/ defines.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from contracts.acks import IngestAck
from contracts.announce import Announcement, announce_topic
from contracts.events import ViolationEvent
from contracts.status import CameraStatus, GatewayStatus
from contracts.topics import (
    ack_topic,
    camera_status_topic,
    gateway_status_topic,
    rules_topic,
    site_plates_topic,
    verify_result_topic,
    verify_topic,
    violation_topic,
)
from contracts.verification import VerificationRequest, VerificationResult
from tests.conftest import REPO_ROOT

ASYNCAPI = REPO_ROOT / "docs" / "asyncapi.yaml"
REGENERATE = "run civicwatch schema --out docs/schema"

SERVER_ONLY = ("fastapi", "sqlalchemy", "apscheduler", "alembic", "uvicorn", "starlette")
OUR_SERVER_SIDE = ("storage", "ingest", "dispatch", "civicwatch")
DETECTION_STACK = ("edge", "cv2", "numpy", "ultralytics", "torch")

# Imports each module named on the command line in turn and reports, per module, the
# forbidden top-level packages that appeared in sys.modules because of it.
_PROBE = """
import importlib, json, sys
forbidden = set(json.loads(sys.argv[1]))
seen = set()
report = {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    loaded = {m.partition(".")[0] for m in sys.modules} & forbidden
    if loaded - seen:
        report[name] = sorted(loaded - seen)
    seen |= loaded
print(json.dumps(report))
"""


def _modules(package: str) -> Iterator[str]:
    """The package and every module under it, found on disk without importing them."""
    yield package

    def walk(path: Path, prefix: str) -> Iterator[str]:
        for info in pkgutil.iter_modules([str(path)]):
            if info.name == "__main__":
                continue
            yield prefix + info.name
            if info.ispkg:
                yield from walk(path / info.name, prefix + info.name + ".")

    yield from walk(REPO_ROOT / package, package + ".")


def _imports_pulling(modules: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(forbidden), *modules],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"importing {modules} failed:\n{result.stderr}"
    report: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.is_file():
        pytest.fail(f"import-linter is not installed next to {sys.executable} (extra 'dev')")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def test_contracts_need_neither_server_nor_detection_code() -> None:
    modules = list(_modules("contracts"))
    assert "contracts.events" in modules
    assert _imports_pulling(modules, SERVER_ONLY + OUR_SERVER_SIDE + DETECTION_STACK) == {}


def test_edge_imports_no_server_code() -> None:
    modules = list(_modules("edge"))
    assert "edge.config" in modules
    assert _imports_pulling(modules, SERVER_ONLY + OUR_SERVER_SIDE) == {}


def test_a_gateway_install_runs_the_cli_without_server_libraries() -> None:
    """`civicwatch edge` and `replay` load the config and the CLI; a gateway has no server extra."""
    modules = ["civicwatch.cli", "civicwatch.config", "ingest.config", "dispatch.config"]
    assert _imports_pulling(modules, SERVER_ONLY) == {}


# AsyncAPI channel -> the topic contracts/ builds for it, with the parameters left in braces.
_CHANNEL_TOPICS = {
    "violation": violation_topic("{site}", "{gateway}", "{camera}"),
    "cameraStatus": camera_status_topic("{site}", "{gateway}", "{camera}"),
    "gatewayStatus": gateway_status_topic("{site}", "{gateway}"),
    "ack": ack_topic("{site}", "{gateway}"),
    "verify": verify_topic("{site}", "{gateway}", "{camera}"),
    "verifyResult": verify_result_topic("{site}", "{gateway}", "{camera}"),
    "rules": rules_topic("{site}", "{gateway}"),
    "sitePlates": site_plates_topic("{site}"),
    "announce": announce_topic("{site}", "{gateway}"),
}
_MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "ViolationEvent": ViolationEvent,
    "CameraStatus": CameraStatus,
    "GatewayStatus": GatewayStatus,
    "IngestAck": IngestAck,
    "VerificationRequest": VerificationRequest,
    "VerificationResult": VerificationResult,
    "Announcement": Announcement,
}


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, object]:
    document = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_asyncapi_channels_are_the_contract_topics(asyncapi: dict[str, object]) -> None:
    channels = asyncapi["channels"]
    assert isinstance(channels, dict)
    addresses = {name: channel["address"] for name, channel in channels.items()}
    assert addresses == _CHANNEL_TOPICS
    for name, channel in channels.items():
        placeholders = {part[1:-1] for part in channel["address"].split("/") if "{" in part}
        assert set(channel["parameters"]) == placeholders, name


@pytest.mark.parametrize("message", sorted(_MESSAGE_MODELS))
def test_asyncapi_message_schemas_match_the_models(
    asyncapi: dict[str, object], message: str
) -> None:
    components = asyncapi["components"]
    assert isinstance(components, dict)
    schema_file = ASYNCAPI.parent / components["messages"][message]["payload"]["$ref"]
    assert schema_file.is_file(), f"{schema_file} is missing: {REGENERATE}"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    model = _MESSAGE_MODELS[message]
    assert schema["title"] == model.__name__
    assert set(schema["properties"]) == set(model.model_fields), (
        f"{schema_file.name} is stale: {REGENERATE}"
    )


def _references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_asyncapi_internal_references_resolve(asyncapi: dict[str, object]) -> None:
    internal = [ref for ref in _references(asyncapi) if ref.startswith("#/")]
    assert len(internal) > 20
    for ref in internal:
        node: object = asyncapi
        for part in ref[2:].split("/"):
            assert isinstance(node, dict), f"{ref} does not resolve"
            assert part in node, f"{ref} does not resolve"
            node = node[part]
