"""The console's side of false alarms: the close form asks why, and the statistics show each
camera's false alarms (both languages), through the real app over a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatch.web.i18n import translator
from tests.factories import CAMERA
from tests.integration.test_web_pages import Site, auth, serve


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(f"sqlite:///{tmp_path / 'civicwatch.db'}", tmp_path) as served:
        yield served


def _false_alarm(site: Site) -> None:
    url = f"/api/v1/cases/{site.parking_id}/actions"
    returned = {"action": "return", "reason": "nothing parked"}
    assert site.client.post(url, headers=auth("law"), json=returned).status_code == 200
    close = {"action": "close", "reason": "a shadow", "close_reason": "false_alarm"}
    assert site.client.post(url, headers=auth("dispatcher"), json=close).status_code == 200


def test_the_close_form_offers_the_reasons(site: Site) -> None:
    url = f"/api/v1/cases/{site.parking_id}/actions"
    returned = {"action": "return", "reason": "not ours"}
    assert site.client.post(url, headers=auth("law"), json=returned).status_code == 200
    panel = site.client.get(
        f"/console/cases/{site.parking_id}/panel?lang=en", headers=auth("dispatcher")
    ).text
    assert 'name="close_reason"' in panel
    assert '<option value="false_alarm">False alarm</option>' in panel


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_console_shows_false_alarms_per_camera(site: Site, language: str) -> None:
    _false_alarm(site)
    page = site.client.get(f"/console?lang={language}", headers=auth("dispatcher")).text
    t = translator(language)
    assert t("ui.false_alarms_per_camera") in page
    row = page.split(f'<tr data-camera-id="{CAMERA}">', 1)[1].split("</tr>", 1)[0]
    assert row == f"<td>{CAMERA}</td><td>2</td><td>1</td><td>0</td><td>50%</td>"
    stats = site.client.get("/api/v1/stats", headers=auth("dispatcher")).json()
    assert stats["false_alarms_by_camera"][0]["rate"] == 0.5


def test_a_department_sees_its_own_cases_only(site: Site) -> None:
    _false_alarm(site)
    stats = site.client.get("/api/v1/stats", headers=auth("fire")).json()
    assert [row["false_alarms"] for row in stats["false_alarms_by_camera"]] == [0]


def test_the_console_changes_a_cases_kind_with_a_form_naming_the_other_kinds(site: Site) -> None:
    panel = site.client.get(
        f"/console/cases/{site.parking_id}/panel?lang=en", headers=auth("dispatcher")
    ).text
    form = panel[panel.index('data-action="reclassify"') :]
    form = form[: form.index("</form>")]
    assert 'name="kind"' in form
    assert '<option value="fire_lane_blocking">' in form
    assert '<option value="illegal_parking">' not in form  # the case's own kind
    assert 'name="reason"' in form
