"""The server over the real kernel and the embedded models (SmolLM2-135M, all-MiniLM)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import ollama
import openai
import pytest

from llmasos.agents import AgentRuntime, TaskStore
from llmasos.config import Settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.memory.memories import MemoryStore
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import ContentCipher, open_database
from llmasos.tools import ToolSystem
from llmasos.tools.personal import personal_of
from llmasos.workflows.system import open_workflows
from tests.server.conftest import ServerThread

pytestmark = pytest.mark.model
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def real_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(home=tmp_path_factory.mktemp("real-home"), threads=2)
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    database = open_database(settings)
    memory = MemoryStore.open(settings, database, engine)
    files = FileSystem.open(settings, database, engine)
    knowledge = KnowledgeBase.open(settings, database, engine)
    agents = AgentRuntime(
        TaskStore(database, ContentCipher.from_settings(settings)),
        ToolSystem(settings, database, engine, memory=memory, knowledge=knowledge, files=files),
    )
    workflows = open_workflows(
        settings, database, engine, store, memory=memory, knowledge=knowledge, files=files
    )
    app = create_app(
        settings,
        engine,
        store,
        memory=memory,
        files=files,
        knowledge=knowledge,
        agents=agents,
        workflows=workflows,
        personal=personal_of(settings, database, engine),
    )
    try:
        with ServerThread(app) as url:
            yield url
    finally:
        asyncio.run(engine.close())
        database.close()


@pytest.fixture
def api(real_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{real_url}/v1", api_key="none", max_retries=0) as client:
        yield client


def test_json_schema_output_validates(api: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "year": {"type": "integer"}},
        "required": ["city", "year"],
        "additionalProperties": False,
    }
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a city and a year as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        max_tokens=60,
        temperature=0,
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_required_tool_call_has_valid_arguments(api: openai.OpenAI) -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=60,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), parameters)  # type: ignore[union-attr]


def test_logprobs_and_usage(api: openai.OpenAI) -> None:
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        logprobs=True,
        top_logprobs=2,
        max_tokens=4,
        temperature=0,
    )
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(t.logprob <= 0 for t in content)
    assert len(content[0].top_logprobs) == 2
    assert reply.usage is not None and reply.usage.completion_tokens == len(content)


def test_embeddings_from_all_minilm(api: openai.OpenAI) -> None:
    reply = api.embeddings.create(model="all-minilm", input=["hello", "world"])
    assert [len(d.embedding) for d in reply.data] == [384, 384]


def test_ollama_generate_json(real_url: str) -> None:
    with ollama.Client(host=real_url) as client:
        reply = client.generate(
            model="smollm2",
            prompt="Describe a cat as JSON.",
            format="json",
            options={"num_predict": 40, "temperature": 0},
        )
    if reply.done_reason == "stop":
        assert isinstance(json.loads(reply.response), dict)
    assert reply.eval_count and reply.total_duration


def curl_examples() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.S)
    return [b.strip() for b in blocks if b.strip().startswith("curl")]


def test_docs_curl_examples_run(real_url: str, tmp_path: Path) -> None:
    examples = curl_examples()
    # examples name files of the checkout (README.md, docs/images/...) and write some
    # (calendar.ics): they run in a scratch directory that links to the checkout's entries
    for entry in DOCS.parents[1].iterdir():
        (tmp_path / entry.name).symlink_to(entry)
    assert len(examples) >= 15
    port = real_url.rsplit(":", 1)[1]
    for example in examples:
        if "/api/pull" in example or "/api/delete" in example:
            continue  # network download / would remove the model the others use
        command = example.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-c", command + " -w '\\n%{http_code}'"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        status = result.stdout.rstrip().rsplit("\n", 1)[-1]
        assert result.returncode == 0 and status.startswith("2"), (example, result.stdout)
