"""``/v1/fs/...`` over real HTTP: files, versions, find, rollback, shares and who may reach
what.

The server runs with authentication and a real database; the kernel is the fake engine of
the server tests with word-count embeddings (`tests.memory.conftest.WordEngine`), so what
is checked is the API's contract: shapes, ownership, path scopes, errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.fstypes import FileOwner
from llmasos.models import open_model_store
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.memory.conftest import WordEngine
from tests.server.conftest import ServerThread


@dataclass
class FsServer:
    url: str
    fs: FileSystem
    alice: str
    bob: str
    notes_app: str
    """Alice's app key limited to /notes (a manifest with files = ["/notes"])."""
    chat_only: str

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FsServer]:
    home: Path = tmp_path_factory.mktemp("fs-home")
    settings = load_settings(home=home, auth=True)
    database = open_database(settings)
    users = UserManager(database)
    users.create("alice", role="user")
    users.create("bob", role="user")
    keys = KeyManager(database)
    engine = WordEngine()
    files = FileSystem.open(settings, database, engine)
    app = create_app(
        settings, engine, open_model_store(settings), keys=keys, files=files, max_body_bytes=4096
    )
    with ServerThread(app) as url:
        yield FsServer(
            url,
            files,
            keys.create("alice", "laptop").secret,
            keys.create("bob", "laptop").secret,
            keys.create("alice", "app notes", scopes=["files:/notes"]).secret,
            keys.create("alice", "chat", scopes=["chat"]).secret,
        )
    database.close()


@pytest.fixture
def alice(server: FsServer) -> Iterator[httpx.Client]:
    with server.client(server.alice) as client:
        yield client


@pytest.fixture
def bob(server: FsServer) -> Iterator[httpx.Client]:
    with server.client(server.bob) as client:
        yield client


def assert_error(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words in error["message"]


def put(client: httpx.Client, path: str, data: bytes) -> dict:  # type: ignore[type-arg]
    response = client.put(f"/v1/fs/files/{path.lstrip('/')}", content=data)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_write_read_list_find_history_diff_and_rollback(alice: httpx.Client) -> None:
    first = put(alice, "/work/budget.md", b"# Budget\n\nThe budget for travel is small.\n")
    assert first["object"] == "fs.version" and first["version"] == 1 and first["type"] == "md"
    put(alice, "/work/budget.md", b"# Budget\n\nThe budget for travel doubled.\n")
    got = alice.get("/v1/fs/files/work/budget.md")
    assert got.content.endswith(b"doubled.\n") and got.headers["x-llmasos-version"] == "2"
    assert alice.get("/v1/fs/files/work/budget.md", params={"version": 1}).content.endswith(
        b"small.\n"
    )
    listed = alice.get("/v1/fs/list", params={"path": "/work"}).json()
    assert [e["name"] for e in listed["data"]] == ["budget.md"]
    hits = alice.post("/v1/fs/find", json={"query": "travel budget"}).json()["data"]
    assert hits[0]["path"] == "/work/budget.md" and "doubled" in hits[0]["snippet"]
    assert alice.post("/v1/fs/find", json={"query": "budget", "type": "pdf"}).json()["data"] == []
    history = alice.get("/v1/fs/history/work/budget.md").json()["data"]
    assert [v["version"] for v in history] == [2, 1]
    diff = alice.get("/v1/fs/diff/work/budget.md", params={"from": 1, "to": 2}).json()
    assert "+The budget for travel doubled." in diff["diff"]
    restored = alice.post("/v1/fs/rollback", json={"path": "/work/budget.md"}).json()
    assert restored["version"] == 3 and restored["restored_from"] == 1
    hits = alice.post("/v1/fs/find", json={"query": "doubled", "mode": "bm25"}).json()["data"]
    assert hits == []
    moved = alice.post("/v1/fs/move", json={"from": "/work/budget.md", "to": "/old/"}).json()
    assert moved["path"] == "/old/budget.md"
    deleted = alice.delete("/v1/fs/files/old/budget.md").json()
    assert deleted["deleted"] is True and deleted["operation"] == "delete"
    assert_error(alice.get("/v1/fs/files/old/budget.md"), 404, "no file")
    usage = alice.get("/v1/fs/usage").json()
    assert usage["used_bytes"] > 0 and usage["quota_bytes"] > 0


def test_another_users_paths_are_404(alice: httpx.Client, bob: httpx.Client) -> None:
    put(alice, "/private/diary.txt", b"dear diary")
    assert_error(bob.get("/v1/fs/files/private/diary.txt"), 404)
    assert_error(bob.get("/v1/fs/history/private/diary.txt"), 404)
    assert_error(bob.delete("/v1/fs/files/private/diary.txt"), 404)
    assert_error(bob.post("/v1/fs/rollback", json={"path": "/private/diary.txt"}), 404)
    assert_error(bob.post("/v1/fs/shares", json={"path": "/private/diary.txt"}), 404)
    assert bob.post("/v1/fs/find", json={"query": "diary"}).json()["data"] == []


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("%2e%2e/%2e%2e/etc/passwd", "climbs out"),
        ("a/%00b", "NUL"),
        ("a/%0Ab", "control character"),
        ("a%5Cb", "backslash"),
        ("x" * 300, "bytes"),
    ],
)
def test_bad_paths_are_400_naming_the_problem(alice: httpx.Client, path: str, words: str) -> None:
    assert_error(alice.put(f"/v1/fs/files/{path}", content=b"x"), 400, words)


