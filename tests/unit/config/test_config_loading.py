"""Config errors name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicwatch.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parents[3]

VALID = """\
sites:
  - id: site-a
    gateways:
      - id: gw-1
        cameras:
          - id: cam-1
            source: rtsp://camera.local/sub
            zones:
              - id: lane
                kind: fire_lane
                dwell_seconds: 20
                polygon: [[0, 0], [10, 0], [10, 10]]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "civicwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_config_is_valid() -> None:
    config = load_config(REPO_ROOT / "configs" / "example.yaml", environ={})
    camera = config.camera("cam-gate")
    assert camera is not None
    assert camera[2].zones[0].kind.value == "fire_lane"


def test_a_valid_config_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID), environ={})
    assert config.sites[0].gateways[0].cameras[0].zones[0].dwell_seconds == 20


def test_a_bad_field_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("dwell_seconds: 20", "dwell_seconds: -5"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert f"{path}:11: sites.0.gateways.0.cameras.0.zones.0.dwell_seconds:" in message
    assert "greater than 0" in message


def test_an_unknown_key_is_refused_at_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path, VALID.replace("            source:", "            sorce: x\n            source:")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert f"{path}:7: sites.0.gateways.0.cameras.0.sorce: Extra inputs are not permitted" in str(
        caught.value
    )


def test_a_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("                kind: fire_lane\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert f"{path}:9: sites.0.gateways.0.cameras.0.zones.0.kind: Field required" in str(
        caught.value
    )


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("kind: fire_lane", "kind: [fire_lane"))
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        load_config(path, environ={})


def test_duplicate_camera_ids_are_refused(tmp_path: Path) -> None:
    doubled = VALID + VALID.split("cameras:\n", 1)[1].replace("rtsp://camera.local/sub", "usb:0")
    path = _write(tmp_path, doubled)
    with pytest.raises(ConfigError, match="duplicate camera id 'cam-1'"):
        load_config(path, environ={})


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_environment_overrides_model_and_database(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, VALID),
        environ={
            "CIVICWATCH_MODEL": "/models/yolo11n_openvino_model",
            "CIVICWATCH_DATABASE_URL": "postgresql+psycopg://root@127.0.0.1/test",
        },
    )
    assert config.edge.detector.model == "/models/yolo11n_openvino_model"
    assert config.server.database_url == "postgresql+psycopg://root@127.0.0.1/test"


def test_deployment_variables_override_broker_and_api(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, VALID),
        environ={
            "CIVICWATCH_BROKER_HOST": "mosquitto",
            "CIVICWATCH_BROKER_USERNAME": "gw-1",
            "CIVICWATCH_BROKER_PASSWORD": "s3cret-gateway-password",
            "CIVICWATCH_API_HOST": "0.0.0.0",
        },
    )
    assert (config.broker.host, config.broker.username) == ("mosquitto", "gw-1")
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == "s3cret-gateway-password"
    assert config.server.api.host == "0.0.0.0"


def test_a_bad_variable_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.port: .*\(from \$CIVICWATCH_BROKER_PORT\)"):
        load_config(_write(tmp_path, VALID), environ={"CIVICWATCH_BROKER_PORT": "eighty"})


def test_production_refuses_the_example_tokens(tmp_path: Path) -> None:
    example = (REPO_ROOT / "configs" / "example.yaml").read_text(encoding="utf-8")
    path = _write(tmp_path, "environment: production\n" + example)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert (
        "server.api.tokens.0.token: production refuses the token of command-centre: "
        "an example or placeholder value"
    ) in str(caught.value)


def test_production_accepts_real_secrets(tmp_path: Path) -> None:
    text = VALID + (
        "environment: production\n"
        "server:\n  api:\n    tokens:\n"
        "      - {name: desk, role: dispatcher, token: 9f1c2b7a4e6d8f0a1b3c5d7e29b4a6c8}\n"
    )
    assert load_config(_write(tmp_path, text), environ={}).environment == "production"


def test_a_routing_rule_naming_an_unknown_zone_is_refused(tmp_path: Path) -> None:
    text = VALID + (
        "server:\n  routing:\n    rules:\n"
        "      - {zone_id: lane, department: fire_rescue}\n"
        "      - {zone_id: lnae, department: property_management}\n"
    )
    with pytest.raises(ConfigError, match="routing rule #2 names unknown zone 'lnae'"):
        load_config(_write(tmp_path, text), environ={})
