"""``/v1/vector_stores`` over real HTTP with the real ``openai`` client: stores, files,
background ingestion with status and progress, search with attribute filters, re-adding a
changed file, failures and retries, chunk editing, ownership and bad input."""

from __future__ import annotations

import openai
import pytest

from tests.knowledge.conftest import KnowledgeServer, wait_for_file

BUDGET = b"""# Budget 2024

## Travel

The travel budget for the Lisbon offsite is 12000 euros, approved by Maria.

## Hardware

We buy four laptops for the design team this quarter.
"""
GARDEN = b"""<html><head><title>Garden</title></head><body>
<h1>Garden notes</h1><p>Tomatoes need full sun and water every morning.</p>
<p>Basil grows well beside the tomatoes.</p></body></html>"""


def add(client: openai.OpenAI, kb: KnowledgeServer, store_id: str, name: str, data: bytes,
        **extra: object) -> dict[str, object]:  # fmt: skip
    file = client.files.create(file=(name, data), purpose="assistants")
    client.vector_stores.files.create(vector_store_id=store_id, file_id=file.id, **extra)  # type: ignore[arg-type]
    with kb.client(kb.alice) as http:
        return wait_for_file(http, store_id, file.id)


def test_create_add_search_with_the_openai_client(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(
        name="work",
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 64, "chunk_overlap_tokens": 16},
        },
    )
    assert store.id.startswith("vs_") and store.status == "completed"
    budget = add(alice, kb_server, store.id, "budget.md", BUDGET, attributes={"year": 2024})
    garden = add(alice, kb_server, store.id, "garden.html", GARDEN, attributes={"year": 2023})
    assert budget["status"] == garden["status"] == "completed"
    assert budget["progress"]["chunks_done"] == budget["progress"]["chunks_total"] >= 2  # type: ignore[index]
    assert budget["chunking_strategy"]["static"]["max_chunk_size_tokens"] == 64  # type: ignore[index]
    retrieved = alice.vector_stores.retrieve(store.id)
    assert retrieved.file_counts.completed == 2 and retrieved.usage_bytes > 0

    page = alice.vector_stores.search(store.id, query="travel budget Lisbon", max_num_results=3)
    top = page.data[0]
    assert top.filename == "budget.md" and top.file_id == budget["id"]
    assert "12000 euros" in top.content[0].text
    assert 0 <= top.score <= 1 and top.attributes == {"year": 2024}

    only_2023 = alice.vector_stores.search(
        store.id, query="travel budget", filters={"type": "eq", "key": "year", "value": 2023}
    )
    assert {r.filename for r in only_2023.data} == {"garden.html"}
    either = alice.vector_stores.search(
        store.id,
        query="tomatoes laptops",
        filters={"type": "or", "filters": [
            {"type": "gte", "key": "year", "value": 2024},
            {"type": "eq", "key": "year", "value": 2023},
        ]},
    )  # fmt: skip
    assert {r.filename for r in either.data} == {"budget.md", "garden.html"}

    listed = alice.vector_stores.files.list(vector_store_id=store.id)
    assert {f.id for f in listed} == {budget["id"], garden["id"]}
    alice.vector_stores.files.delete(file_id=garden["id"], vector_store_id=store.id)
    after = alice.vector_stores.search(store.id, query="tomatoes basil")
    assert all(r.filename != "garden.html" for r in after.data)


def test_a_changed_file_added_again_replaces_the_old_chunks(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="notes")
    first = add(alice, kb_server, store.id, "plan.md", b"# Plan\n\nThe launch is in March.")
    second = add(alice, kb_server, store.id, "plan.md", b"# Plan\n\nThe launch moved to June.")
    assert second["status"] == "completed"
    files = {f.id for f in alice.vector_stores.files.list(vector_store_id=store.id)}
    assert files == {second["id"]}
    texts = [r.content[0].text for r in alice.vector_stores.search(store.id, query="launch").data]
    assert texts and all("June" in t for t in texts)
    assert first["id"] not in files


def test_an_unsupported_file_fails_alone_and_can_be_retried(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="mixed")
    good = add(alice, kb_server, store.id, "budget.md", BUDGET)
    bad = add(alice, kb_server, store.id, "tool.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff")
    corrupt = add(alice, kb_server, store.id, "report.pdf", b"%PDF-1.7\nnot really a pdf")
    assert good["status"] == "completed"
    assert bad["status"] == "failed" and bad["last_error"]["code"] == "unsupported_file"  # type: ignore[index]
    assert corrupt["status"] == "failed" and corrupt["last_error"]["message"]  # type: ignore[index]
    counts = alice.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 2, 3)
    assert alice.vector_stores.search(store.id, query="travel budget").data  # still usable
    retried = alice.vector_stores.files.create(vector_store_id=store.id, file_id=str(bad["id"]))
    assert retried.status == "in_progress" and retried.last_error is None
    with kb_server.client(kb_server.alice) as http:
        assert wait_for_file(http, store.id, str(bad["id"]))["status"] == "failed"


def test_search_on_a_store_being_indexed_answers_from_what_is_indexed(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="growing")
    add(alice, kb_server, store.id, "budget.md", BUDGET)
    kb_server.engine.gate.clear()
    try:
        slow = alice.files.create(file=("slow.md", b"slowfile travel notes"), purpose="assistants")
        alice.vector_stores.files.create(vector_store_id=store.id, file_id=slow.id)
        with kb_server.client(kb_server.alice) as http:
            body = http.post(
                f"/v1/vector_stores/{store.id}/search", json={"query": "travel"}
            ).json()
        assert body["vector_store_status"] == "in_progress"
        assert body["file_counts"]["in_progress"] == 1
        assert {r["filename"] for r in body["data"]} == {"budget.md"}
    finally:
        kb_server.engine.gate.set()
    with kb_server.client(kb_server.alice) as http:
        assert wait_for_file(http, store.id, slow.id)["status"] == "completed"
    assert alice.vector_stores.retrieve(store.id).status == "completed"


