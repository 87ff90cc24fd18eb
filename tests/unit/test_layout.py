"""The dependency rule is a test: data flows edge -> contracts -> ingest -> dispatch.

import-linter checks the static imports (contracts in pyproject.toml); the subprocess test
catches what static analysis cannot: a third-party package that drags server code in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SERVER_ONLY = ("fastapi", "sqlalchemy", "apscheduler", "alembic", "uvicorn", "starlette")
OUR_SERVER_SIDE = ("ingest", "dispatch", "civicwatch")
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
