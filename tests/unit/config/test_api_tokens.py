"""API tokens: strong and unique in production, unique everywhere; refusals through
`civicwatch check-config` name the file and the line, on one line, with exit code 2."""

from __future__ import annotations

import base64
import random
import secrets
from pathlib import Path

import pytest

from dispatch.config import token_weakness
from tests.unit.config.test_config_loading import VALID
from tests.unit.test_cli import civicwatch

STRONG = "Zq3v9KfT1mXw8RbL2nYc7HdJ5sPa0GeU4tVh"
# Random-looking parts of the weak tokens below, the same on every collection: pytest-xdist's
# workers must collect the same test ids, and a test id holds its token.
_DRAW = random.Random(20261205)


def _drawn_hex(nbytes: int) -> str:
    return _DRAW.randbytes(nbytes).hex()


def _drawn_urlsafe(nbytes: int) -> str:
    return base64.urlsafe_b64encode(_DRAW.randbytes(nbytes)).rstrip(b"=").decode()


def _config(tmp_path: Path, environment: str, *tokens: str) -> Path:
    lines = [f"environment: {environment}", VALID.rstrip(), "server:", "  api:", "    tokens:"]
    lines += [
        f"      - {{name: caller-{number}, role: dispatcher, token: '{token}'}}"
        for number, token in enumerate(tokens)
    ]
    path = tmp_path / "civicwatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _line_of(path: Path, token: str, occurrence: int = 1) -> int:
    lines = [
        number
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if f"'{token}'" in text
    ]
    return lines[occurrence - 1]


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("aaaaaaaaaaaaaaaa", "at least 32 characters"),
        ("a" * 40, "different characters"),
        ("DEV_" + _drawn_hex(20), "placeholder"),
        ("abcdefghijklmnopqrstuvwxyz0123456789", "pattern"),
        ("0123456789abcdef" * 3, "pattern"),
    ],
)
def test_production_refuses_a_weak_token_at_its_line(tmp_path: Path, token: str, why: str) -> None:
    path = _config(tmp_path, "production", STRONG, token)
    result = civicwatch("check-config", str(path))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{path}:{_line_of(path, token)}: server.api.tokens.1.token: ")
    assert why in lines[0]
    assert token not in lines[0]  # a secret is never printed


def test_duplicate_token_values_are_refused_in_every_environment(tmp_path: Path) -> None:
    for environment, value in (
        ("development", "dev-dispatcher-token-0001"),
        ("production", STRONG),
    ):
        path = _config(tmp_path, environment, value, secrets.token_urlsafe(32), value)
        result = civicwatch("check-config", str(path))
        assert result.returncode == 2, (environment, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(
            f"{path}:{_line_of(path, value, 2)}: server.api.tokens.2.token: "
        ), lines[0]
        assert "tokens.0 (caller-0)" in lines[0]
        assert value not in lines[0]


def test_production_accepts_strong_unique_tokens(tmp_path: Path) -> None:
    path = _config(tmp_path, "production", STRONG, secrets.token_urlsafe(32), secrets.token_hex(16))
    result = civicwatch("check-config", str(path))
    assert result.returncode == 0, result.stderr


def test_development_keeps_the_example_tokens(tmp_path: Path) -> None:
    path = _config(tmp_path, "development", "dev-dispatcher-token-0001", "aaaaaaaaaaaaaaaa")
    result = civicwatch("check-config", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "token",
    [
        "",
        "short-but-random-9f",
        "x" * 64,
        "ab" * 20,
        "abc123" * 7,
        "zyxwvutsrqponmlkjihgfedcba9876543210",
        "dev-" + _drawn_urlsafe(32),
        "test_" + _drawn_urlsafe(32),
        "changeme-" + _drawn_urlsafe(32),
        _drawn_urlsafe(32) + "-example",
        "placeholder" + _drawn_hex(16),
        "1111111111111111222222222222222233333333",
    ],
)
def test_weak_tokens(token: str) -> None:
    assert token_weakness(token) is not None


def test_generated_tokens_are_strong() -> None:
    # secrets.token_urlsafe / token_hex, drawn from a seeded generator so the test never flakes
    # (a random token starts with "dev-" about once in a million).
    rng = random.Random(10)
    for _ in range(3000):
        for token in (
            base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode(),
            base64.urlsafe_b64encode(rng.randbytes(24)).decode(),
            rng.randbytes(16).hex(),
        ):
            assert token_weakness(token) is None, token
