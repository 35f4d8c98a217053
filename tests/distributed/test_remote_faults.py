"""Remote providers' faults and limits, against a tiny real HTTP server that misbehaves.

The front is the real app over `RemoteEngineClient` (its own kernel is the scripted fake:
no model is needed here). The upstream is `http.server` on loopback; the model name in the
request picks what it does: stream properly, stream garbage, stall, or count how many
requests it serves at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from llmasos.config import Settings
from llmasos.distributed.remote import RemoteEngineClient, RemoteProvider, RemoteRegistry
from llmasos.distributed.remote.upstream import SSEDecoder
from llmasos.errors import ConfigError, RemoteProviderError
from llmasos.models.store import ModelStore
from llmasos.net import free_port
from llmasos.server.app import create_app
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient


def chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint with a behaviour per model name."""

    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        behaviour = body["model"]
        if behaviour == "stall":
            time.sleep(2)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if behaviour == "garbage":
            self.wfile.write(chunk("Hi"))
            self.wfile.write(b"data: {not json\n\n")
        elif behaviour == "not-sse":
            self.wfile.write(b"<html>hello</html>\n\n")
        elif behaviour == "cut":
            self.wfile.write(chunk("Hi"))
        elif behaviour == "paced":  # three tokens 0.2 s apart, with usage
            for word in ("one", " two", " three"):
                time.sleep(0.2)
                self.wfile.write(chunk(word))
                self.wfile.flush()
            usage = {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
            self.wfile.write(chunk(finish="stop"))
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        elif behaviour == "counting":
            with Upstream.lock:
                Upstream.in_flight += 1
                Upstream.most_in_flight = max(Upstream.most_in_flight, Upstream.in_flight)
            try:
                for word in ("one", " two", " three"):
                    time.sleep(0.05)
                    self.wfile.write(chunk(word))
                    self.wfile.flush()
            finally:
                with Upstream.lock:
                    Upstream.in_flight -= 1
            self.wfile.write(chunk(finish="stop"))  # no usage: the front counts
            self.wfile.write(b"data: [DONE]\n\n")


@dataclass
class Front:
    url: str
    remote_port: int


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = upstream.server_address[1]
    settings = Settings(home=tmp_path_factory.mktemp("remote-faults"))
    registry = RemoteRegistry.for_settings(settings)
    for name in ("garbage", "not-sse", "cut", "counting"):
        registry.add(RemoteProvider.create(name, f"http://127.0.0.1:{port}", max_concurrency=2))
    registry.add(RemoteProvider.create("stall", f"http://127.0.0.1:{port}/v1", timeout=0.5))
    registry.add(
        RemoteProvider.create(
            "one-at-a-time", f"http://127.0.0.1:{port}", model="paced", max_concurrency=1
        )
    )
    registry.add(RemoteProvider.create("nobody", f"http://127.0.0.1:{free_port()}/v1"))
    engine = RemoteEngineClient(settings, FakeEngineClient(), registry)
    app = create_app(settings, engine, ModelStore.open(settings, builtins=False))
    try:
        with ServerThread(app) as url:
            yield Front(url, port)
    finally:
        upstream.shutdown()
        upstream.server_close()


def chat(url: str, model: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [
        ("garbage", 502, "not a JSON object"),
        ("not-sse", 502, "not an SSE field"),
        ("cut", 502, "ended before the reply finished"),
        ("stall", 504, "did not answer within 0.5 s"),
        ("nobody", 502, "cannot be reached"),
    ],
)
def test_a_faulty_remote_is_a_clean_openai_error(
    front: Front, model: str, status: int, words: str
) -> None:
    response = chat(front.url, model)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert f"remote '{model}:latest'" in error["message"] and words in error["message"]


def test_malformed_sse_mid_stream_ends_the_stream_with_an_error_event(front: Front) -> None:
    response = chat(front.url, "garbage", stream=True)
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line]
    assert response.status_code == 200  # the first token went out before the fault
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert "remote 'garbage:latest' sent a malformed stream" in error["message"]
    assert error["code"] == "remote_bad_response"


