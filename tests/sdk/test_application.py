"""`Application`: typed routes, 422s, return types, streaming, and the issue's block unchanged."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

import llmasos
from llmasos.errors import ConfigError, InvalidRequestError, LLMasOSError, ModelNotFoundError
from llmasos.sdk import Application
from tests.apps.conftest import Served, free_port

# The issue's code block, verbatim: the test only defines `text` before it.
ISSUE_BLOCK = """\
import llmasos
client = llmasos.Client()                    # LLMASOS_BASE_URL or http://127.0.0.1:8000; api_key= when auth is on
summary = client.call("summarize", text)     # a named service

from llmasos import LLM, Application
model = LLM.from_pretrained("smollm2")       # a store name, a local path, or a Hugging Face id when online
app = Application(model)

@app.route("/ask")
def ask(question: str) -> str:
    return model.generate_text(question, max_length=100)

app.run()                                    # serves the app over HTTP; app.run(host=..., port=...)
"""  # noqa: E501

TEXT = (
    'text = "The Eiffel Tower is a wrought-iron tower in Paris, France. It was built for the '
    "1889 World's Fair and is now one of the most visited monuments in the world.\"\n"
)


class Item(BaseModel):
    name: str
    count: int = 1


def build_app() -> Application:
    app = Application(name="demo")

    @app.route("/echo")
    def echo(word: str, times: int = 1, loud: bool = False) -> str:
        """Repeat a word."""
        result = " ".join([word] * times)
        return result.upper() if loud else result

    @app.route("/stats", methods=["POST"])
    def stats(values: list[float], label: str | None = None) -> dict[str, object]:
        return {"label": label, "total": sum(values), "n": len(values)}

    @app.route("/tags", methods=["GET"])
    async def tags(tag: list[str]) -> list[str]:
        await asyncio.sleep(0)
        return sorted(tag)

    @app.route("/item")
    def item(item: Item) -> Item:
        return Item(name=item.name.title(), count=item.count * 2)

    @app.route("/count")
    def count(n: int) -> Iterator[str]:
        return (f"{i}," for i in range(n))

    @app.route("/acount")
    async def acount(n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield f"{i};"

    @app.route("/users/{user_id}/greet")
    def greet(user_id: int, greeting: str = "hello") -> str:
        return f"{greeting} {user_id}"

    @app.route("/nothing", methods=["POST"])
    def nothing() -> None:
        return None

    @app.route("/missing-model")
    def missing_model() -> str:
        raise ModelNotFoundError("model nope not found")

    @app.route("/broken")
    def broken() -> str:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    with TestClient(build_app().asgi) as client:
        yield client


def test_get_and_post_fill_typed_parameters(http: TestClient) -> None:
    response = http.get("/echo", params={"word": "hi", "times": "3", "loud": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "HI HI HI"
    assert http.post("/echo", json={"word": "ok", "times": 2}).text == "ok ok"
    assert http.post("/stats", json={"values": [1, 2.5]}).json() == {
        "label": None,
        "total": 3.5,
        "n": 2,
    }
    assert http.get("/tags", params=[("tag", "b"), ("tag", "a")]).json() == ["a", "b"]
    assert http.get("/tags", params={"tag": "solo"}).json() == ["solo"]
    assert http.get("/users/7/greet").text == "hello 7"
    assert http.post("/users/7/greet", json={"greeting": "hi"}).text == "hi 7"
    assert http.get("/users/seven/greet").json()["error"]["param"] == "user_id"


def test_pydantic_parameter_takes_body_embedded_body_or_query(http: TestClient) -> None:
    expected = {"name": "Tea Pot", "count": 6}
    assert http.post("/item", json={"name": "tea pot", "count": 3}).json() == expected
    assert http.post("/item", json={"item": {"name": "tea pot", "count": 3}}).json() == expected
    assert http.get("/item", params={"name": "tea pot", "count": "3"}).json() == expected


def test_missing_and_invalid_parameters_are_422_naming_the_parameter(http: TestClient) -> None:
    missing = http.get("/echo")
    assert missing.status_code == 422
    assert missing.json()["error"]["param"] == "word"
    assert missing.json()["errors"] == [{"param": "word", "reason": "missing"}]

    wrong = http.get("/echo", params={"word": "x", "times": "many"})
    assert wrong.status_code == 422
    body = wrong.json()
    assert body["error"]["param"] == "times"
    assert "integer" in body["errors"][0]["reason"]
    assert "times" in body["error"]["message"]

    assert http.post("/echo", json={"word": "x", "times": "lots"}).status_code == 422
    unknown = http.get("/echo", params={"word": "x", "tmes": "2"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["param"] == "tmes"
    assert "unknown parameter" in unknown.json()["error"]["message"]

    not_json = http.post("/echo", content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert "not valid JSON" in not_json.json()["error"]["message"]
    assert http.post("/echo", json=["x"]).status_code == 422
    nested = http.post("/item", json={"name": "x", "count": "many"})
    assert nested.status_code == 422
    assert nested.json()["error"]["param"] == "item.count"


def test_streaming_and_other_return_types(http: TestClient) -> None:
    with http.stream("GET", "/count", params={"n": 4}) as response:
        assert response.headers["content-type"].startswith("text/plain")
        assert "".join(response.iter_text()) == "0,1,2,3,"
    assert http.post("/acount", json={"n": 3}).text == "0;1;2;"
    assert http.post("/nothing").status_code == 204
    assert http.get("/nothing").status_code == 405


def test_handler_errors(http: TestClient) -> None:
    missing = http.get("/missing-model")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    broken = TestClient(build_app().asgi, raise_server_exceptions=False).get("/broken")
    assert broken.status_code == 500
    assert "secret" not in broken.text


def test_index_and_health(http: TestClient) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    index = http.get("/").json()
    assert index["name"] == "demo"
    echo = next(route for route in index["routes"] if route["path"] == "/echo")
    assert echo["methods"] == ["GET", "POST"]
    assert echo["description"] == "Repeat a word."
    assert echo["parameters"]["required"] == ["word"]
    assert set(echo["parameters"]["properties"]) == {"word", "times", "loud"}


def test_bad_routes_are_refused_at_registration() -> None:
    app = Application()
    with pytest.raises(InvalidRequestError, match="reserved"):
        app.route("/health")
    with pytest.raises(InvalidRequestError, match="GET and/or POST"):
        app.route("/x", methods=["DELETE"])
    with pytest.raises(InvalidRequestError, match=r"\*args"):

        @app.route("/y")
        def spread(*words: str) -> str:
            return "".join(words)

    @app.route("/z", methods=["GET"])
    def z() -> str:
        return "z"

    with pytest.raises(InvalidRequestError, match="already has a GET"):
        app.route("/z")
    assert z() == "z"  # the decorator leaves the function callable


def test_run_refuses_remote_hosts_and_bad_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Application()
    with pytest.raises(ConfigError, match="allow_remote=True"):
        app.run(host="0.0.0.0")
    monkeypatch.setenv("LLMASOS_APP_HOST", "192.0.2.1")
    with pytest.raises(ConfigError, match="refusing"):
        app.run()
    monkeypatch.delenv("LLMASOS_APP_HOST")
    monkeypatch.setenv("LLMASOS_APP_PORT", "eighty")
    with pytest.raises(ConfigError, match="LLMASOS_APP_PORT"):
        app.run()


def test_run_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LLMasOSError, match="could not start"):
            Application().run(port=port, log_level="critical")


def test_application_is_exported_lazily() -> None:
    assert llmasos.Application is Application


@pytest.mark.model
def test_streams_a_real_model(served: Served) -> None:
    model = llmasos.LLM.from_pretrained("smollm2", base_url=served.url)
    app = Application(model)

    @app.route("/stream")
    def stream(question: str) -> Iterator[str]:
        return model.stream(question, max_length=8)

    with (
        TestClient(app.asgi) as client,
        client.stream(
            "POST", "/stream", json={"question": "What is the capital of France?"}
        ) as response,
    ):
        assert response.status_code == 200
        pieces = [piece for piece in response.iter_text() if piece]
    assert "Paris" in "".join(pieces)
    model.close()


def wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the app exited early:\n{output}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("the app did not become healthy")
        time.sleep(0.2)


@pytest.mark.model
def test_the_issue_block_runs_unchanged(served: Served, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(TEXT + ISSUE_BLOCK)
    assert ISSUE_BLOCK in script.read_text()
    port = free_port()
    env = {
        **os.environ,
        "LLMASOS_HOME": str(served.home),
        "LLMASOS_BASE_URL": served.url,
        "LLMASOS_APP_PORT": str(port),
    }
    env.pop("LLMASOS_APP_HOST", None)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        question = "What is the capital of France?"
        got = httpx.get(f"{url}/ask?question=What+is+the+capital+of+France%3F", timeout=60)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"].startswith("text/plain")
        assert "Paris" in got.text
        posted = httpx.post(f"{url}/ask", json={"question": question}, timeout=60)
        assert posted.status_code == 200, posted.text
        assert "Paris" in posted.text
        missing = httpx.get(f"{url}/ask", timeout=10)
        assert missing.status_code == 422
        assert missing.json()["error"]["param"] == "question"
        assert [route["path"] for route in httpx.get(f"{url}/").json()["routes"]] == ["/ask"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        output = process.stdout.read() if process.stdout else ""
        if process.stdout:
            process.stdout.close()
    assert code == 0, textwrap.shorten(output, 2000)
