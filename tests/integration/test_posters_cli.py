"""`civicwatch posters`: an A4 PNG whose QR code (decoded with OpenCV) opens the report page
with a token that verifies to the site and building; one-line refusals with exit 2."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest
import yaml

from civicwatch.cli import main
from civicwatch.exit_codes import EXIT_CONFIG
from dispatch.residents.tokens import QrSigner
from tests.conftest import REPO_ROOT

SECRET = "poster-test-secret-0123456789abcdef"
SITE = "compound-demo"
BUILDING = "3号楼 Building 3"  # as configs/example.yaml lists it


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = yaml.safe_load((REPO_ROOT / "configs" / "example.yaml").read_text(encoding="utf-8"))
    data["server"].setdefault("residents", {})["qr_secret_env"] = "CW_POSTER_TEST_SECRET"
    monkeypatch.setenv("CW_POSTER_TEST_SECRET", SECRET)
    monkeypatch.setenv("CIVICWATCH_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_building_poster_carries_a_verifying_token(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "posters"
    argv = ["posters", "--config", str(config), "--site", SITE, "--building", BUILDING]
    assert main([*argv, "--out", str(out), "--base-url", "https://cw.example/"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2  # the site's and the building's
    building_poster = next(p for p in pngs if p.name != f"poster-{SITE}.png")
    image = cv2.imread(str(building_poster))
    assert image is not None
    assert image.shape[:2] == (1754, 1240)
    text = _decode_qr(image)
    assert text.startswith("https://cw.example/report?t=")
    payload = QrSigner(SECRET.encode()).verify(text.split("?t=", 1)[1], time.time())
    assert (payload.site, payload.building) == (SITE, BUILDING)


def _decode_qr(image: cv2.typing.MatLike) -> str:
    """The poster's QR text as a phone would read it. OpenCV's classic detector misses about one
    code in fifteen at full size (the token, so the pattern, differs each run): try it and the
    ArUco-based detector, at full and half size."""
    half = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    for candidate in (image, half):
        for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
            text, _points, _ = detector.detectAndDecode(candidate)
            if text:
                return str(text)
    return ""


def test_pdf_format(config: Path, tmp_path: Path) -> None:
    argv = ["posters", "--config", str(config), "--site", SITE, "--format", "pdf"]
    assert main([*argv, "--out", str(tmp_path), "--base-url", "https://cw.example"]) == 0
    assert (tmp_path / f"poster-{SITE}.pdf").read_bytes().startswith(b"%PDF")


def test_refusals_are_one_line_with_exit_2(
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["posters", "--config", str(config), "--base-url", "https://cw.example"]
    assert main([*base, "--site", "nowhere", "--out", str(tmp_path)]) == EXIT_CONFIG
    assert "unknown site" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*base, "--site", SITE, "--out", str(blocker / "sub")]) == EXIT_CONFIG
    assert "cannot write" in capsys.readouterr().err
    monkeypatch.delenv("CW_POSTER_TEST_SECRET")
    assert main([*base, "--site", SITE, "--out", str(tmp_path)]) != 0
    assert capsys.readouterr().err.count("\n") == 1
    bad = [*base, "--site", SITE, "--building", "9号楼", "--out", str(tmp_path)]
    monkeypatch.setenv("CW_POSTER_TEST_SECRET", SECRET)
    assert main(bad) == EXIT_CONFIG
