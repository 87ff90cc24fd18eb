"""The `civicwatch` command as a user runs it: exit codes and what it prints."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import REPO_ROOT, SHARED_DATA

EXAMPLE = REPO_ROOT / "configs" / "example.yaml"


def civicwatch(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CIVICWATCH_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "civicwatch.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=120,
        check=False,
    )


def test_check_config_accepts_the_example() -> None:
    result = civicwatch("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "ok (1 sites, 1 gateways, 1 cameras, 1 zones)" in result.stdout


def test_check_config_points_at_the_broken_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE.read_text().replace("dwell_seconds: 15", "dwell_seconds: soon"))
    line = next(
        number
        for number, text in enumerate(broken.read_text().splitlines(), start=1)
        if "dwell_seconds: soon" in text
    )
    result = civicwatch("check-config", str(broken))
    assert result.returncode == 2
    assert f"{broken}:{line}: sites.0.gateways.0.cameras.0.zones.0.dwell_seconds:" in result.stderr


def test_schema_writes_what_docs_publish(tmp_path: Path) -> None:
    result = civicwatch("schema", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in (REPO_ROOT / "docs" / "schema").iterdir())
    for name in written:
        published = json.loads((REPO_ROOT / "docs" / "schema" / name).read_text())
        assert json.loads((tmp_path / name).read_text()) == published


def test_a_model_that_cannot_load_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere_openvino_model"
    result = civicwatch(
        "replay",
        "--config",
        str(EXAMPLE),
        "--camera",
        "cam-gate",
        "--source",
        str(tmp_path / "clip.mp4"),
        env={"CIVICWATCH_MODEL": str(missing), "YOLO_OFFLINE": "1"},
    )
    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if line.startswith("civicwatch:")]
    assert len(lines) == 1
    assert str(missing) in lines[0]
    assert "CIVICWATCH_MODEL=" in lines[0]
    assert result.stdout == ""


def test_offline_the_default_model_names_the_variable_to_set(tmp_path: Path) -> None:
    """yolo11n.pt is a download; offline (YOLO_OFFLINE=1 here) it cannot come."""
    result = civicwatch(
        "demo",
        "--config",
        str(EXAMPLE),
        env={"YOLO_OFFLINE": "1"},
        cwd=tmp_path,  # no yolo11n.pt lying around
    )
    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if line.startswith("civicwatch:")]
    assert len(lines) == 1
    assert "'yolo11n.pt'" in lines[0]
    assert "CIVICWATCH_MODEL=../shared/models/yolo11n_int8_openvino_model" in lines[0]


def test_migrate_brings_a_new_database_up_to_date(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    result = civicwatch(
        "migrate",
        "--config",
        str(EXAMPLE),
        env={"CIVICWATCH_DATABASE_URL": f"sqlite:///{database}"},
    )
    assert result.returncode == 0, result.stderr
    assert f"database at sqlite:///{database} is up to date" in result.stdout
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"events", "cases", "case_transitions", "alembic_version"} <= tables


def test_eval_plates_scores_a_folder_named_by_plate(tmp_path: Path) -> None:
    crops = sorted((SHARED_DATA / "plates" / "lprnet").glob("*.jpg"))[:6]
    for crop in crops:
        shutil.copy(crop, tmp_path / crop.name)
    result = civicwatch("eval", "plates", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["reader"]["count"] == 6
    assert summary["reader"]["exact_match_rate"] >= 5 / 6
    assert summary["baseline"]["count"] == 6


def test_eval_structures_scores_a_before_after_folder(tmp_path: Path) -> None:
    dsifn = SHARED_DATA / "structures" / "dsifn"
    for part in ("A", "B", "label"):
        (tmp_path / part).mkdir()
        for name in ("0_2.png", "6_3.png"):
            shutil.copy(dsifn / part / name, tmp_path / part / name)
    result = civicwatch("eval", "structures", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["pairs"] == 2
    assert summary["pairs_right"] == 2
    assert summary["control_alarms"] == 0


def test_eval_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    result = civicwatch("eval", "plates", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "not a folder" in result.stderr


def test_baseline_accept_registers_the_new_view_and_keeps_the_old(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        EXAMPLE.read_text().replace("data_dir: var/edge", f"data_dir: {tmp_path / 'edge'}")
    )
    photo = tmp_path / "view.png"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 120, np.uint8))
    for note in ("first view", "case 17 closed: shed approved"):
        result = civicwatch(
            "baseline",
            "accept",
            "--config",
            str(config),
            "--camera",
            "cam-gate",
            "--image",
            str(photo),
            "--note",
            note,
        )
        assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.splitlines()[-1])
    assert info["note"] == "case 17 closed: shed approved"
    baselines = tmp_path / "edge" / "baselines"
    assert (baselines / "cam-gate.png").exists()
    assert list((baselines / "history").iterdir()), "the replaced baseline is kept"
