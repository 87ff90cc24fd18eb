"""Every benchmark script imports: a change elsewhere (a new kind, a renamed setting) must not
leave `python -m bench.X` dead until someone next runs it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(path.stem for path in BENCH.glob("*.py") if path.stem != "__init__")


def test_there_are_benchmarks() -> None:
    assert "api_load" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_a_benchmark_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    if '__name__ == "__main__"' in (BENCH / f"{name}.py").read_text(encoding="utf-8"):
        assert callable(getattr(module, "main", None)), f"bench.{name} runs but has no main()"


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("plates", ["--folder"]),
        ("plates_frames", ["--scenes"]),
        ("structures", ["--dir"]),
        ("plates_calibrate", ["read", "--out"]),
        ("plates_calibrate", ["score", "--out"]),
    ],
)
def test_a_folder_benchmark_answers_a_folder_mistake_in_one_line(
    name: str, arguments: list[str], tmp_path: Path
) -> None:
    folder, wrong = tmp_path / "no-such-folder", tmp_path / "no-such-folder"
    if name == "plates_calibrate":  # its mistake: a seed folder whose seed is not a number
        folder, wrong = tmp_path, tmp_path / "seedX"
        (tmp_path / "seed1").mkdir()
        wrong.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *arguments, str(folder)],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(f"bench.{name}: ")
    assert str(wrong) in done.stderr
