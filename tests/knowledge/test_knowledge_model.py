"""Knowledge bases with the real kernel, over a real server on loopback: all-MiniLM
embeddings (token counts from its own tokenizer), the embedded SmolLM2 answering, the real
``openai`` client. Assertions are on structure and guarantees, not on the model's words."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmasos.config import load_settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.knowledge.citations import NOTHING_FOUND
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models import open_model_store
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.knowledge.conftest import wait_for_file
from tests.server.conftest import ServerThread

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]

HANDBOOK = "# Employee handbook\n\n" + "\n\n".join(
    f"## Section {n}\n\n" + text
    for n, text in enumerate(
        [
            "New employees receive a laptop, a badge and a mentor on their first day.",
            "The travel budget for the Lisbon offsite is 12000 euros, approved by Maria.",
            "Expense reports are due within 30 days of the trip, with every receipt attached.",
            "The office is closed on public holidays; the server room stays cooled to 18 "
            "degrees all year.",
        ]
        * 6,
        start=1,
    )
)
GARDEN = """<html><body><h1>Garden</h1>
<p>Tomatoes need full sun and water every morning.</p>
<p>Basil grows well beside tomatoes and keeps some pests away.</p></body></html>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("kb-model-home")
    settings = load_settings(home=home, threads=2, context_length=2048)
    engine = InProcessEngineClient(settings, open_model_store(settings))
    database = open_database(settings)
    knowledge = KnowledgeBase.open(settings, database, engine)
    app = create_app(settings, engine, open_model_store(settings), knowledge=knowledge)
    with ServerThread(app) as url:
        yield url
    asyncio.run(engine.close())
    database.close()


def test_index_search_and_cited_answer_with_the_real_models(server: str) -> None:
    with openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0) as client, \
            httpx.Client(base_url=server, timeout=600) as http:  # fmt: skip
        store = client.vector_stores.create(name="handbook")
        for name, data in (("handbook.md", HANDBOOK.encode()), ("garden.html", GARDEN.encode())):
            file = client.files.create(file=(name, data), purpose="assistants")
            client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id)
            done = wait_for_file(http, store.id, file.id)
            assert done["status"] == "completed", done
        chunks = http.get(f"/v1/vector_stores/{store.id}/files/{file.id}/chunks").json()["data"]
        handbook = client.vector_stores.files.list(vector_store_id=store.id).data[-1]
        assert handbook.status == "completed"
        all_chunks = http.get(f"/v1/vector_stores/{store.id}/files/{handbook.id}/chunks").json()[
            "data"
        ]
        assert len(all_chunks) >= 3  # the handbook is longer than one 250-token chunk
        assert all(c["tokens"] <= 250 for c in all_chunks + chunks)

        page = client.vector_stores.search(store.id, query="how much can we spend on travel")
        assert "12000 euros" in page.data[0].content[0].text
        page = client.vector_stores.search(store.id, query="which herb to plant with tomatoes")
        assert page.data[0].filename == "garden.html"

        answer = http.post(
            "/v1/services/answer",
            json={
                "question": "What is the travel budget for the Lisbon offsite?",
                "vector_store_ids": [store.id],
                "parameters": {"max_tokens": 48},
            },
        ).json()
        assert answer["citations"], answer
        assert "[1]" in answer["output"]
        assert any("12000" in c["quote"] for c in answer["citations"])

        nothing = http.post(
            "/v1/services/answer",
            json={
                "question": "Who won the 1998 football world cup?",
                "vector_store_ids": [store.id],
            },
        ).json()
        assert nothing["output"] == NOTHING_FOUND and nothing["citations"] == []

        too_big = client.vector_stores.create(
            name="too big",
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 1000, "chunk_overlap_tokens": 0},
            },
        )
        client.vector_stores.files.create(vector_store_id=too_big.id, file_id=handbook.id)
        failed = wait_for_file(http, too_big.id, handbook.id)
        assert failed["status"] == "failed"
        assert "max_chunk_size_tokens" in failed["last_error"]["message"]

        response = client.responses.create(
            input="When are expense reports due?",
            tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
            max_output_tokens=48,
        )
        assert response.output[0].type == "file_search_call"
        annotations = response.output[1].content[0].annotations  # type: ignore[union-attr]
        assert annotations and annotations[0].file_id == handbook.id  # type: ignore[union-attr]


def test_graph_build_with_the_real_model(server: str) -> None:
    """SmolLM2 extracts under the JSON schema: whatever it says, the build completes, every
    entity it kept answers a question, and every edge cites a chunk of the store whose text
    holds the quote."""
    with openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0) as client, \
            httpx.Client(base_url=server, timeout=600) as http:  # fmt: skip
        store = client.vector_stores.create(name="people")
        text = "Marie Curie worked in Paris with Pierre Curie. She won the Nobel Prize in 1903."
        file = client.files.create(file=("curie.md", text.encode()), purpose="assistants")
        client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id)
        assert wait_for_file(http, store.id, file.id)["status"] == "completed"
        info = http.post(f"/v1/vector_stores/{store.id}/graph").json()
        deadline = time.monotonic() + 900
        while info["status"] == "in_progress" and time.monotonic() < deadline:
            time.sleep(0.5)
            info = http.get(f"/v1/vector_stores/{store.id}/graph").json()
        assert info["status"] == "completed", info
        assert info["progress"] == {"chunks_total": 1, "chunks_done": 1}
        assert info["chunks_extracted"] == 1 and info["model"]
        entities = http.get(f"/v1/vector_stores/{store.id}/graph/entities").json()["data"]
        assert len(entities) == info["entities"] and info["relations"] <= 8
        for entity in entities[:3]:
            answer = http.post(
                f"/v1/vector_stores/{store.id}/graph/query",
                json={"query": entity["name"], "mode": "neighbourhood"},
            ).json()
            assert answer["found"] and answer["entities"][0]["name"] == entity["name"]
            for edge in answer["edges"]:
                cite = edge["citation"]
                assert cite["file_id"] == file.id and cite["quote"] in text
        missing = http.post(
            f"/v1/vector_stores/{store.id}/graph/query", json={"query": "zzzz qqqq"}
        ).json()
        assert missing["object"] == "vector_store.graph.answer"
