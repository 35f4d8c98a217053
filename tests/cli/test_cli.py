"""The CLI as a person uses it: reference docs, run, serve, config, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmasos.cli.reference import render_reference
from llmasos.models.builtin import BUILTINS, package_path
from tests.cli.test_output import documented_fields
from tests.serving import free_port

ROOT = Path(__file__).resolve().parents[2]
needs_models = pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)


def llmasos(
    *args: str, home: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmasos", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LLMASOS_HOME": str(home), "LLMASOS_THREADS": "2", **env},
        stdin=subprocess.DEVNULL,
    )


def test_cli_reference_is_up_to_date() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == render_reference(), (
        "docs/cli.md is stale: run `make docs`"
    )


def test_version_and_help(tmp_path: Path) -> None:
    result = llmasos("--version", home=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("llmasos ")
    result = llmasos("serve", "--help", home=tmp_path)
    assert result.returncode == 0 and "--port" in result.stdout


def test_config_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.toml").write_text('port = 9001\nkeep_alive = "10m"\nthreads = 1\n')
    result = llmasos(
        "--threads", "2", "config", "show", "--json", home=tmp_path, LLMASOS_KEEP_ALIVE="1h"
    )
    assert result.returncode == 0, result.stderr
    import json

    shown = json.loads(result.stdout)
    assert shown["port"] == {"value": 9001, "source": "config.toml"}
    assert shown["keep_alive"] == {"value": "1h", "source": "env"}
    assert shown["threads"] == {"value": 2, "source": "cli"}
    assert shown["host"]["source"] == "default"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("--port", "99999", "config", "show"), {}, "port"),
        (("config", "show"), {"LLMASOS_KEEP_ALIVE": "soon"}, "keep_alive"),
        (("run", "smollm3", "hi"), {}, "smollm2"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = llmasos(*args, home=tmp_path, **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0]


def test_unwritable_home_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "file-not-dir"
    home.write_text("x")
    result = llmasos("list", home=home)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.model
@needs_models
def test_run_answers_the_capital_of_france(tmp_path: Path) -> None:
    result = llmasos("run", "smollm2", "What is the capital of France?", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


@pytest.mark.model
@needs_models
def test_interactive_chat_follows_ollamas_repl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmasos.cli import run as run_module
    from llmasos.cli.root import state

    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    monkeypatch.setenv("LLMASOS_PORT", str(free_port()))  # no server there: in-process kernel
    state.reset()
    state.override({"threads": 2})
    lines = iter(
        [
            "/set parameter temperature 0",
            "/set parameter bogus 1",
            "/show info",
            "What is the capital of France?",
            '"""Say',
            'hello."""',
            "/clear",
            "/bye",
        ]
    )
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    session = run_module.ChatSession("smollm2", {}, None)
    try:
        run_module.repl(session)
        out, err = capsys.readouterr()
    finally:
        session.close()
        state.reset()
    assert "Set parameter 'temperature' to '0'" in out
    assert "unknown parameter 'bogus'" in err
    assert "context length" in out
    assert "Paris" in out
    assert session.options == {"temperature": 0.0}
    assert session.messages == []  # /clear forgot the conversation


@pytest.mark.model
@needs_models
def test_serve_health_then_clean_shutdown(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmasos", "serve", "--port", str(port)],
        env={**os.environ, "LLMASOS_HOME": str(tmp_path), "LLMASOS_THREADS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.3)
        assert status == 200
        models = httpx.get(f"http://127.0.0.1:{port}/api/ps", timeout=5).json()["models"]
        assert [m["name"] for m in models] == ["smollm2:135m"]
        env = {**os.environ, "LLMASOS_HOME": str(tmp_path), "LLMASOS_PORT": str(port)}
        ps = subprocess.run(
            [sys.executable, "-m", "llmasos", "ps"], capture_output=True, text=True, env=env
        )
        assert ps.returncode == 0 and "smollm2:135m" in ps.stdout and "llama.cpp" in ps.stdout
        ps_json = subprocess.run(
            [sys.executable, "-m", "llmasos", "ps", "--json"], capture_output=True, text=True,
            env=env,
        )  # fmt: skip
        resident = json.loads(ps_json.stdout)
        assert [(m["name"], m["backend"]) for m in resident] == [("smollm2:135m", "llama.cpp")]
        assert list(resident[0]) == documented_fields("ps")
        stop = subprocess.run(
            [sys.executable, "-m", "llmasos", "stop", "smollm2"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert stop.returncode == 0, stop.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/api/ps", timeout=5).json()["models"] == []
        load = subprocess.run(
            [sys.executable, "-m", "llmasos", "load", "smollm2"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert load.returncode == 0, load.stderr
        assert len(httpx.get(f"http://127.0.0.1:{port}/api/ps", timeout=5).json()["models"]) == 1
        # SIGTERM in the middle of a stream: the stream still finishes.
        body = {
            "model": "smollm2",
            "stream": True,
            "max_tokens": 60,
            "messages": [{"role": "user", "content": "Tell me a story."}],
        }
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        assert httpx.post(url, json={**body, "stream": False}, timeout=60).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'vllm:time_to_first_token_seconds_count{model_name="smollm2:135m"}' in metrics
        assert 'vllm:num_requests_running{model_name="smollm2:135m"}' in metrics
        with httpx.stream("POST", url, json=body, timeout=60) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            process.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        # The story may end before 60 tokens on some CPUs: any finish reason will do.
        assert any('"finish_reason": "' in line for line in rest)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
