"""Pulling from a Hugging Face-like hub served on 127.0.0.1 by the test itself."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmasos.errors import DownloadError, ModelFormatError
from llmasos.models.store import ModelStore
from llmasos.net import free_port
from tests.models.conftest import snapshot


@dataclass
class FakeHub:
    """Repos of files; records each file request's Range header; can misbehave."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    drop_first_download: bool = False
    wrong_sha: bool = False
    ranges: list[str | None] = field(default_factory=list)
    url: str = ""

    def tree(self, repo: str) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = []
        for path, data in self.repos[repo].items():
            entry: dict[str, object] = {"type": "file", "path": path, "size": len(data)}
            if path.endswith((".gguf", ".safetensors")):
                sha = hashlib.sha256(data + (b"x" if self.wrong_sha else b"")).hexdigest()
                entry["lfs"] = {"oid": sha, "size": len(data)}
            else:
                entry["oid"] = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
            entries.append(entry)
        return entries


def make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.startswith("/api/models/") and path.endswith("/tree/main"):
                repo = path.removeprefix("/api/models/").removesuffix("/tree/main")
                if repo not in hub.repos:
                    self.send_error(404)
                    return
                self._send(200, json.dumps(hub.tree(repo)).encode())
                return
            repo, _, file = path.lstrip("/").partition("/resolve/main/")
            data = hub.repos.get(repo, {}).get(file)
            if data is None:
                self.send_error(404)
                return
            header = self.headers.get("Range")
            hub.ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
            body = data[start:]
            self.send_response(206 if header else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if hub.drop_first_download and len(hub.ranges) == 1:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def served(fake: FakeHub, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """``fake`` served on loopback as ``HF_ENDPOINT`` (no token) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with served(FakeHub(), monkeypatch) as fake:
        yield fake


def test_pull_gguf_with_progress(
    store: ModelStore, hub: FakeHub, make_gguf: Callable[..., Path]
) -> None:
    data = make_gguf().read_bytes()
    hub.repos["org/Tiny-GGUF"] = {
        "tiny.Q8_0.gguf": data + b"",
        "tiny.Q4_K_M.gguf": data,
        "README.md": b"hi",
    }
    seen: list[tuple[str, int, int]] = []
    manifest = store.pull("org/Tiny-GGUF", progress=lambda *a: seen.append(a))
    assert manifest.name == "org/tiny-gguf:q4_k_m"
    assert manifest.source == "hf:org/Tiny-GGUF:tiny.Q4_K_M.gguf"
    assert seen[-1] == ("pulling tiny.Q4_K_M.gguf", len(data), len(data))
    assert store.resolve("org/tiny-gguf:q4_k_m").path.read_bytes() == data
    assert not list(store.blobs.root.glob("*.partial"))


def test_pull_resumes_after_dropped_connection(
    store: ModelStore, hub: FakeHub, make_gguf: Callable[..., Path]
) -> None:
    data = make_gguf().read_bytes()
    hub.repos["org/tiny"] = {"tiny.gguf": data}
    hub.drop_first_download = True
    manifest = store.pull("org/tiny:tiny.gguf")
    assert hub.ranges[0] is None
    assert hub.ranges[1] == f"bytes={len(data) // 2}-"
    assert store.resolve(manifest.name).path.read_bytes() == data


def test_digest_mismatch_leaves_nothing(
    store: ModelStore, hub: FakeHub, make_gguf: Callable[..., Path]
) -> None:
    store.import_path(make_gguf(seed=5), "existing")
    before = snapshot(store.root)
    hub.repos["org/tiny"] = {"tiny.gguf": make_gguf(seed=6).read_bytes()}
    hub.wrong_sha = True
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        store.pull("org/tiny")
    assert snapshot(store.root) == before


def test_pull_transformers_repo(
    store: ModelStore, hub: FakeHub, make_hf_dir: Callable[..., Path]
) -> None:
    root = make_hf_dir(sentence_transformers=False)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    files["pytorch_model.bin"] = b"pickle"
    hub.repos["org/bert"] = files
    manifest = store.pull("org/bert", name="bert")
    assert manifest.format == "safetensors"
    assert "pytorch_model.bin" not in {f.path for f in manifest.files}
    assert (store.resolve("bert").path / "config.json").is_file()


def test_errors(store: ModelStore, hub: FakeHub, make_gguf: Callable[..., Path]) -> None:
    data = make_gguf().read_bytes()
    hub.repos["org/many"] = {"a.Q2_K.gguf": data, "a.Q3_K.gguf": data}
    with pytest.raises(DownloadError, match=r"pick one with org/many:FILE from: a\.Q2_K\.gguf"):
        store.pull("org/many")
    with pytest.raises(DownloadError, match="not found"):
        store.pull("org/absent")
    with pytest.raises(DownloadError, match="has no file"):
        store.pull("org/many:b.gguf")


def test_offline_is_one_clear_line(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(
        DownloadError, match=r"^cannot reach http://127\.0\.0\.1:\d+: .*\(offline\?\)$"
    ):
        store.pull("org/tiny")


def whisper_files(vocabulary: int = 51864) -> dict[str, bytes]:
    """A CTranslate2 whisper repo as Systran's faster-whisper-* repos lay it out (the weights
    are placeholder bytes: the store reads config and vocabulary, not the weights)."""
    config = {"alignment_heads": [[1, 0]], "lang_ids": [50259], "suppress_ids": [1, 2]}
    return {
        "config.json": json.dumps(config).encode(),
        "model.bin": b"\x02\x00\x00\x00" + bytes(1024),
        "tokenizer.json": b"{}",
        "vocabulary.txt": "\n".join(f"t{i}" for i in range(vocabulary)).encode() + b"\n",
        "README.md": b"whisper",
        "pytorch_model.bin": b"pickle",
    }


def test_pull_faster_whisper_repo(store: ModelStore, hub: FakeHub) -> None:
    hub.repos["Systran/faster-whisper-tiny.en"] = whisper_files()
    manifest = store.pull("Systran/faster-whisper-tiny.en")
    assert manifest.name == "systran/faster-whisper-tiny.en:latest"
    assert (manifest.format, manifest.kind, manifest.family) == (
        "ctranslate2",
        "transcribe",
        "whisper",
    )
    assert {f.path for f in manifest.files} == {
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    }
    directory = store.resolve(manifest.name).path
    assert (directory / "model.bin").read_bytes() == hub.repos["Systran/faster-whisper-tiny.en"][
        "model.bin"
    ]


def test_a_ctranslate2_model_that_is_not_a_whisper_is_refused(
    store: ModelStore, hub: FakeHub
) -> None:
    files = whisper_files()
    files["config.json"] = b'{"add_source_bos": false}'
    hub.repos["org/ct2-translator"] = files
    with pytest.raises(ModelFormatError, match="not a whisper"):
        store.pull("org/ct2-translator")
