"""`civicwatch report` as an operator runs it: a report to a file, and each mistake one line with
exit 2 (EXIT_CONFIG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicwatch.exit_codes import EXIT_CONFIG
from storage.schema import migrate
from tests.unit.test_cli import EXAMPLE, civicwatch, one_line_error


@pytest.fixture
def database(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate(url)  # in this process: a second interpreter per test costs seconds
    return {"CIVICWATCH_DATABASE_URL": url}


def report(*args: str) -> list[str]:
    return ["report", "--config", str(EXAMPLE), *args]


def test_a_monthly_site_report_is_written_as_pdf_and_as_html(
    tmp_path: Path, database: dict[str, str]
) -> None:
    for name in ("may.pdf", "may.html"):
        out = tmp_path / name
        result = civicwatch(
            *report(),
            "--period",
            "month",
            "--site",
            "compound-demo",
            "--start",
            "2026-05-01",
            "--out",
            str(out),
            env=database,
        )
        assert result.returncode == 0, result.stderr
        assert "month 2026-05-01..2026-05-31 site compound-demo, 0 cases" in result.stdout
    assert (tmp_path / "may.pdf").read_bytes().startswith(b"%PDF")
    assert "社情研判月报" in (tmp_path / "may.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--period", "fortnight", "--site", "compound-demo"], "unknown period"),
        (["--period", "week", "--site", "nowhere"], "no site 'nowhere'"),
        (["--period", "week", "--street", "nowhere"], "no site belongs to street"),
        (["--period", "week"], "exactly one of --site or --street"),
        (["--period", "week", "--site", "compound-demo", "--street", "x"], "exactly one of"),
        (["--period", "week", "--site", "compound-demo", "--start", "2026-02-30"], "not a date"),
        (["--period", "week", "--site", "compound-demo", "--start", "2999-01-01"], "not ended"),
        (["--period", "week", "--site", "compound-demo", "--out", "x.docx"], ".pdf or .html"),
    ],
)
def test_each_mistake_is_one_line_and_exit_2(
    tmp_path: Path, database: dict[str, str], args: list[str], says: str
) -> None:
    defaults = {"--start": "2026-05-04", "--out": str(tmp_path / "r.pdf")}
    for flag, value in defaults.items():
        if flag not in args:
            args = [*args, flag, value]
    line = one_line_error(civicwatch(*report(), *args, env=database), EXIT_CONFIG)
    assert says in line
    assert not (tmp_path / "r.pdf").exists()