def test_chunks_can_be_read_edited_and_disabled_and_search_follows_at_once(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    store = alice.vector_stores.create(name="edits")
    file = add(alice, kb_server, store.id, "budget.md", BUDGET)
    with kb_server.client(kb_server.alice) as http:
        chunks = http.get(f"/v1/vector_stores/{store.id}/files/{file['id']}/chunks").json()
        assert [c["position"] for c in chunks["data"]] == list(range(len(chunks["data"])))
        chunk = chunks["data"][0]
        assert http.get(f"/v1/vector_stores/{store.id}/chunks/{chunk['id']}").json() == chunk

        edited = http.patch(
            f"/v1/vector_stores/{store.id}/chunks/{chunk['id']}",
            json={"text": "The zeppelin fund holds 300 euros."},
        ).json()
        assert edited["edited"] and edited["text"] == "The zeppelin fund holds 300 euros."
        found = http.post(f"/v1/vector_stores/{store.id}/search", json={"query": "zeppelin"})
        assert found.json()["data"][0]["chunk_id"] == chunk["id"]

        http.patch(f"/v1/vector_stores/{store.id}/chunks/{chunk['id']}", json={"disabled": True})
        found = http.post(f"/v1/vector_stores/{store.id}/search", json={"query": "zeppelin"})
        assert chunk["id"] not in [r["chunk_id"] for r in found.json()["data"]]

        http.patch(f"/v1/vector_stores/{store.id}/chunks/{chunk['id']}", json={"disabled": False})
        found = http.post(f"/v1/vector_stores/{store.id}/search", json={"query": "zeppelin"})
        assert found.json()["data"][0]["chunk_id"] == chunk["id"]


def test_another_users_stores_files_and_chunks_are_not_found(
    kb_server: KnowledgeServer, alice: openai.OpenAI
) -> None:
    bob = kb_server.openai(kb_server.bob)
    store = alice.vector_stores.create(name="private")
    file = add(alice, kb_server, store.id, "budget.md", BUDGET)
    for call in (
        lambda: bob.vector_stores.retrieve(store.id),
        lambda: bob.vector_stores.delete(store.id),
        lambda: bob.vector_stores.search(store.id, query="budget"),
        lambda: bob.vector_stores.files.list(vector_store_id=store.id),
        lambda: bob.vector_stores.files.retrieve(file_id=str(file["id"]), vector_store_id=store.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    bobs = bob.vector_stores.create(name="bob's")
    with pytest.raises(openai.NotFoundError):  # alice's file into bob's store
        bob.vector_stores.files.create(vector_store_id=bobs.id, file_id=str(file["id"]))
    bob.vector_stores.delete(bobs.id)
    assert store.id not in [s.id for s in bob.vector_stores.list()]
    with kb_server.client(kb_server.bob) as http:
        chunks = http.get(f"/v1/vector_stores/{store.id}/files/{file['id']}/chunks")
        assert chunks.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("", {"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 8,
                                                                 "chunk_overlap_tokens": 0}}},
         "chunking_strategy.static.max_chunk_size_tokens"),
        ("", {"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100,
                                                                 "chunk_overlap_tokens": 60}}},
         "chunking_strategy.static.chunk_overlap_tokens"),
        ("", {"chunking_strategy": {"type": "semantic"}}, "chunking_strategy"),
        ("", {"metadata": {"k": 1}}, "metadata"),
        ("/search", {"query": ""}, "query"),
        ("/search", {"query": "x", "max_num_results": 0}, "max_num_results"),
        ("/search", {"query": "x", "filters": {"type": "like", "key": "a", "value": 1}},
         "filters.type"),
        ("/search", {"query": "x", "filters": {"type": "and", "filters": [
            {"type": "eq", "key": "a", "value": {"x": 1}}]}}, "filters.filters[0].value"),
        ("/search", {"query": "x", "ranking_options": {"ranker": "magic"}},
         "ranking_options.ranker"),
        ("/files", {"file_id": "file-000000000000000000000000", "attributes": {"a": [1]}},
         "attributes.a"),
    ],
)  # fmt: skip
def test_bad_input_is_400_naming_the_field(
    kb_server: KnowledgeServer, alice: openai.OpenAI, path: str, body: dict[str, object], param: str
) -> None:
    with kb_server.client(kb_server.alice) as http:
        url = "/v1/vector_stores"
        if path:
            url += "/" + http.post(url, json={"name": "x"}).json()["id"] + path
        response = http.post(url, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_ids_are_404(kb_server: KnowledgeServer, alice: openai.OpenAI) -> None:
    store = alice.vector_stores.create(name="x")
    with kb_server.client(kb_server.alice) as http:
        for method, url in (
            ("GET", "/v1/vector_stores/vs_000000000000000000000000"),
            ("GET", "/v1/vector_stores/../../etc"),
            ("POST", f"/v1/vector_stores/{store.id}/files"),
            ("GET", f"/v1/vector_stores/{store.id}/chunks/chunk_99999"),
            ("GET", f"/v1/vector_stores/{store.id}/chunks/abc"),
        ):
            body = {"file_id": "file-000000000000000000000000"} if method == "POST" else None
            assert http.request(method, url, json=body).status_code == 404, url
