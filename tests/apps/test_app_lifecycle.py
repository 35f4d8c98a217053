"""Apps as their own processes: capability keys across the process boundary, crashes, and
``app new -> install -> list -> start -> call -> upgrade -> remove`` from the CLI.

The permission test runs a real ``llmasos serve --auth`` on a free port with a temporary
home; the app it starts reaches that server only over HTTP with the key it was given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import llmasos.cli.main  # noqa: F401  (registers every command)
from llmasos.access.audit import AuditLog
from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppStartError, AppSupervisor, app_user
from llmasos.cli.root import app as cli
from llmasos.cli.root import state
from llmasos.config import load_settings
from llmasos.storage import open_database
from llmasos.storage.database import Database
from tests.cli.test_output import documented_fields
from tests.serving import llmasos_serve

PROBE_MANIFEST = """[app]
name = "probe"
version = "1.0.0"
description = "Tries calls inside and outside its permissions."
entry = "app:app"

[permissions]
calls = ["services.summarize"]
models = ["smollm2"]
"""

PROBE_APP = """
from starlette.requests import Request

import llmasos
from llmasos.errors import LLMasOSError

client = llmasos.Client()
app = llmasos.Application(name="probe")


def attempt(call):
    try:
        call()
    except LLMasOSError as error:
        return {"status": error.status_code, "message": error.message}
    return {"status": 200}


@app.route("/try-chat")
def try_chat() -> dict:
    return attempt(lambda: client.chat("Say hi", max_tokens=2))


@app.route("/try-translate")
def try_translate() -> dict:
    return attempt(lambda: client.call("translate", {"text": "hi", "target_language": "French"}))


@app.route("/try-summarize-info")
def try_summarize_info() -> dict:
    return attempt(lambda: client.service("summarize"))


@app.route("/headers")
def headers(request: Request) -> dict:
    return {"authorization": request.headers.get("authorization"), "path": request.url.path}


@app.route("/summarize")
def summarize(text: str) -> str:
    return str(client.call("summarize", text, parameters={"max_tokens": 12}).output)
"""


@dataclass
class AuthServer:
    url: str
    home: Path
    database: Database
    admin_key: str


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    home = tmp_path_factory.mktemp("apps-auth-home")
    database = open_database(load_settings(home=home))
    UserManager(database).create("root", role="admin")
    admin_key = KeyManager(database).create("root", "ops").secret
    try:
        with llmasos_serve(home, "--auth") as url:
            yield AuthServer(url=url, home=home, database=database, admin_key=admin_key)
    finally:
        database.close()


def write_app(directory: Path, manifest: str, code: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "llmasos-app.toml").write_text(manifest)
    (directory / "app.py").write_text(code)
    return directory


@pytest.fixture(scope="module")
def probe(auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = AppStore(auth_server.home)
    store.install(
        str(write_app(tmp_path_factory.mktemp("src") / "probe", PROBE_MANIFEST, PROBE_APP))
    )
    supervisor = AppSupervisor(store, auth_server.database, auth_server.url)
    running = supervisor.start("probe")
    try:
        yield running.url
    finally:
        supervisor.stop("probe")


def test_an_app_reaches_only_what_its_manifest_declares(
    auth_server: AuthServer, probe: str
) -> None:
    keys = KeyManager(auth_server.database).list(app_user("probe"))
    active = [key for key in keys if key.status() == "active"]
    assert [(k.scopes, k.models) for k in active] == [(["services:summarize"], ["smollm2"])]

    assert httpx.get(f"{probe}/try-summarize-info", timeout=30).json() == {"status": 200}
    denied = httpx.get(f"{probe}/try-chat", timeout=30).json()
    assert denied["status"] == 403 and "lacks the scope 'chat'" in denied["message"]
    assert httpx.get(f"{probe}/try-translate", timeout=30).json()["status"] == 403

    audit = AuditLog(auth_server.database).list()
    denials = [(e.target, e.detail or "") for e in audit if e.action == "request.denied"]
    assert any(
        target == "POST /v1/chat/completions" and active[0].key_id in detail
        for target, detail in denials
    ), denials
    assert any(target == "POST /v1/services/translate" for target, _ in denials)


def test_the_server_proxies_running_apps_without_the_callers_key(
    auth_server: AuthServer, probe: str
) -> None:
    key = {"Authorization": f"Bearer {auth_server.admin_key}"}
    through = httpx.get(f"{auth_server.url}/apps/probe/headers", headers=key, timeout=30)
    assert through.status_code == 200
    assert through.json() == {"authorization": None, "path": "/headers"}
    posted = httpx.post(f"{auth_server.url}/apps/probe/try-chat", json={}, headers=key, timeout=30)
    assert posted.json()["status"] == 403  # the app's own key, not the admin's, reached chat
    assert httpx.get(f"{auth_server.url}/apps/probe/headers", timeout=30).status_code == 401
    missing = httpx.get(f"{auth_server.url}/apps/nothing/", headers=key, timeout=30)
    assert missing.status_code == 404 and "no running app" in missing.text


@pytest.mark.model
def test_an_app_calls_its_declared_service(probe: str) -> None:
    response = httpx.post(
        f"{probe}/summarize",
        json={"text": "The cat sat on the mat all day. It was warm and happy there."},
        timeout=120,
    )
    assert response.status_code == 200 and response.text.strip()


FILER_MANIFEST = """[app]
name = "filer"
version = "1.0.0"
entry = "app:app"

