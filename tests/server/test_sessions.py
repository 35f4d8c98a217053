"""Console sessions over a real server: first run, sign-in, cookie + CSRF on changes,
sign-out, rate-limited failures, role changes and disabling seen at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.sessions import MAX_FAILURES, SESSION_COOKIE
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from llmasos.storage.database import Database
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient

PASSWORD = "correct horse battery"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, Database]]:
    settings = Settings(home=tmp_path / "home", database_url=database_url, auth=True)
    database = open_database(settings)
    app = create_app(
        settings, FakeEngineClient(), ModelStore.open(settings), keys=KeyManager(database)
    )
    try:
        with ServerThread(app) as url:
            yield url, database
    finally:
        database.close()


def sign_in(url: str, name: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=60)
    answer = client.post("/auth/sign-in", json={"name": name, "password": password})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf_token"]


def test_first_run_creates_the_admin_once(server: tuple[str, Database]) -> None:
    url, _ = server
    assert httpx.get(f"{url}/auth/setup").json()["needed"] is True
    with httpx.Client(base_url=url, timeout=60) as browser:
        made = browser.post("/auth/setup", json={"name": "root", "password": PASSWORD})
        assert made.status_code == 201 and made.json()["user"]["role"] == "admin"
        cookie = made.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/auth/session").json()["user"]["name"] == "root"
        assert browser.get("/admin/users").status_code == 200  # the cookie is enough to read
    again = httpx.post(f"{url}/auth/setup", json={"name": "evil", "password": PASSWORD})
    assert again.status_code == 403 and again.json()["error"]["code"] == "setup_done"
    assert httpx.get(f"{url}/auth/setup").json()["needed"] is False


def test_changes_need_the_csrf_token_and_sign_out_ends_the_session(
    server: tuple[str, Database],
) -> None:
    url, database = server
    UserManager(database).create("root", role="admin", password=PASSWORD)
    browser, csrf = sign_in(url, "root")
    with closing(browser):
        signed_out(url, browser, csrf)


def signed_out(url: str, browser: httpx.Client, csrf: str) -> None:
    made = browser.post("/admin/users", json={"name": "carol", "role": "user"})
    assert made.status_code == 403 and made.json()["error"]["code"] == "csrf_failed"
    made = browser.post(
        "/admin/users", json={"name": "carol", "role": "user"}, headers={"X-CSRF-Token": csrf}
    )
    assert made.status_code == 201
    forged = browser.post("/auth/sign-out")
    assert forged.status_code == 403  # another site cannot sign you out either
    out = browser.post("/auth/sign-out", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200
    token = out.cookies.get(SESSION_COOKIE)
    assert not token
    stale = httpx.get(f"{url}/admin/users", cookies={SESSION_COOKIE: "x" * 43}, timeout=60)
    assert stale.status_code == 401
    assert browser.get("/auth/session").status_code == 401


def test_failed_sign_ins_are_limited_per_name(server: tuple[str, Database]) -> None:
    url, database = server
    UserManager(database).create("root", role="admin", password=PASSWORD)
    for _ in range(MAX_FAILURES):
        wrong = httpx.post(f"{url}/auth/sign-in", json={"name": "root", "password": "nope nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "wrong user name or password"
    locked = httpx.post(f"{url}/auth/sign-in", json={"name": "root", "password": PASSWORD})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    form = httpx.post(f"{url}/auth/sign-in", data={"name": "x", "password": "y"})
    assert form.status_code == 400  # forms from other sites are not accepted


def test_a_session_sees_role_changes_and_disabling_at_once(server: tuple[str, Database]) -> None:
    url, database = server
    users = UserManager(database)
    users.create("root", role="admin", password=PASSWORD)
    users.create("alice", role="user", password=PASSWORD)
    browser, _ = sign_in(url, "alice")
    with closing(browser):
        assert browser.get("/admin/users").status_code == 403
        assert browser.get("/v1/models").status_code == 200
        users.set_role("alice", "admin")
        assert browser.get("/admin/users").status_code == 200
        users.disable("alice")
        assert browser.get("/v1/models").status_code == 401