def test_the_concurrency_limit_holds_and_usage_is_counted_when_the_remote_sends_none(
    front: Front,
) -> None:
    Upstream.most_in_flight = 0
    results: list[httpx.Response] = []

    def one() -> None:
        results.append(chat(front.url, "counting"))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 5
    assert Upstream.most_in_flight == 2  # max_concurrency, with the others queued
    reply = results[0].json()
    assert reply["choices"][0]["message"]["content"] == "one two three"
    assert reply["usage"]["completion_tokens"] == 3  # one per streamed text event
    assert reply["usage"]["prompt_tokens"] >= 1
    metrics = httpx.get(f"{front.url}/metrics").text
    assert 'llmasos:remote_requests_total{model_name="counting:latest",outcome="ok"} 5.0' in (
        metrics
    )


def test_a_tenant_flooding_a_remote_does_not_starve_another(front: Front) -> None:
    finished: list[str] = []

    def one(user: str) -> None:
        response = httpx.post(
            f"{front.url}/v1/chat/completions",
            json={
                "model": "one-at-a-time",
                "user": user,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["prompt_tokens"] == 8  # the remote's own figures
        finished.append(user)

    flood = [threading.Thread(target=one, args=("flood",)) for _ in range(4)]
    for thread in flood:
        thread.start()
    time.sleep(0.3)  # the first flood request holds the remote's one slot
    other = threading.Thread(target=one, args=("other",))
    other.start()
    for thread in [*flood, other]:
        thread.join()
    # first come, first served would put "other" last; the fair queue lets it go second
    assert finished.index("other") <= 1, finished


def test_remote_models_are_listed_marked_remote(front: Front) -> None:
    cards = {c["id"]: c for c in httpx.get(f"{front.url}/v1/models").json()["data"]}
    assert cards["counting"]["owned_by"] == "remote"
    assert cards["counting:latest"]["owned_by"] == "remote"
    tags = {m["name"]: m for m in httpx.get(f"{front.url}/api/tags").json()["models"]}
    remote = tags["stall:latest"]
    assert remote["remote_host"] == f"http://127.0.0.1:{front.remote_port}/v1"
    assert remote["remote_model"] == "stall" and remote["details"]["format"] == "remote"
    shown = httpx.post(f"{front.url}/api/show", json={"model": "stall"}).json()
    assert shown["remote_host"] == remote["remote_host"] and shown["remote_model"] == "stall"


def test_sse_decoder_is_strict() -> None:
    decoder = SSEDecoder("peer")
    assert decoder.feed(": keep-alive") is None
    assert decoder.feed("event: message") is None
    assert decoder.feed('data: {"a":') is None
    assert decoder.feed("data: 1}") is None
    assert decoder.feed("") == '{"a":\n1}'
    with pytest.raises(RemoteProviderError, match="unknown SSE field"):
        decoder.feed("colour: red")
    with pytest.raises(RemoteProviderError, match="not an SSE field"):
        decoder.feed("just text")


def test_the_registry_never_holds_a_key_and_refuses_bad_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RemoteRegistry(tmp_path / "remotes.toml")
    monkeypatch.setenv("PEER_KEY", "sk-very-secret")
    registry.add(RemoteProvider.create("Peer", "http://127.0.0.1:9", api_key_env="PEER_KEY"))
    text = (tmp_path / "remotes.toml").read_text()
    assert "sk-very-secret" not in text and 'api_key_env = "PEER_KEY"' in text
    provider = RemoteRegistry(tmp_path / "remotes.toml").get("peer")
    assert provider is not None and provider.url == "http://127.0.0.1:9/v1"
    assert provider.api_key() == "sk-very-secret"
    monkeypatch.delenv("PEER_KEY")
    with pytest.raises(RemoteProviderError, match=r"\$PEER_KEY, which is not set"):
        provider.api_key()
    for url in ("ftp://host/v1", "http://user:pw@host/v1", "not a url"):
        with pytest.raises(Exception, match="URL"):
            RemoteProvider.create("x", url)


def test_a_broken_remotes_file_keeps_the_server_serving(tmp_path: Path) -> None:
    path = tmp_path / "remotes.toml"
    RemoteRegistry(path).add(RemoteProvider.create("peer", "http://127.0.0.1:9"))
    served = RemoteRegistry(path, keep_last_good=True)
    assert served.get("peer") is not None
    path.write_text('[remotes."peer:latest"]\nurl = "http://127.0.0.1:9/v1"\nmodel = 3\n')
    with pytest.raises(ConfigError, match=r"remotes\.toml"):
        RemoteRegistry(path).list()  # the CLI says what is wrong
    assert served.get("peer") is not None  # the server keeps what it had
