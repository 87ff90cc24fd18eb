"""`make test` brings in the Debian packages the tests need, or names them in one line.

The README promises that `make test` passes on a fresh machine; the browser, compose and broker
tests need programs pip cannot install. `deploy/system-deps.sh` (run by `make deps`, which
`make test` runs first) installs them as root and otherwise stops with one line naming them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "system-deps.sh"
# What the script itself runs, besides the programs it looks for.
SCRIPT_TOOLS = ("bash", "sort", "id", "grep", "fc-list")
LOOKED_FOR = (
    "mosquitto",
    "mosquitto_passwd",
    "mosquitto_ctrl",
    "docker-compose",
    "openssl",
    "prlimit",
    "chromium",
    "pdftoppm",
    "pdftotext",
)


def _path_without(tmp_path: Path, hidden: str) -> str:
    """A PATH of links to every program the script needs, except ``hidden``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (*SCRIPT_TOOLS, *LOOKED_FOR):
        found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        if name != hidden and found is not None:
            (bin_dir / name).symlink_to(found)
    return str(bin_dir)


def _run(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/env", f"PATH={path}", "bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("hidden", "package"),
    [("docker-compose", "docker-compose"), ("pdftoppm", "poppler-utils")],
)
def test_a_missing_program_is_named_in_one_line(tmp_path: Path, hidden: str, package: str) -> None:
    result = _run(_path_without(tmp_path, hidden), "--check")

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert package in lines[0]
    assert "apt-get install" in lines[0]
    assert "Traceback" not in result.stderr


def test_nothing_missing_means_success_on_this_machine() -> None:
    """CI ran `make deps` before the tests, so everything the tests need is here."""
    result = _run("/usr/local/bin:/usr/bin:/bin", "--check")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_an_unknown_argument_is_one_line_and_exit_2() -> None:
    result = _run("/usr/bin:/bin", "--bogus")

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_make_test_runs_deps_before_pytest_and_ci_runs_only_make_test() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "deploy/system-deps.sh" in dry_run
    assert dry_run.index("deploy/system-deps.sh") < dry_run.index("pytest")

    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "apt-get" not in ci
