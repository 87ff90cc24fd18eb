"""What an installed civicwatch holds: the wheel and the container image, not the source tree.

Tests and `pip install -e .` read the source tree, so a data file left out of the package data
(a model's weights, a template) or a package left out of the Dockerfile shows up only in a
deployment: the gateway then stops at start-up without its weights. A real wheel is built here
(no docker engine on this machine, so the image's COPY lines are read instead of built).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Read from the tree as documentation, never loaded by the code.
NOT_PACKAGE_DATA = ("README.md",)


def _packages() -> list[str]:
    """The top-level packages pyproject.toml installs (its `packages.find` include)."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


def _tracked_data_files(package: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", package], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        name
        for name in listed
        if not name.endswith(".py") and Path(name).name not in NOT_PACKAGE_DATA
    ]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the tracked files")
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*build, "--wheel-dir", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("civicwatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.parametrize("package", _packages())
def test_the_wheel_holds_every_tracked_data_file(package: str, wheel_names: set[str]) -> None:
    missing = [name for name in _tracked_data_files(package) if name not in wheel_names]
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"


@pytest.mark.parametrize("package", _packages())
def test_the_wheel_holds_every_package(package: str, wheel_names: set[str]) -> None:
    assert f"{package}/__init__.py" in wheel_names


def test_the_image_copies_every_package_it_installs() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    copied = {
        words[1].rstrip("/")
        for line in dockerfile.splitlines()
        if (words := line.split()) and words[0] == "COPY" and len(words) == 3
    }
    missing = [package for package in _packages() if package not in copied]
    assert not missing, f"deploy/Dockerfile installs /src without: {missing}"
