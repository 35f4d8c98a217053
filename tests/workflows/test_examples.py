"""The built-in workflows end to end on the embedded model, through a real ``llmasos serve``
and the real OpenAI client. The tiny model's words vary: the tests check structure (every
node ran or was skipped for a stated reason, outputs have their shape) and what the system
guarantees (JSON matching the schema, a waiting run that an answer completes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmasos.models.builtin import BUILTINS, package_path
from tests.serving import llmasos_serve

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("workflow-examples")
    with llmasos_serve(home) as served:
        yield served


def run(url: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(
        f"{url}/v1/workflows/{name}/runs?wait=true", json={"input": inputs}, timeout=600
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_pipeline(url: str) -> None:
    events: list[dict[str, Any]] = []
    start = httpx.post(
        f"{url}/v1/workflows/pipeline/runs",
        json={"input": {"text": "  I love this phone, the battery lasts days.  "}},
    )
    assert start.status_code == 202
    run_id = start.json()["id"]
    with httpx.stream("GET", f"{url}/v1/workflows/runs/{run_id}/events", timeout=600) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    run = httpx.get(f"{url}/v1/workflows/runs/{run_id}").json()
    assert run["status"] == "succeeded", run["error"]
    output = run["output"]
    assert output["sentiment"] in ("positive", "negative", "neutral")
    assert isinstance(output["summary"], str)
    assert output["report"].startswith(f"[{output['sentiment'].upper()}]")
    assert output["characters"] == len("I love this phone, the battery lasts days.")
    assert [s["node"] for s in run["steps"]] == ["preprocess", "infer", "postprocess"]
    assert events[-1]["type"] == "run.finished"
    assert any(e["type"] == "node.token" and e["node"] == "infer" for e in events) or any(
        e["type"] == "node.finished" and e["node"] == "infer" for e in events
    )


def test_digest(url: str) -> None:
    run_data = run(
        url,
        "digest",
        {
            "documents": ["The cat sat on the mat all day.", "Rain is expected in Paris tomorrow."],
            "language": "French",
        },
    )
    assert run_data["status"] == "succeeded", run_data["error"]
    output = run_data["output"]
    assert len(output["summaries"]) == 2 and all(isinstance(s, str) for s in output["summaries"])
    assert output["digest"].count("- ") >= 2
    assert isinstance(output["translation"], str)
    nodes = {s["node"] for s in run_data["steps"]}
    assert {"summaries[0]", "summaries[1]", "combine", "translate"} <= nodes


def test_support_triage_escalates_or_answers(url: str) -> None:
    run_data = run(
        url, "support-triage", {"message": "I was charged twice this month.", "threshold": 1.01}
    )
    # a threshold above 1 always escalates: the run waits for a person
    assert run_data["status"] == "waiting", run_data["error"]
    steps = {s["node"]: s for s in run_data["steps"]}
    assert steps["classify"]["output"]["category"] in ("billing", "shipping", "account", "other")
    assert 0 <= steps["classify"]["output"]["confidence"] <= 1
    assert steps["faq"]["output"]["id"].startswith("faq-")
    assert run_data["waiting_for"] == ["escalate"]
    answer = httpx.post(
        f"{url}/v1/workflows/runs/{run_data['id']}/nodes/escalate/answer",
        json={"answer": "Refund issued."},
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 120
    while True:
        done = httpx.get(f"{url}/v1/workflows/runs/{run_data['id']}").json()
        if done["status"] != "queued" and done["status"] != "running":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert done["status"] == "succeeded", done["error"]
    assert done["output"]["answer"] == "Refund issued." and done["output"]["escalated"] is True
    assert done["output"]["citations"] == [steps["faq"]["output"]["id"]]

    confident = run(url, "support-triage", {"message": "Where is my parcel?", "threshold": 0})
    assert confident["status"] == "succeeded", confident["error"]
    assert confident["output"]["escalated"] is False
    assert isinstance(confident["output"]["answer"], str)


def test_pipeline_as_a_chat_model(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model="workflow:pipeline", messages=[{"role": "user", "content": "The food was cold."}]
    )
    content = reply.choices[0].message.content or ""
    assert content.startswith("[") or content.startswith("{")
    client.close()