def test_bad_requests_and_limits(server: FsServer, alice: httpx.Client) -> None:
    assert_error(alice.put("/v1/fs/files/big.bin", content=b"x" * 5000), 413)
    assert_error(alice.post("/v1/fs/find", json={"query": ""}), 400, "query")
    assert_error(alice.post("/v1/fs/find", json={"query": "x", "k": 0}), 400, "k")
    assert_error(alice.get("/v1/fs/files/none.txt", params={"version": "x"}), 400, "version")
    put(alice, "/q/one.txt", b"one")
    assert_error(alice.post("/v1/fs/rollback", json={"path": "/q/one.txt"}), 400, "one version")
    put(alice, "/q/two.txt", b"two")
    assert_error(alice.post("/v1/fs/move", json={"from": "/q/one.txt", "to": "/q/two.txt"}), 409)
    saved = server.fs.quota_bytes
    owner = FileOwner.for_user(UserManager(server.fs.database).get("alice").id)
    server.fs.quota_bytes = server.fs.usage(owner)["used_bytes"] + 10
    try:
        assert_error(alice.put("/v1/fs/files/q/three.txt", content=b"y" * 100), 507, "quota")
    finally:
        server.fs.quota_bytes = saved


def test_an_app_key_reaches_only_its_directories(server: FsServer, alice: httpx.Client) -> None:
    put(alice, "/notes/todo.md", b"buy milk")
    put(alice, "/taxes/2025.txt", b"tax milk numbers")
    with server.client(server.notes_app) as app:
        assert app.get("/v1/fs/files/notes/todo.md").content == b"buy milk"
        put(app, "/notes/new.md", b"from the app")
        assert_error(app.get("/v1/fs/files/taxes/2025.txt"), 403, "/notes")
        assert_error(app.put("/v1/fs/files/taxes/x.txt", content=b"x"), 403)
        assert_error(app.post("/v1/fs/move", json={"from": "/notes/new.md", "to": "/t/"}), 403)
        paths = [h["path"] for h in app.post("/v1/fs/find", json={"query": "milk"}).json()["data"]]
        assert paths == ["/notes/todo.md"]
        names = [e["name"] for e in app.get("/v1/fs/list").json()["data"]]
        assert "taxes" not in names and "notes" in names
        assert_error(app.get("/v1/fs/list", params={"path": "/taxes"}), 403)
        assert_error(app.post("/v1/fs/ask", json={"instruction": "delete everything"}), 403)
    with server.client(server.chat_only) as chat:
        assert_error(chat.get("/v1/fs/list"), 403, "files")


def test_shares_are_read_by_anyone_holding_the_token(
    server: FsServer, alice: httpx.Client, bob: httpx.Client
) -> None:
    put(alice, "/pub/readme.txt", b"hello world")
    share = alice.post("/v1/fs/shares", json={"path": "/pub/readme.txt"})
    assert share.status_code == 201
    body = share.json()
    assert body["token"].startswith("fsh_") and body["url"] == f"/v1/fs/shared/{body['token']}"
    with server.client(None) as anonymous:
        assert anonymous.get(body["url"]).content == b"hello world"
        assert_error(anonymous.get("/v1/fs/files/pub/readme.txt"), 401)
        assert_error(anonymous.get("/v1/fs/shared/fsh_wrong"), 404)
    assert bob.get(body["url"]).content == b"hello world"
    assert [s["id"] for s in alice.get("/v1/fs/shares").json()["data"]] == [body["id"]]
    assert_error(bob.delete(f"/v1/fs/shares/{body['id']}"), 404)
    assert alice.delete(f"/v1/fs/shares/{body['id']}").json()["deleted"] is True
    assert_error(bob.get(body["url"]), 404)
