"""Login, sessions and account administration through the real app (TestClient, real SQLite).

The argon2 parameters are small so the tests run fast; everything else is as served.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dispatch.accounts import AccountService, AccountSettings
from dispatch.config import ApiSettings, ApiToken, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from tests.conftest import REPO_ROOT
from tests.factories import T0, EventFactory, make_ingest, migrated_database

PASSWORD = "correct horse battery"
CSRF = {"X-Requested-With": "civicwatch"}
INTEGRATION = ApiToken(
    name="city-brain", token=SecretStr("integration-token-1"), role=Role.INTEGRATION
)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    client: TestClient
    accounts: AccountService
    clock: Clock
    case_id: int


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with migrated_database(f"sqlite:///{tmp_path / 'auth.db'}") as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        ingest.service.store(EventFactory().event())  # one parking case: law enforcement's
        clock = Clock()
        accounts = AccountService(
            sessions,
            AccountSettings(login_max_failures=3),
            clock,
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        )
        accounts.create_user("admin", PASSWORD, Role.ADMIN, display_name="Admin")
        accounts.create_user("officer", PASSWORD, Role.WORKER, Department.LAW_ENFORCEMENT, "Li")
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=ingest.evidence_store,
                settings=ApiSettings(tokens=[INTEGRATION]),
                registry=ingest.registry,
                metrics_registry=ingest.metrics.registry,
                workflow=Workflow(),
                accounts=accounts,
            )
        )
        with TestClient(app) as client:
            case_id = client.get("/api/v1/cases", headers=_bearer(INTEGRATION)).json()[0]["id"]
            yield Rig(client, accounts, clock, case_id)


def _bearer(token: ApiToken | str) -> dict[str, str]:
    value = token if isinstance(token, str) else token.token.get_secret_value()
    return {"Authorization": f"Bearer {value}"}


def _login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def test_login_sets_a_strict_httponly_cookie_and_returns_the_user(rig: Rig) -> None:
    response = rig.client.post(
        "/api/v1/auth/login", json={"username": "officer", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {
        "username": "officer",
        "display_name": "Li",
        "role": "worker",
        "department": "law_enforcement",
        "must_change_password": False,
    }
    assert datetime.fromisoformat(body["expires_at"]) == T0 + timedelta(hours=12)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"cw_session={body['token']};")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain http here; https requests get Secure
    me = rig.client.get("/api/v1/auth/me")  # the cookie alone authenticates
    assert me.status_code == 200
    assert me.json()["username"] == "officer"


def test_cookie_is_secure_over_https(rig: Rig) -> None:
    https = TestClient(rig.client.app, base_url="https://testserver")
    response = https.post("/api/v1/auth/login", json={"username": "officer", "password": PASSWORD})
    assert "secure" in {part.strip().lower() for part in response.headers["set-cookie"].split(";")}


def test_bad_credentials_are_401_with_one_message(rig: Rig) -> None:
    wrong = rig.client.post("/api/v1/auth/login", json={"username": "officer", "password": "x"})
    unknown = rig.client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "set-cookie" not in wrong.headers


def test_too_many_failures_are_429_with_retry_after(rig: Rig) -> None:
    for _ in range(3):
        failed = rig.client.post(
            "/api/v1/auth/login", json={"username": "officer", "password": "guess-guess"}
        )
        assert failed.status_code == 401
    limited = rig.client.post(
        "/api/v1/auth/login", json={"username": "officer", "password": PASSWORD}
    )
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) == 15 * 60
    rig.clock.now += timedelta(minutes=15)
    assert _login(rig.client, "officer")


def test_cookie_authenticated_change_needs_the_csrf_header(rig: Rig) -> None:
    _login(rig.client, "officer")
    url = f"/api/v1/cases/{rig.case_id}/actions"
    forged = rig.client.post(url, json={"action": "accept"})
    assert forged.status_code == 403
    assert "X-Requested-With" in forged.json()["detail"]
    assert rig.client.get(f"/api/v1/cases/{rig.case_id}").json()["state"] == "dispatched"
    accepted = rig.client.post(url, json={"action": "accept"}, headers=CSRF)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["transitions"][-1]["actor"] == "officer"


def test_session_token_works_as_a_bearer_token_without_csrf_header(rig: Rig) -> None:
    token = _login(rig.client, "officer")
    rig.client.cookies.clear()
    url = f"/api/v1/cases/{rig.case_id}/actions"
    accepted = rig.client.post(url, json={"action": "accept"}, headers=_bearer(token))
    assert accepted.status_code == 200, accepted.text


def test_logout_ends_the_session(rig: Rig) -> None:
    token = _login(rig.client, "officer")
    assert rig.client.post("/api/v1/auth/logout").status_code == 403  # cookie: needs the header
    response = rig.client.post("/api/v1/auth/logout", headers=CSRF)
    assert response.status_code == 204
    assert 'cw_session=""' in response.headers["set-cookie"]
    assert rig.client.get("/api/v1/auth/me").status_code == 401
    assert rig.client.get("/api/v1/auth/me", headers=_bearer(token)).status_code == 401


def test_expired_or_idle_session_is_401(rig: Rig) -> None:
    _login(rig.client, "officer")
    rig.clock.now += timedelta(minutes=121)
    response = rig.client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_me_for_a_config_token(rig: Rig) -> None:
    response = rig.client.get("/api/v1/auth/me", headers=_bearer(INTEGRATION))
    assert response.json() == {
        "username": "city-brain",
        "display_name": "city-brain",
        "role": "integration",
        "department": None,
        "must_change_password": False,
    }


def test_must_change_password_closes_everything_but_the_change_until_it_is_made(
    rig: Rig,
) -> None:
    admin = _bearer(_login(rig.client, "admin"))
    rig.client.cookies.clear()  # the bearer token, not the cookie (which needs the CSRF header)
    reset = rig.client.post(
        "/api/v1/users/officer/password",
        json={"password": "temporary-password-1", "must_change_password": True},
        headers=admin,
    )
    assert reset.status_code == 204, reset.text
    rig.client.cookies.clear()
    login = rig.client.post(
        "/api/v1/auth/login", json={"username": "officer", "password": "temporary-password-1"}
    )
    assert login.json()["user"]["must_change_password"] is True
    officer = _bearer(login.json()["token"])
    other_device = _bearer(_login(rig.client, "officer", "temporary-password-1"))
    rig.client.cookies.clear()

    for url in ("/api/v1/cases", f"/api/v1/cases/{rig.case_id}", "/api/v1/stats"):
        refused = rig.client.get(url, headers=officer)
        assert refused.status_code == 403, url
        assert refused.json()["detail"]["code"] == "password_change_required"
    assert rig.client.get("/api/v1/auth/me", headers=officer).status_code == 200

    def change(current: str, new: str) -> tuple[int, str]:
        answer = rig.client.post(
            "/api/v1/auth/password",
            json={"current_password": current, "new_password": new},
            headers=officer,
        )
        return answer.status_code, answer.json()["detail"]["code"] if answer.content else ""

    assert change("wrong-password-x", "my-own-password-9") == (403, "wrong_current_password")
    assert change("temporary-password-1", "short") == (422, "password_too_short")
    assert change("temporary-password-1", "officer") == (422, "password_too_short")
    assert change("temporary-password-1", "OFFICER   ") == (422, "password_is_username")
    assert change("temporary-password-1", "temporary-password-1") == (422, "password_unchanged")
    assert change("temporary-password-1", "my-own-password-9") == (204, "")

    assert rig.client.get("/api/v1/cases", headers=officer).status_code == 200
    assert rig.client.get("/api/v1/auth/me", headers=other_device).status_code == 401
    assert not rig.accounts.get_user("officer").must_change_password
    assert [(e.action, e.actor) for e in rig.accounts.audit_entries("officer")] == [
        ("created", "local"),
        ("password_set", "admin"),
        ("password_changed", "officer"),
    ]


def test_a_wrong_current_password_counts_as_a_failed_login(rig: Rig) -> None:
    officer = _bearer(_login(rig.client, "officer"))
    rig.client.cookies.clear()
    for _ in range(3):  # login_max_failures
        answer = rig.client.post(
            "/api/v1/auth/password",
            json={"current_password": "guess-guess-guess", "new_password": "my-own-password-9"},
            headers=officer,
        )
        assert answer.status_code == 403
    answer = rig.client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "my-own-password-9"},
        headers=officer,
    )
    assert answer.status_code == 429
    assert "retry-after" in answer.headers


def test_a_config_token_has_no_password_to_change(rig: Rig) -> None:
    answer = rig.client.post(
        "/api/v1/auth/password",
        json={"current_password": "x", "new_password": "my-own-password-9"},
        headers=_bearer(INTEGRATION),
    )
    assert answer.status_code == 403


def test_only_an_admin_manages_users(rig: Rig) -> None:
    new_user = {
        "username": "firefighter",
        "password": PASSWORD,
        "role": "worker",
        "department": "fire_rescue",
    }
    officer = _bearer(_login(rig.client, "officer"))
    admin = _bearer(_login(rig.client, "admin"))
    rig.client.cookies.clear()
    for method, url, body in [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", new_user),
        ("POST", "/api/v1/users/officer/password", {"password": "another passphrase"}),
        ("POST", "/api/v1/users/officer/deactivate", None),
        ("POST", "/api/v1/users/ghost/deactivate", None),  # not even whether it exists
    ]:
        assert rig.client.request(method, url, json=body).status_code == 401, url
        for who in (officer, _bearer(INTEGRATION)):
            assert rig.client.request(method, url, json=body, headers=who).status_code == 403, url

    created = rig.client.post("/api/v1/users", json=new_user, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["department"] == "fire_rescue"
    assert rig.client.post("/api/v1/users", json=new_user, headers=admin).status_code == 409
    weak = rig.client.post(
        "/api/v1/users", json={**new_user, "username": "weak", "password": "short"}, headers=admin
    )
    assert weak.status_code == 422
    assert "at least 10" in weak.json()["detail"]
    names = [u["username"] for u in rig.client.get("/api/v1/users", headers=admin).json()]
    assert names == ["admin", "firefighter", "officer"]

    for url in ("/api/v1/users/ghost/password", "/api/v1/users/ghost/deactivate"):
        body = {"password": "another passphrase"}
        assert rig.client.post(url, json=body, headers=admin).status_code == 404
    changed = rig.client.post(
        "/api/v1/users/officer/password", json={"password": "another passphrase"}, headers=admin
    )
    assert changed.status_code == 204
    assert rig.client.get("/api/v1/auth/me", headers=officer).status_code == 401  # session ended
    assert _login(rig.client, "officer", "another passphrase")
    rig.client.cookies.clear()
    assert rig.client.post("/api/v1/users/officer/deactivate", headers=admin).status_code == 204
    refused = rig.client.post(
        "/api/v1/auth/login", json={"username": "officer", "password": "another passphrase"}
    )
    assert refused.status_code == 401


def test_cli_user_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``civicwatch user`` against the example config, its database moved to tmp_path."""
    from civicwatch.cli import main
    from civicwatch.exit_codes import EXIT_ACCOUNT

    config = ["--config", str(REPO_ROOT / "configs" / "example.yaml")]
    monkeypatch.setenv("CIVICWATCH_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CIVICWATCH_PASSWORD", PASSWORD)
    add = ["user", "add", "anna", "--role", "worker", "--department", "fire_rescue", *config]
    assert main([*add, "--head", "--display-name", "Anna"]) == 0
    assert main(add) == EXIT_ACCOUNT  # taken
    assert "already exists" in capsys.readouterr().err
    assert main(["user", "add", "bob", "--role", "dispatcher", "--department", "x", *config]) == 6
    monkeypatch.setenv("CIVICWATCH_PASSWORD", "short")
    assert main(["user", "passwd", "anna", *config]) == EXIT_ACCOUNT
    assert "at least 10" in capsys.readouterr().err
    monkeypatch.setenv("CIVICWATCH_PASSWORD", "a new passphrase")
    assert main(["user", "passwd", "anna", *config]) == 0
    assert main(["user", "passwd", "ghost", *config]) == EXIT_ACCOUNT
    capsys.readouterr()
    assert main(["user", "list", *config]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "anna\tworker of fire_rescue\thead active\tAnna"
    ]
    with migrated_database(f"sqlite:///{tmp_path / 'cli.db'}") as (_engine, sessions):
        accounts = AccountService(sessions, AccountSettings())
        assert accounts.authenticate("anna", "a new passphrase", "cli").account.is_head
