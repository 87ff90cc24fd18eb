"""server.residents: validated with errors naming file and line; the QR secret never defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicwatch.config import ConfigError, load_config
from dispatch.config import QrSecretError, ResidentSettings

SITE = """\
sites:
  - id: site-a
    gateways: []
"""


def _load(tmp_path: Path, residents: str) -> Path:
    path = tmp_path / "civicwatch.yaml"
    path.write_text(SITE + "server:\n  residents:\n" + residents, encoding="utf-8")
    return path


def test_a_full_residents_section_loads(tmp_path: Path) -> None:
    path = _load(
        tmp_path,
        """\
    merge_window_minutes: 60
    merge_radius: 0.05
    buildings: {site-a: ["1号楼", "2号楼"]}
    consultation_quorum: 5
    consultation_hours: 48
    qr_secret_env: CIVICWATCH_QR_SECRET
    status_webhook_url: https://sms.example.org/hook
    limits: {per_address: 3, per_phone: 2, per_token: 50}
    tier_rules:
      - {categories: [noise], hours: {start: "22:00", end: "07:00"}, tier: department}
      - {categories: [garbage], sites: [site-a], weekdays: [6, 7], tier: household}
""",
    )
    residents = load_config(path, environ={}).server.residents
    assert residents.consultation_quorum == 5
    assert residents.buildings == {"site-a": ["1号楼", "2号楼"]}
    assert [rule.tier.value for rule in residents.tier_rules] == ["department", "household"]


@pytest.mark.parametrize(
    ("residents", "line", "field", "message"),
    [
        ("    merge_radius: 2\n", 6, "server.residents.merge_radius", "less than or equal to 1"),
        (
            "    tier_rules:\n      - {categories: [nois], tier: community}\n",
            7,
            "server.residents.tier_rules.0.categories.0",
            "'noise'",
        ),
        (
            "    tier_rules:\n      - {weekdays: [0], tier: community}\n",
            7,
            "server.residents.tier_rules.0",
            "weekdays are ISO numbers",
        ),
        (
            "    tier_rules:\n      - {sites: [site-z], tier: household}\n",
            7,
            "server.residents.tier_rules.0.sites",
            "tier rule #1 names unknown site site-z",
        ),
        (
            "    buildings: {site-z: [A]}\n",
            6,
            "server.residents.buildings.site-z",
            "unknown site site-z",
        ),
        (
            "    qr_secret_env: lower-case\n",
            6,
            "server.residents.qr_secret_env",
            "should match pattern",
        ),
        (
            "    qr_secret_env: QR\n    qr_secret_file: /etc/qr\n",
            5,
            "server.residents",
            "not both",
        ),
    ],
    ids=["radius", "category", "weekday", "unknown-site", "buildings-site", "env-name", "two"],
)
def test_mistakes_name_file_line_and_field(
    tmp_path: Path, residents: str, line: int, field: str, message: str
) -> None:
    path = _load(tmp_path, residents)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = str(caught.value)
    assert f"{path}:{line}: {field}: " in problems
    assert message in problems


def test_no_secret_source_disables_qr_posters() -> None:
    assert ResidentSettings().qr_secret({"CIVICWATCH_QR_SECRET": "x" * 40}) is None


def test_the_secret_comes_from_the_named_variable_or_file(tmp_path: Path) -> None:
    secret = "k3Y9-a-long-random-secret-for-qr-posters"
    env = ResidentSettings(qr_secret_env="QR_SECRET")
    assert env.qr_secret({"QR_SECRET": secret}) == secret.encode()
    file = tmp_path / "qr.secret"
    file.write_text(secret + "\n", encoding="utf-8")
    assert ResidentSettings(qr_secret_file=file).qr_secret({}) == secret.encode()


def test_a_named_but_missing_or_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QrSecretError, match=r"\$QR_SECRET .*at least 32 characters"):
        ResidentSettings(qr_secret_env="QR_SECRET").qr_secret({})
    with pytest.raises(QrSecretError, match="at least 32"):
        ResidentSettings(qr_secret_env="QR_SECRET").qr_secret({"QR_SECRET": "short"})
    with pytest.raises(QrSecretError, match="cannot read"):
        ResidentSettings(qr_secret_file=tmp_path / "absent").qr_secret({})