[permissions]
files = ["/notes"]
"""

FILER_APP = """
import llmasos
from llmasos.errors import LLMasOSError

client = llmasos.Client()
app = llmasos.Application(name="filer")


@app.route("/run")
def run() -> dict:
    report = {}
    written = client.files.write("/notes/groceries.md", "Buy apples and oat milk.")
    report["version"] = written["version"]
    report["read"] = client.files.read("/notes/groceries.md").decode()
    report["found"] = [hit["path"] for hit in client.files.find("apples")]
    for name, call in (
        ("outside", lambda: client.files.write("/taxes/2025.txt", "numbers")),
        ("read_outside", lambda: client.files.read("/taxes/2025.txt")),
        ("chat", lambda: client.chat("hi", max_tokens=2)),
    ):
        try:
            call()
            report[name] = 200
        except LLMasOSError as error:
            report[name] = error.status_code
    return report
"""


def test_an_app_reaches_only_the_directories_its_files_permission_names(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    store = AppStore(auth_server.home)
    store.install(str(write_app(tmp_path / "filer", FILER_MANIFEST, FILER_APP)))
    supervisor = AppSupervisor(store, auth_server.database, auth_server.url)
    running = supervisor.start("filer")
    try:
        keys = KeyManager(auth_server.database).list(app_user("filer"))
        assert [k.scopes for k in keys if k.status() == "active"] == [["files:/notes"]]
        report = httpx.get(f"{running.url}/run", timeout=60).json()
    finally:
        supervisor.stop("filer")
        store.remove("filer")
    assert report == {
        "version": 1,
        "read": "Buy apples and oat milk.",
        "found": ["/notes/groceries.md"],
        "outside": 403,
        "read_outside": 403,
        "chat": 403,
    }


def test_stop_revokes_the_key_and_a_crash_on_start_shows_the_log(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    store = AppStore(auth_server.home)
    crashing = PROBE_MANIFEST.replace('"probe"', '"crashy"')
    store.install(
        str(write_app(tmp_path / "crashy", crashing, "raise RuntimeError('boom at import')\n"))
    )
    supervisor = AppSupervisor(store, auth_server.database, auth_server.url)
    with pytest.raises(AppStartError, match="boom at import") as caught:
        supervisor.start("crashy", timeout=30)
    assert "exited with status 1" in caught.value.message
    assert supervisor.status("crashy") is None
    keys = KeyManager(auth_server.database).list(app_user("crashy"))
    assert keys and all(key.status() == "revoked" for key in keys)
    assert any("boom at import" in line for line in supervisor.logs("crashy"))
    store.remove("crashy")


runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    state.reset()
    yield home
    with open_database(load_settings(home=home)) as database:  # never leave an app running
        supervisor = AppSupervisor(AppStore(home), database, "http://127.0.0.1:9")
        for installed in supervisor.store.list():
            supervisor.stop(installed.name)
    state.reset()


def test_new_install_list_start_call_upgrade_remove(cli_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "hello"
    assert "created hello 0.1.0" in run(
        "app", "new", "hello", "--template", "service", "--dir", str(source)
    )
    assert "installed hello 0.1.0" in run("app", "install", str(source), "--yes")
    assert re.search(r"hello\s+0\.1\.0\s+stopped", run("app", "list"))

    started = run("app", "start", "hello")
    url = re.search(r"http://127\.0\.0\.1:\d+", started)
    assert url is not None
    index = httpx.get(url.group(0) + "/", timeout=10).json()
    assert index["name"] == "hello" and [r["path"] for r in index["routes"]] == ["/summarize"]
    assert "running" in run("app", "list")

    manifest = source / "llmasos-app.toml"
    manifest.write_text(manifest.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    assert "upgraded hello 0.1.0 -> 0.2.0" in run("app", "upgrade", str(source), "--yes")
    info = run("app", "info", "hello")
    assert "version:     0.2.0" in info and "running" in info
    new_url = re.search(r"http://127\.0\.0\.1:\d+", info)
    assert new_url is not None
    details = json.loads(run("app", "info", "hello", "--json"))
    assert details["version"] == "0.2.0" and details["state"] == "running"
    assert details["url"] == new_url.group(0) and details["permissions"]["network"] is False
    assert list(details) == documented_fields("app", "info")
    listed = json.loads(run("app", "list", "--json"))
    assert [(a["name"], a["state"]) for a in listed] == [("hello", "running")]
    assert list(listed[0]) == documented_fields("app", "list")
    assert httpx.get(new_url.group(0) + "/health", timeout=10).json() == {"status": "ok"}
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.group(0) + "/health", timeout=2)  # the old process is gone
    assert not (cli_home / "apps" / "hello" / "0.1.0").exists()
    assert "starting hello 0.2.0" in run("app", "logs", "hello")

    assert "removed hello 0.2.0" in run("app", "remove", "hello")
    assert "hello" not in run("app", "list")
    with pytest.raises(httpx.HTTPError):
        httpx.get(new_url.group(0) + "/health", timeout=2)
