"""Citations on every path, over real HTTP with the real ``openai`` client: the
``file_search`` tool in ``/v1/responses`` (plain and streaming), chat completions with
``metadata.vector_store_ids`` (plain and streaming) and the ``answer`` service grounded on
vector stores — and what each says when nothing relevant is found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmasos.kernel.interface import GenerateRequest
from llmasos.knowledge.citations import NOTHING_FOUND
from tests.knowledge.conftest import KnowledgeServer, wait_for_file
from tests.server.fake_engine import default_script

DOCS = {
    "travel.md": b"# Travel\n\nThe travel budget for the Lisbon offsite is 12000 euros.",
    "laptops.md": b"# Laptops\n\nThe travel budget does not cover laptops: 1500 euros each.",
    "garden.md": b"# Garden\n\nTomatoes need full sun and water every morning.",
}
QUESTION = "What is the travel budget for the Lisbon offsite?"


def citing(request: GenerateRequest) -> list[str]:
    if any("[1]" in str(m.get("content", "")) for m in request.messages or []):
        return ["The budget is 12000 euros [1]", ", laptops are apart [2]."]
    return default_script(request)


@pytest.fixture(scope="module")
def store(kb_server: KnowledgeServer) -> str:
    client = kb_server.openai(kb_server.alice)
    created = client.vector_stores.create(name="cited")
    with kb_server.client(kb_server.alice) as http:
        for name, data in DOCS.items():
            file = client.files.create(file=(name, data), purpose="assistants")
            client.vector_stores.files.create(vector_store_id=created.id, file_id=file.id)
            assert wait_for_file(http, created.id, file.id)["status"] == "completed"
    return created.id


@pytest.fixture
def engine(kb_server: KnowledgeServer) -> Iterator[Any]:
    kb_server.engine.reset()
    kb_server.engine.script = citing
    yield kb_server.engine
    kb_server.engine.reset()


def test_file_search_in_responses_annotates_the_answer(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    client = kb_server.openai(kb_server.alice)
    response = client.responses.create(
        input=QUESTION, tools=[{"type": "file_search", "vector_store_ids": [store]}]
    )
    call, message = response.output[0], response.output[1]
    assert call.type == "file_search_call" and call.queries == [QUESTION]
    assert call.results and call.results[0].filename == "travel.md"
    assert message.type == "message"
    part = message.content[0]
    annotations = [a for a in part.annotations if a.type == "file_citation"]
    assert [a.filename for a in annotations][:1] == ["travel.md"]
    assert len(annotations) == 2
    first = annotations[0].model_dump()
    assert first["file_id"].startswith("file-") and "12000 euros" in first["quote"]
    assert part.text[first["index"] : first["index"] + 3] == "[1]"
    # the model read the sources, numbered
    system = engine.requests[-1].messages[0]["content"]
    assert "[1] (travel.md" in system


def test_file_search_citations_survive_streaming(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    client = kb_server.openai(kb_server.alice)
    events = list(
        client.responses.create(
            input=QUESTION,
            tools=[{"type": "file_search", "vector_store_ids": [store]}],
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds.index("response.file_search_call.completed") < kinds.index(
        "response.output_text.delta"
    )
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert len(added) == 2 and all(e.output_index == 1 for e in added)
    assert added[0].annotation.type == "file_citation"  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output[1].content[0].annotations[0].filename == "travel.md"  # type: ignore[union-attr]


def test_a_response_with_no_relevant_chunk_is_told_to_say_so(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    client = kb_server.openai(kb_server.alice)
    response = client.responses.create(
        input="Who painted the ceiling of the Sistine chapel?",
        tools=[{"type": "file_search", "vector_store_ids": [store]}],
    )
    assert response.output[1].content[0].annotations == []  # type: ignore[union-attr]
    assert "found nothing relevant" in engine.requests[-1].messages[0]["content"]


def test_tool_choice_decides_whether_file_search_runs(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    client = kb_server.openai(kb_server.alice)
    tool = {"type": "file_search", "vector_store_ids": [store]}
    for choice in ({"type": "file_search"}, "required", "auto"):
        response = client.responses.create(input=QUESTION, tools=[tool], tool_choice=choice)  # type: ignore[arg-type]
        assert response.output[0].type == "file_search_call", choice
    skipped = client.responses.create(input=QUESTION, tools=[tool], tool_choice="none")  # type: ignore[list-item]
    assert [item.type for item in skipped.output] == ["message"]
    assert "[1] (travel.md" not in str(engine.requests[-1].messages)
    with pytest.raises(openai.BadRequestError, match="file_search"):
        client.responses.create(input=QUESTION, tool_choice={"type": "file_search"})


def test_chat_completions_with_vector_store_ids_cite(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    with kb_server.client(kb_server.alice) as http:
        body = {
            "messages": [{"role": "user", "content": QUESTION}],
            "metadata": {"vector_store_ids": store},
        }
        reply = http.post("/v1/chat/completions", json=body).json()
        assert [c["filename"] for c in reply["citations"]][:1] == ["travel.md"]
        assert len(reply["citations"]) >= 2
        message = reply["choices"][0]["message"]
        assert [a["number"] for a in message["annotations"]] == [1, 2]

        engine.script = lambda request: ["Twelve thousand."]  # cites nothing: sources appended
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert all(c["citations"] == reply["citations"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("Twelve thousand.") and "Sources: [1] travel.md" in text


def test_bad_vector_store_ids_in_chat_are_400_or_404(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    with kb_server.client(kb_server.alice) as http:
        for value, status in (("[1, 2]", 400), ("vs_000000000000000000000000", 404)):
            body = {"messages": [{"role": "user", "content": "hi"}],
                    "metadata": {"vector_store_ids": value}}  # fmt: skip
            assert http.post("/v1/chat/completions", json=body).status_code == status
    with kb_server.client(kb_server.bob) as http:  # alice's store is not bob's
        body = {"messages": [{"role": "user", "content": "hi"}],
                "metadata": {"vector_store_ids": store}}  # fmt: skip
        assert http.post("/v1/chat/completions", json=body).status_code == 404


def test_the_answer_service_grounded_on_stores_numbers_its_citations(
    kb_server: KnowledgeServer, store: str, engine: Any
) -> None:
    with kb_server.client(kb_server.alice) as http:
        reply = http.post(
            "/v1/services/answer", json={"question": QUESTION, "vector_store_ids": [store]}
        ).json()
        assert "[1]" in reply["output"] and "[2]" in reply["output"]
        citations = reply["citations"]
        assert [c["number"] for c in citations] == list(range(1, len(citations) + 1))
        assert len(citations) >= 2 and citations[0]["filename"] == "travel.md"
        assert all(c["chunk_id"].startswith("chunk_") and c["quote"] for c in citations)
        chunk = http.get(f"/v1/vector_stores/{store}/chunks/{citations[0]['chunk_id']}").json()
        assert chunk["text"] == citations[0]["quote"]

        calls = len(engine.requests)
        nothing = http.post(
            "/v1/services/answer",
            json={"question": "Who painted the Sistine chapel?", "vector_store_ids": [store]},
        ).json()
        assert nothing["output"] == NOTHING_FOUND and nothing["citations"] == []
        assert len(engine.requests) == calls  # the model was not asked to invent


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"question": "x", "vector_store_ids": []}, 400),
        ({"question": "x", "vector_store_ids": "vs_x"}, 400),
        ({"question": "x", "vector_store_ids": ["vs_000000000000000000000000"]}, 404),
        ({"question": "x", "context": "y", "vector_store_ids": ["STORE"]}, 400),
    ],
)
def test_bad_answer_requests(
    kb_server: KnowledgeServer, store: str, engine: Any, body: dict[str, Any], status: int
) -> None:
    if body.get("vector_store_ids") == ["STORE"]:
        body = {**body, "vector_store_ids": [store]}
    with kb_server.client(kb_server.alice) as http:
        assert http.post("/v1/services/answer", json=body).status_code == status
