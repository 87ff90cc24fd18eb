"""A seeded month of 10,000 cases rendered as the monthly street report, and its PDF checked AS
IMAGES (pdftoppm): the page count, charts that are drawn (not blank), and a Chinese title made of
real glyphs: it matches a rendering of the same string in the CJK font and not the tofu boxes a
font without Chinese draws. (The time it takes is measured by bench/report.py, not here.)"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.report_seed import STREET, draw_plan, seed_month, seed_registry
from dispatch.reports.documents import title_only_pdf
from dispatch.reports.period import Period, Scope
from dispatch.reports.service import Generated, ReportRequest, ReportService
from tests.factories import migrated_database

DPI = 50
CASES = 10_000
TITLE_BAND = (0, 0, 500, 50)  # pixels at 50 dpi: the title line of page 1
MATPLOTLIB_BLUE = (31, 119, 180)  # the kinds chart's "this period" bars

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None, reason="poppler-utils missing: run deploy/system-deps.sh"
)


@dataclass
class Month:
    service: ReportService
    zh: Generated


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Month]:
    folder = tmp_path_factory.mktemp("report")
    registry = seed_registry(draw_plan(folder / "plan.png"))
    with migrated_database(f"sqlite:///{folder / 'month.db'}") as (_engine, sessions):
        seed_month(sessions, registry, date(2026, 5, 1), CASES)
        service = ReportService(sessions, registry, clock=lambda: datetime(2026, 6, 2, tzinfo=UTC))
        zh = service.generate(
            ReportRequest(Period.MONTH, Scope.STREET, STREET, date(2026, 5, 15)), "test"
        )
        yield Month(service, zh)


def pages(pdf: bytes, folder: Path) -> list[np.ndarray]:
    source = folder / "doc.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-png", str(source), str(folder / "page")],
        check=True,
        timeout=120,
    )
    return [
        np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        for path in sorted(folder.glob("page-*.png"))
    ]


def band(page: np.ndarray) -> np.ndarray:
    left, top, right, bottom = TITLE_BAND
    return page[top:bottom, left:right]


def near(page: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(page - np.array(colour)).max(axis=2) <= tolerance).sum())


def test_a_month_of_ten_thousand_cases_renders_as_pages_checked_as_images(
    month: Month, tmp_path: Path
) -> None:
    report = month.zh
    assert report.figures.total == CASES
    assert report.headline["cases"] == CASES
    rendered = pages(report.pdf, tmp_path)

    # summary + kinds + hours | plans + hot spots | departments + plates | plates | uptime + false
    assert len(rendered) == 5
    assert all(page.shape[1] == 414 for page in rendered)  # A4 width at 50 dpi

    # The title is Chinese glyphs: the report's title band is the reference rendering in the
    # CJK font, and far from the same string in a font without Chinese (tofu boxes).
    title = f"{STREET} 社情研判月报（2026-05-01 至 2026-05-31）"
    (cjk,) = pages(title_only_pdf(title), _mk(tmp_path / "cjk"))
    (tofu,) = pages(title_only_pdf(title, "Helvetica"), _mk(tmp_path / "tofu"))
    ours = band(rendered[0])
    assert (ours < 128).sum() > 500  # ink where the title is
    same = np.abs(ours - band(cjk)).mean()
    other = np.abs(ours - band(tofu)).mean()
    assert same < 1.0, same
    assert other > 5 * max(same, 1.0), (same, other)

    # Charts are drawn, not blank: the kinds chart's bars on page 1, the heat map's red dots
    # over the grey buildings of the plan on page 2, the departments' bars on page 3.
    assert near(rendered[0], MATPLOTLIB_BLUE) > 2000
    reds = ((rendered[1][..., 0] > 150) & (rendered[1][..., 1] < 110)).sum()
    assert reds > 1000, reds
    assert near(rendered[2], MATPLOTLIB_BLUE) > 1000
    for page in rendered:
        assert (page < 250).any(axis=2).mean() > 0.03  # no empty page


def test_the_text_layer_says_the_figures_in_the_language_asked(
    month: Month, tmp_path: Path
) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext missing")
    english = month.service.generate(
        ReportRequest(Period.MONTH, Scope.STREET, STREET, date(2026, 5, 15), "en"), "test"
    )
    for generated, words in (
        (month.zh, ["社情研判月报", "响应率", "解决率", "满意率", "沪A000"]),
        (english, ["monthly joint analysis report", "Response rate", "Satisfaction rate"]),
    ):
        source = tmp_path / f"{generated.language}.pdf"
        source.write_bytes(generated.pdf)
        text = subprocess.run(
            ["pdftotext", "-enc", "UTF-8", str(source), "-"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for word in words:
            assert word in text, word
    assert english.report_id != month.zh.report_id


def _mk(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return folder
