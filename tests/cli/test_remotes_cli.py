"""``llmasos remote add|ls|rm`` and remote models in ``llmasos list``, through the real CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from llmasos.cli.main import main
from llmasos.cli.root import state
from llmasos.net import free_port
from tests.cli.invoke import run


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    from llmasos.models import builtin

    monkeypatch.setattr(builtin, "package_path", lambda b: None)  # no built-ins: faster
    state.reset()
    yield home
    state.reset()


def test_add_list_and_remove_a_remote(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDOR_KEY", "sk-do-not-store")
    code, out = run(
        "remote", "add", "vendor/chat", "https://llm.example.com/v1",
        "--api-key-env", "VENDOR_KEY", "--model", "big-model-2", "--max-concurrency", "3",
    )  # fmt: skip
    assert code == 0 and "vendor/chat:latest" in out
    code, out = run("remote", "ls", "--json")
    [entry] = json.loads(out)
    assert entry == {
        "name": "vendor/chat:latest",
        "url": "https://llm.example.com/v1",
        "model": "big-model-2",
        "api_key_env": "VENDOR_KEY",
        "max_concurrency": 3,
        "timeout": 300.0,
        "context_length": 8192,
    }
    assert "sk-do-not-store" not in (home / "remotes.toml").read_text()
    code, out = run("remote", "ls")
    assert "vendor/chat:latest" in out and "$VENDOR_KEY" in out

    listed = {m["name"]: m for m in json.loads(run("list", "--json")[1])}
    remote = listed["vendor/chat:latest"]
    assert remote["format"] == "remote" and remote["remote"]["model"] == "big-model-2"

    assert run("remote", "rm", "vendor/chat")[0] == 0
    assert json.loads(run("remote", "ls", "--json")[1]) == []


def test_bad_remotes_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["remote", "add", "peer", "ftp://host"],
        ["remote", "add", "peer", "http://h/v1", "--api-key-env", "not a name"],
        ["remote", "add", "peer", "http://h/v1", "--max-concurrency", "0"],
        ["remote", "rm", "nothing"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error:") and len(err.strip().splitlines()) == 1, err
    assert run("remote", "add", "peer", "http://h")[0] == 0
    with pytest.raises(SystemExit):
        main(["remote", "add", "peer", "http://h"])
    assert "exists already" in capsys.readouterr().err


def test_run_a_remote_model_without_a_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.distributed.test_remote_faults import Upstream

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    monkeypatch.setenv("LLMASOS_PORT", str(free_port()))  # no server there: in-process
    try:
        url = f"http://127.0.0.1:{upstream.server_address[1]}"
        assert run("remote", "add", "peer", url, "--model", "counting")[0] == 0
        with pytest.raises(SystemExit) as exit_info:
            main(["run", "peer", "Hi"])
        assert exit_info.value.code == 0
        assert "one two three" in capsys.readouterr().out
    finally:
        upstream.shutdown()
        upstream.server_close()
