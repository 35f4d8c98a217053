"""``/v1/apps``: the app manager over HTTP, with authentication on: who may do what, the
review before an install, uploads, and refusals that change nothing. Starting an app is
covered by the console's browser test (it opens one); the supervisor's own tests cover the
process side."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.apps.catalog import builtin_path
from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient


@dataclass
class Site:
    url: str
    home: Path
    keys: dict[str, str]

    def call(self, who: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("apps-api") / "home"
    settings = Settings(home=home, auth=True)
    database = open_database(settings)
    users, keys = UserManager(database), KeyManager(database)
    secrets = {}
    for name, role in [("root", "admin"), ("alice", "user")]:
        users.create(name, role=role)
        secrets[name] = keys.create(name, "main").secret
    app = create_app(settings, FakeEngineClient(), ModelStore.open(settings), keys=keys)
    try:
        with ServerThread(app) as url:
            yield Site(url, home, secrets)
    finally:
        database.close()


def archive_of(name: str) -> bytes:
    """A built-in app's directory as a .tar.gz, the way a developer would ship it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(
            builtin_path(name),
            arcname=name,
            filter=lambda i: None if "__pycache__" in i.name else i,
        )
    return buffer.getvalue()


def test_a_user_lists_apps_but_only_an_admin_changes_them(site: Site) -> None:
    assert site.call("alice", "GET", "/v1/apps").json()["data"] == []
    builtins = site.call("alice", "GET", "/v1/apps/builtins").json()["data"]
    assert "builtin:summarizer" in {b["source"] for b in builtins}
    for method, path in [
        ("POST", "/v1/apps/review"),
        ("POST", "/v1/apps"),
        ("POST", "/v1/apps/summarizer/start"),
        ("DELETE", "/v1/apps/summarizer"),
        ("GET", "/v1/apps/summarizer/logs"),
    ]:
        answer = site.call("alice", method, path, json={"source": "builtin:summarizer"})
        assert answer.status_code == 403, (method, path, answer.text)
    assert not (site.home / "apps" / "summarizer").exists()


def test_install_needs_the_reviewed_manifest(site: Site) -> None:
    review = site.call("root", "POST", "/v1/apps/review", json={"source": "builtin:summarizer"})
    assert review.status_code == 200, review.text
    body = review.json()
    assert body["name"] == "summarizer" and body["installed"] is False
    assert "call services.summarize" in body["permission_lines"]
    assert body["confinement"]["summary"]
    assert not (site.home / "apps" / "summarizer").exists()  # a review installs nothing

    source = {"source": "builtin:summarizer"}
    missing = site.call("root", "POST", "/v1/apps", json=source)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "review_id"
    other = site.call("root", "POST", "/v1/apps", json={**source, "review_id": "0" * 32})
    assert other.status_code == 409 and other.json()["error"]["code"] == "review_changed"
    assert site.call("root", "GET", "/v1/apps/summarizer").status_code == 404

    made = site.call("root", "POST", "/v1/apps", json={**source, "review_id": body["review_id"]})
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "stopped" and made.json()["url"] is None
    listed = site.call("alice", "GET", "/v1/apps").json()["data"]
    assert [a["name"] for a in listed] == ["summarizer"]
    again = site.call("root", "POST", "/v1/apps", json={**source, "review_id": body["review_id"]})
    assert again.status_code == 400 and again.json()["error"]["code"] == "already_installed"
    assert site.call("root", "GET", "/v1/apps/summarizer/logs").json()["lines"] == []
    removed = site.call("root", "DELETE", "/v1/apps/summarizer")
    assert removed.status_code == 200 and removed.json()["deleted"] is True
    assert site.call("root", "GET", "/v1/apps/summarizer").status_code == 404


def test_an_uploaded_archive_is_reviewed_then_installed(site: Site) -> None:
    data = archive_of("translator")
    files = {"file": ("translator.tar.gz", data, "application/gzip")}
    review = site.call("root", "POST", "/v1/apps/review", files=files)
    assert review.status_code == 200, review.text
    assert review.json()["name"] == "translator"
    made = site.call(
        "root", "POST", "/v1/apps", files=files, data={"review_id": review.json()["review_id"]}
    )
    assert made.status_code == 201, made.text
    assert {a["name"] for a in site.call("root", "GET", "/v1/apps").json()["data"]} >= {
        "translator"
    }
    assert not list((site.home / "apps").glob(".upload-*"))  # the upload is not kept
    site.call("root", "DELETE", "/v1/apps/translator")


@pytest.mark.parametrize(
    ("request_kwargs", "param"),
    [
        ({"json": {"source": "/etc"}}, "source"),
        ({"json": {"source": "builtin:nope"}}, None),
        ({"files": {"file": ("x.tar.gz", b"not an archive", "application/gzip")}}, "file"),
        ({"content": b"{not json"}, None),
    ],
)
def test_bad_sources_are_refused_readably(
    site: Site, request_kwargs: dict[str, object], param: str | None
) -> None:
    answer = site.call("root", "POST", "/v1/apps/review", **request_kwargs)
    assert answer.status_code in (400, 404, 422), answer.text
    error = answer.json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param


def test_logs_lines_are_bounded(site: Site) -> None:
    answer = site.call("root", "GET", "/v1/apps/nothing/logs", params={"lines": 0})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "lines"
