"""A real Ray cluster on this machine: a head and two worker nodes, each started by
``llmasos cluster start|join --block`` as its own process tree (nice 10, one CPU each), two
replicas of the embedded model deployed on the workers, requests through our OpenAI API,
and a worker node killed mid-stream.

One cluster for the module. Teardown kills exactly the process trees this module started
(never ``ray stop``, which would stop every Ray process of the machine) and removes their
temporary directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from prometheus_client import generate_latest

pytest.importorskip("ray")

import ray
from typer.testing import CliRunner

from llmasos.cli.main import app
from llmasos.cli.root import state
from llmasos.config import Settings
from llmasos.distributed.client import ClusterEngineClient
from llmasos.distributed.cluster import ClusterError
from llmasos.distributed.deploy import ReplicaResources, deploy
from llmasos.kernel.interface import GenerateRequest
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.server.main import engine_client
from llmasos.types import SamplingParams
from tests.distributed.raycluster import Cluster, head_and_two_workers
from tests.server.conftest import ServerThread

pytestmark = pytest.mark.model
MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with head_and_two_workers("llmr-", worker_memory="1GiB") as started:
        yield started


@pytest.fixture(scope="module")
def settings(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("cluster-home"),
        threads=1,
        context_length=1024,
        max_batch_size=2,
        cluster_stream_interval=0.1,  # replicas hold and merge deltas (coalesce.py)
        cluster_address=cluster.address,
    )


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, settings: Settings) -> list[dict[str, object]]:
    store = ModelStore.open(settings)
    cache = Path(cluster.root) / "model-cache"
    return deploy(
        settings,
        store,
        MODEL,
        2,
        resources=ReplicaResources(num_cpus=1, memory=600 << 20),
        cache_dir=str(cache),
        copy=True,
    )


@pytest.fixture(scope="module")
def engine(settings: Settings, deployed: list[dict[str, object]]) -> Iterator[ClusterEngineClient]:
    client = engine_client(settings, ModelStore.open(settings)).inner  # what `serve` picks
    assert isinstance(client, ClusterEngineClient)
    asyncio.run(client.refresh(force=True))
    yield client
    asyncio.run(client.local.close())


def test_two_replicas_on_two_workers_with_the_model_copied_and_verified(
    cluster: Cluster, deployed: list[dict[str, object]]
) -> None:
    assert len(deployed) == 2
    assert {r["state"] for r in deployed} == {"ready"}
    assert len({r["node_id"] for r in deployed}) == 2  # spread over the two workers
    head_id = next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])
    assert head_id not in {r["node_id"] for r in deployed}
    for report in deployed:
        assert report["fetched"] in ("copied", "cache")
        path = Path(str(report["path"]))
        assert path.is_relative_to(Path(cluster.root) / "model-cache")
        digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.name == digest.replace(":", "-")


def test_status_and_deploy_through_the_cli(
    cluster: Cluster, deployed: list[dict[str, object]], settings: Settings
) -> None:
    state.overrides.clear()
    state._settings = settings
    state._store = None
    try:
        result = CliRunner().invoke(app, ["cluster", "status", "--json"])
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        assert sum(1 for n in status["nodes"] if n["alive"]) == 3
        assert {r["state"] for r in status["replicas"]} == {"ready"}
        table = CliRunner().invoke(app, ["cluster", "status"], env={"COLUMNS": "200"})
        assert table.exit_code == 0
        assert "worker" in table.output and f"replica:{MODEL}:1" in table.output
        result = CliRunner().invoke(
            app, ["deploy", MODEL, "--replicas", "3", "--cpus-per-replica", "64"]
        )
        assert isinstance(result.exception, ClusterError)
        assert "no node can hold a replica" in str(result.exception)
        assert "the largest node has 1 CPU" in str(result.exception)
    finally:
        state._settings = None
        state._store = None


def test_a_streamed_chat_through_the_openai_api_runs_on_a_replica(
    engine: ClusterEngineClient, settings: Settings
) -> None:
    with (
        ServerThread(create_app(settings, engine, engine.store)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client,
    ):
        stream = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(c.usage for c in chunks if c.usage)
    assert text and 0 < usage.completion_tokens <= 12
    assert chunks[0].model == MODEL or chunks[0].model.startswith("smollm2")
    # served by the cluster, not by a model loaded in the server's own process
    assert not engine.local.resident_models()
    cluster_rows = [m for m in engine.resident_models() if m.backend == "cluster"]
    assert cluster_rows and cluster_rows[0].processor == "2 replica(s)"


def test_a_second_api_server_counts_the_tenant_served_through_the_first(
    settings: Settings, engine: ClusterEngineClient
) -> None:
    """One fair-share counter per tenant across API servers: what the first server's router
    charged reaches the second's through the cluster's ledger actor on the head."""
    other = ClusterEngineClient(settings, ModelStore.open(settings))
    request = GenerateRequest(
        model="smollm2",
        prompt="One, two, three,",
        sampling=SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True),
        tenant="spread-out",
    )

    async def run() -> tuple[float, float]:
        await other.refresh(force=True)
        async for _ in engine.generate(request):
            pass
        await engine.exchange_shares()
        await other.exchange_shares()
        here = engine.router.queue(MODEL).counters["spread-out"]
        return here, other.router.queue(MODEL).counters.get("spread-out", 0.0)

    try:
        here, there = asyncio.run(run())
    finally:
        asyncio.run(other.local.close())
    assert here > 0 and there == pytest.approx(here)
    status = ray.get(ray.get_actor("llmasos-fair-share", namespace="llmasos").status.remote())
    assert engine.server_id in status["servers"] and other.server_id in status["servers"]


def test_a_worker_killed_mid_stream_fails_over_without_duplicates(
    cluster: Cluster, engine: ClusterEngineClient
) -> None:
    limit = 160
    request = GenerateRequest(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to one hundred in words."}],
        sampling=SamplingParams(temperature=0.0, max_tokens=limit, ignore_eos=True),
        explicit=frozenset({"temperature", "max_tokens"}),
        timeout=120,
    )

    async def run() -> tuple[list[str], int, str | None, str]:
        texts: list[str] = []
        tokens = 0
        killed_node = ""
        final = None
        async for output in engine.generate(request):
            texts.append(output.text)
            tokens += len(output.tokens)
            if len(texts) == 8 and not killed_node:
                replica, _ = engine._attempts[request.request_id]
                killed_node = replica.node
                victim = next(
                    w
                    for w, n in zip(cluster.workers, _worker_node_ids(cluster), strict=True)
                    if n == killed_node
                )
                await asyncio.to_thread(victim.kill)
            if output.finished:
                final = output
        assert final is not None
        # items carry several tokens each; every token the client got counts once, and the
        # resumed attempt's allowance was cut by exactly the tokens sent before the kill
        assert tokens == final.completion_tokens
        return texts, final.completion_tokens, final.finish_reason, killed_node

    texts, completion_tokens, reason, killed = asyncio.run(run())
    assert killed
    assert reason == "length"
    # exactly the allowance: the second replica resumed, it did not start over
    assert completion_tokens == limit
    assert sum(1 for t in texts if t) <= limit
    survivors = [m for m in engine.router.replicas[MODEL] if m.healthy]
    assert len(survivors) == 1 and survivors[0].node != killed
    metrics = generate_latest(engine.metrics_registry).decode()
    assert f'llmasos:cluster_failovers_total{{model_name="{MODEL}"}} 1.0' in metrics

    # the last replica gone too: a clear error, not a hang
    asyncio.run(asyncio.to_thread(_kill_node_of, cluster, survivors[0].node))

    async def orphan() -> None:
        async for _ in engine.generate(
            GenerateRequest(model="smollm2", prompt="Hello", timeout=60)
        ):
            pass

    with pytest.raises(ClusterError):
        asyncio.run(orphan())


def _worker_node_ids(cluster: Cluster) -> list[str]:
    """The Ray node id of each worker process, matched by its temp dir in the node's log."""
    ids = []
    for worker in cluster.workers:
        found = ""
        for node in ray.nodes():
            if worker.temp_dir in str(node.get("ObjectStoreSocketName", "")):
                found = node["NodeID"]
        ids.append(found)
    return ids


def _kill_node_of(cluster: Cluster, node_id: str) -> None:
    for worker, found in zip(cluster.workers, _worker_node_ids(cluster), strict=True):
        if found == node_id:
            worker.kill()
