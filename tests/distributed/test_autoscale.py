"""Autoscaling and a head restart on a real Ray cluster: a head (two CPUs) as its own
process tree, one deployment of the embedded model with ``--min 1 --max 2`` and short delays.

A flood makes a second replica appear; a trickle of one request at a time then lets it drain
and go, and every request of both phases ends with its whole allowance. Then the head is
killed: the API answers 503 naming the model at once, and when a head starts again at the
same address the server reconnects and redeploys the recorded deployment by itself.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ray")

import ray

from llmasos.config import Settings
from llmasos.distributed.autoscale import AutoscalePolicy
from llmasos.distributed.client import ClusterEngineClient
from llmasos.distributed.cluster import local_ip
from llmasos.distributed.cluster import status as cluster_status
from llmasos.distributed.deploy import (
    ReplicaResources,
    controller_name,
    deploy,
    list_replicas,
)
from llmasos.distributed.replica import NAMESPACE
from llmasos.kernel.interface import GenerateRequest
from llmasos.models.store import ModelStore
from llmasos.net import free_port
from llmasos.server.app import create_app
from llmasos.server.main import engine_client
from llmasos.types import SamplingParams
from tests.distributed.raycluster import Cluster, connect_when_up, start_node, wait_nodes
from tests.server.conftest import ServerThread

pytestmark = pytest.mark.model
MODEL = "smollm2:135m"
TOKENS = 48
POLICY = AutoscalePolicy(
    1, 2, upscale_delay=0.5, downscale_delay=2.0, cooldown=1.0, interval=0.25, drain_timeout=60
)


def _head_args(port: int) -> list[str]:
    return ["start", "--head", "--port", str(port), "--num-cpus", "2", "--memory", "2GiB"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = tempfile.mkdtemp(prefix="llma-", dir="/tmp")  # short: Ray's socket paths
    port = free_port()
    address = f"{local_ip()}:{port}"
    head = start_node(_head_args(port), root, "head")
    cluster_state = Cluster(address, head, [], root)  # a test may replace its head
    try:
        connect_when_up(address, head)
        wait_nodes(1, [head])
        yield cluster_state
    finally:
        ray.shutdown()
        head.kill()
        if cluster_state.head is not head:
            cluster_state.head.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterEngineClient]:
    settings = Settings(
        home=tmp_path_factory.mktemp("autoscale-home"),
        threads=1,
        context_length=1024,
        max_batch_size=2,
        cluster_address=cluster.address,
    )
    store = ModelStore.open(settings)
    deployed = deploy(
        settings,
        store,
        MODEL,
        1,
        resources=ReplicaResources(num_cpus=1, memory=600 << 20),
        cache_dir=str(Path(cluster.root) / "model-cache"),
        autoscale=POLICY,
    )
    assert [r["index"] for r in deployed] == [0]
    client = engine_client(settings, store).inner
    assert isinstance(client, ClusterEngineClient)
    client.refresh_seconds = 0.25
    yield client
    asyncio.run(client.close())


def _request(index: int) -> GenerateRequest:
    return GenerateRequest(
        model="smollm2",
        prompt=f"Request {index}: write a long list of fruit names.",
        sampling=SamplingParams(temperature=0.0, max_tokens=TOKENS, ignore_eos=True),
        explicit=frozenset({"temperature", "max_tokens"}),
        timeout=120,
    )


async def _answer(engine: ClusterEngineClient, index: int) -> tuple[str | None, int]:
    final = None
    async for output in engine.generate(_request(index)):
        if output.finished:
            final = output
    assert final is not None, f"request {index} ended without a final delta"
    return final.finish_reason, final.completion_tokens


def _controller() -> dict[str, Any]:
    actor = ray.get_actor(controller_name(MODEL), namespace=NAMESPACE)
    status: dict[str, Any] = ray.get(actor.status.remote(), timeout=10)
    return status


def test_a_flood_adds_a_replica_and_idle_drains_it_back_with_every_request_answered(
    engine: ClusterEngineClient,
) -> None:
    async def run() -> tuple[list[tuple[str | None, int]], int, list[tuple[str | None, int]]]:
        seen = 1

        async def watch() -> None:
            nonlocal seen
            while True:
                seen = max(seen, sum(1 for r in engine.router.replicas.get(MODEL, [])))
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        # the flood: 12 requests at once on one replica that takes 2 at a time
        flood = await asyncio.gather(*(_answer(engine, i) for i in range(12)))
        # a trickle of one request at a time (load 1 <= half of one replica's 2): the second
        # replica drains and stops while requests keep coming; none may be cut off
        trickle = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            trickle.append(await _answer(engine, 100 + len(trickle)))
            status = await asyncio.to_thread(_controller)
            if status["replicas"] == 1 and not status["draining"] and len(trickle) >= 3:
                break
        watcher.cancel()
        return flood, seen, trickle

    flood, seen, trickle = asyncio.run(run())
    assert seen == 2, "no second replica appeared under the flood"
    assert flood == [("length", TOKENS)] * 12
    assert trickle == [("length", TOKENS)] * len(trickle)
    status = _controller()
    assert status["replicas"] == 1 and not status["draining"], status
    shown = cluster_status(None).to_json()["autoscaling"]  # what `cluster status` prints
    bounds = [(a["model"], a["policy"]["min_replicas"], a["policy"]["max_replicas"]) for a in shown]
    assert bounds == [(MODEL, 1, 2)]
    events = " | ".join(status["events"])
    assert "starting replica(s) [1]" in events and "replica 1 drained, stopped" in events
    replicas = [r for r in list_replicas() if r["model"] == MODEL]
    assert [(r["index"], r["state"]) for r in replicas] == [(0, "ready")]
    # both replicas served: the new one took part of the flood
    served = {
        s.labels["replica"]
        for metric in engine.metrics.requests.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.value > 0
    }
    assert served == {f"replica:{MODEL}:0", f"replica:{MODEL}:1"}
    # no request failed over: none reached a replica still loading or already stopped
    failovers = [
        s.value
        for metric in engine.metrics.failovers.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    ]
    assert sum(failovers) == 0


def test_the_api_survives_a_head_restart_and_redeploys_what_was_recorded(
    cluster: Cluster, engine: ClusterEngineClient
) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
    }
    app = create_app(engine.settings, engine, engine.store)
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        cluster.head.kill()
        _wait_for(lambda: engine.down is not None, 10, "the server did not notice the head")
        started = time.monotonic()
        response = http.post("/v1/chat/completions", json=body)
        assert time.monotonic() - started < 5  # no hang on the dead head
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "cluster_unavailable"
        assert f"{MODEL} is unavailable" in error["message"] and "head" in error["message"]
        rows = [m for m in engine.resident_models() if m.backend == "cluster"]
        assert [(m.name, m.processor.split(":")[0]) for m in rows] == [(MODEL, "unavailable")]

        # a head again at the same address: the server reconnects and redeploys
        port = int(cluster.address.rpartition(":")[2])
        cluster.head = start_node(_head_args(port), cluster.root, "head2")
        _wait_for(
            lambda: engine.down is None and bool(engine.router.replicas.get(MODEL)),
            120,
            "the server did not reconnect and redeploy",
        )
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] > 0
    assert [r["state"] for r in list_replicas() if r["model"] == MODEL] == ["ready"]
    assert _controller()["policy"]["max_replicas"] == 2  # autoscaling came back too


def _wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.1)
