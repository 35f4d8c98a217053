"""``/v1/vector_stores/{id}/graph`` over real HTTP (authentication on, two users): a
background build with status and progress, questions by POST and GET, graph mode through the
real ``openai`` client's search, a build while a file is still being indexed, OpenAI's error
shape for bad input and another user's store. The extractor is the deterministic one of
``graphs.py``; the real model's run is in ``test_knowledge_model.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmasos.config import Settings
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.storage import Database
from tests.knowledge.conftest import (
    KnowledgeEngine,
    KnowledgeServer,
    serve_knowledge,
    wait_for_file,
)
from tests.knowledge.graphs import graph_kb

PEOPLE = b"Maria manages Acme. Bob knows Maria."
PLACES = b"Acme owns Lisbon. Lisbon hosts Offsite."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeServer]:
    def open_knowledge(
        settings: Settings, database: Database, engine: KnowledgeEngine
    ) -> KnowledgeBase:
        return graph_kb(settings, database, engine)[0]

    yield from serve_knowledge(tmp_path_factory.mktemp("kg-home"), open_knowledge)


def add(http: httpx.Client, store: str, name: str, data: bytes, wait: bool = True) -> str:
    file = http.post(
        "/v1/files", files={"file": (name, data)}, data={"purpose": "assistants"}
    ).json()
    http.post(f"/v1/vector_stores/{store}/files", json={"file_id": file["id"]})
    if wait:
        assert wait_for_file(http, store, file["id"])["status"] == "completed"
    return str(file["id"])


def built(http: httpx.Client, store: str) -> dict[str, Any]:
    info: dict[str, Any] = http.post(f"/v1/vector_stores/{store}/graph").json()
    assert info["object"] == "vector_store.graph" and info["status"] in (
        "in_progress", "completed",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while info["status"] == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.05)
        info = http.get(f"/v1/vector_stores/{store}/graph").json()
    return info


def test_build_status_and_questions(server: KnowledgeServer) -> None:
    with server.client(server.alice) as http, server.client(server.bob) as other:
        store = http.post("/v1/vector_stores", json={"name": "graph"}).json()["id"]
        before = http.get(f"/v1/vector_stores/{store}/graph").json()
        assert before["status"] == "none" and before["entities"] == 0
        add(http, store, "people.md", PEOPLE)
        add(http, store, "places.md", PLACES)
        info = built(http, store)
        assert info["status"] == "completed" and info["last_error"] is None
        assert info["progress"] == {"chunks_total": 2, "chunks_done": 2}
        assert (info["entities"], info["relations"], info["model"]) == (5, 4, "sentences")

        answer = http.post(
            f"/v1/vector_stores/{store}/graph/query",
            json={"query": "How is Bob related to Lisbon?"},
        ).json()
        assert answer["object"] == "vector_store.graph.answer" and answer["found"]
        assert answer["mode"] == "path" and answer["graph_status"] == "completed"
        assert [e["name"] for e in answer["entities"]] == ["Bob", "Lisbon"]
        assert [e["hop"] for e in answer["edges"]] == [1, 2, 3]
        for edge in answer["edges"]:
            assert set(edge) == {"subject", "predicate", "object", "hop", "citation"}
            cite = edge["citation"]
            assert cite["chunk_id"].startswith("chunk_") and cite["file_id"].startswith("file-")
            chunk = http.get(f"/v1/vector_stores/{store}/chunks/{cite['chunk_id']}").json()
            assert cite["quote"] in chunk["text"] and cite["filename"] == chunk["filename"]

        near = http.get(
            f"/v1/vector_stores/{store}/graph/query", params={"query": "acme", "hops": 2}
        ).json()
        assert near["mode"] == "neighbourhood" and len(near["edges"]) == 4
        missing = http.post(
            f"/v1/vector_stores/{store}/graph/query", json={"query": "Who is Zeppelin?"}
        )
        assert missing.status_code == 200 and not missing.json()["found"]
        assert "not found" in missing.json()["message"]

        bad = http.post(f"/v1/vector_stores/{store}/graph/query", json={"query": "x", "hops": 9})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "hops"
        blank = http.post(f"/v1/vector_stores/{store}/graph/query", json={"query": " "})
        assert blank.status_code == 400 and blank.json()["error"]["type"] == "invalid_request_error"
        for method, path in (
            ("GET", "/graph"),
            ("POST", "/graph"),
            ("GET", "/graph/query?query=Maria"),
            ("GET", "/graph/entities"),
        ):
            response = other.request(method, f"/v1/vector_stores/{store}{path}")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "vector_store_not_found"
        assert other.post("/v1/vector_stores/vs_nope/graph").status_code == 404


def test_graph_mode_through_the_openai_client(server: KnowledgeServer) -> None:
    client = server.openai(server.alice)
    store = client.vector_stores.create(name="mode")
    with server.client(server.alice) as http:
        add(http, store.id, "a.md", b"Maria manages Acme. The budget review is Monday.")
        add(http, store.id, "b.md", b"Acme owns Lisbon.")
        for n in range(4):
            add(http, store.id, f"noise{n}.md", f"Weather note {n} about rain.".encode())
        built(http, store.id)
    plain = client.vector_stores.search(store.id, query="budget review", max_num_results=3)
    graph = client.vector_stores.search(
        store.id,
        query="budget review",
        max_num_results=3,
        ranking_options={"ranker": "auto", "graph": True},  # type: ignore[typeddict-unknown-key]
    )
    assert plain.data[0].filename == graph.data[0].filename == "a.md"
    assert "b.md" in [r.filename for r in graph.data]
    assert all(0 <= r.score <= 1 for r in graph.data)


def test_a_build_during_indexing_uses_what_is_indexed(server: KnowledgeServer) -> None:
    with server.client(server.alice) as http:
        store = http.post("/v1/vector_stores", json={"name": "busy"}).json()["id"]
        add(http, store, "people.md", PEOPLE)
        server.engine.gate.clear()
        try:
            slow = add(http, store, "slow.md", b"Slowfile Acme owns Lisbon.", wait=False)
            info = built(http, store)
            assert info["status"] == "completed" and info["files_in_progress"] == 1
            assert info["chunks_extracted"] == 1
        finally:
            server.engine.gate.set()
        assert wait_for_file(http, store, slow)["status"] == "completed"
        assert http.get(f"/v1/vector_stores/{store}/graph").json()["chunks_pending"] == 1
        again = built(http, store)
        assert again["files_in_progress"] == 0 and again["chunks_extracted"] == 2
