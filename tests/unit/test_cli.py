"""The `civicwatch` command as a user runs it: exit codes and what it prints."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from civicwatch import cli
from civicwatch.commands import tools
from tests.conftest import REPO_ROOT, SHARED_DATA

EXAMPLE = REPO_ROOT / "configs" / "example.yaml"
CLI = [sys.executable, "-m", "civicwatch.cli"]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CIVICWATCH_")}
    environment.update(env or {})
    return environment


def civicwatch(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    """The command with no terminal at all, as from cron or CI (its own session, no stdin)."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The single stderr line of a failed command, after checking its exit code."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("civicwatch: "), lines[0]
    assert result.returncode == exit_code, result.stderr
    return lines[0]


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
    # The folder's JSON Schemas are generated; prose beside them (event_frame.md) is not.
    assert written == sorted(p.name for p in (REPO_ROOT / "docs" / "schema").glob("*.json"))
    for name in written:
        published = json.loads((REPO_ROOT / "docs" / "schema" / name).read_text())
        assert json.loads((tmp_path / name).read_text()) == published


def test_a_model_that_cannot_load_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere_openvino_model"
    still = tmp_path / "view.png"  # a source that opens: the model is what fails
    cv2.imwrite(str(still), np.full((48, 64, 3), 120, np.uint8))
    result = civicwatch(
        "replay",
        "--config",
        str(EXAMPLE),
        "--camera",
        "cam-gate",
        "--source",
        str(still),
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


def test_user_add_without_a_terminal_or_password_names_the_variable(tmp_path: Path) -> None:
    result = civicwatch(
        "user",
        "add",
        "clerk",
        "--role",
        "dispatcher",
        "--config",
        str(EXAMPLE),
        env={"CIVICWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'users.db'}"},
    )
    assert "$CIVICWATCH_PASSWORD" in one_line_error(result, 6)


def test_ctrl_c_at_the_password_prompt_ends_in_one_line(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()

    def take_the_terminal() -> None:  # in the child: the pty becomes its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [*CLI, "user", "add", "clerk", "--role", "dispatcher", "--config", str(EXAMPLE)],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=_environment({"CIVICWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'users.db'}"}),
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(terminal)
    try:
        shown = b""
        deadline = time.monotonic() + 90
        while b"password" not in shown:
            assert time.monotonic() < deadline, f"no password prompt: {shown!r}"
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                shown += os.read(controller, 1024)
        os.write(controller, b"\x03")  # Ctrl-C, as typed
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert "interrupted" in one_line_error(result, 130)


def test_eval_plates_of_a_folder_without_images_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no crops here")
    assert "no plate images" in one_line_error(civicwatch("eval", "plates", str(tmp_path)), 2)


def test_eval_structures_names_what_the_folder_lacks(tmp_path: Path) -> None:
    assert "missing the A/ folder" in one_line_error(
        civicwatch("eval", "structures", str(tmp_path)), 2
    )
    dsifn = SHARED_DATA / "structures" / "dsifn"
    for part in ("A", "B", "label"):
        (tmp_path / part).mkdir()
        for name in ("0_2.png", "6_3.png"):
            if not (part == "B" and name == "6_3.png"):
                shutil.copy(dsifn / part / name, tmp_path / part / name)
    line = one_line_error(civicwatch("eval", "structures", str(tmp_path)), 2)
    assert "not in all of A/, B/ and label/: 6_3.png" in line


def test_replay_of_a_missing_clip_exits_5_before_loading_the_model(tmp_path: Path) -> None:
    # The model cannot load either: the clip must be checked first, so the answer is 5, not 3.
    env = {"CIVICWATCH_MODEL": str(tmp_path / "nowhere_openvino_model")}
    result = civicwatch(
        "replay",
        "--config",
        str(EXAMPLE),
        "--camera",
        "cam-gate",
        "--source",
        str(tmp_path / "clip.mp4"),
        env=env,
    )
    assert f"source file not found: {tmp_path / 'clip.mp4'}" in one_line_error(result, 5)


def test_replay_of_a_file_that_is_not_video_exits_5(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_text("not a video")
    env = {"CIVICWATCH_MODEL": str(tmp_path / "nowhere_openvino_model")}
    result = civicwatch(
        "replay", "--config", str(EXAMPLE), "--camera", "cam-gate", "--source", str(clip), env=env
    )
    assert "not a video" in one_line_error(result, 5)


def test_a_taken_api_port_has_its_own_exit_code(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = civicwatch(
            "server",
            "--config",
            str(EXAMPLE),
            env={
                "CIVICWATCH_API_PORT": str(port),
                "CIVICWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
            },
        )
    assert f"127.0.0.1:{port}" in one_line_error(result, 7)
    assert not (tmp_path / "server.db").exists(), "nothing starts before the port is ours"


def test_a_file_system_refusal_is_one_line(tmp_path: Path) -> None:
    occupied = tmp_path / "schema"
    occupied.write_text("a file where the folder should go")
    assert str(occupied) in one_line_error(civicwatch("schema", "--out", str(occupied)), 1)


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_args: object) -> int:
        raise RuntimeError("a bug, not a mistake")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tools, "schema", broken)
    assert cli.main(["schema"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "RuntimeError: a bug, not a mistake" in lines[0]
    (report,) = tmp_path.glob("civicwatch-crash-*.log")
    assert str(report) in lines[0]
    assert "Traceback" in report.read_text()
    assert 'raise RuntimeError("a bug, not a mistake")' in report.read_text()
