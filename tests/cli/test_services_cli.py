"""``llmasos services`` and ``llmasos call`` from the shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdk.conftest import Served, free_port, served  # noqa: F401  (the fixture)


def llmasos(
    *args: str, home: Path, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmasos", *args],
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
        env={
            **os.environ,
            "LLMASOS_HOME": str(home),
            "LLMASOS_THREADS": "2",
            "LLMASOS_PORT": str(free_port()),  # no server there: in-process kernel
            **env,
        },
    )


def test_services_lists_builtins_and_user_yaml(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "mine.yaml").write_text(
        "name: mine\ndescription: Mine.\ninput_schema: {type: object}\nprompt: hi\n"
    )
    result = llmasos("services", home=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"summarize", "translate", "classify", "mine"} <= set(names)


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    result = llmasos("call", "classify", "-", "-p", "colour=red", home=tmp_path, stdin="hi")
    assert result.returncode != 0 and "no input 'colour'" in result.stderr
    assert "Traceback" not in result.stderr
    result = llmasos("call", "summarize", str(tmp_path / "missing.txt"), home=tmp_path)
    assert result.returncode != 0 and "no such file" in result.stderr
    result = llmasos("call", "nope", "-", home=tmp_path, stdin="x")
    assert result.returncode != 0 and "no service named 'nope'" in result.stderr


@pytest.mark.model
def test_call_in_process_from_a_file(tmp_path: Path) -> None:
    text = tmp_path / "review.txt"
    text.write_text("The soup was cold and the waiter was rude. I will not come back.")
    result = llmasos(
        "call", "classify", str(text), "--param", "labels=complaint,praise", "--json", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["output"] in ("complaint", "praise") and data["usage"]["calls"] >= 1


@pytest.mark.model
def test_call_through_a_running_server(served: Served) -> None:  # noqa: F811
    port = served.url.rsplit(":", 1)[1]
    result = llmasos(
        "call", "summarize", "-", "-o", "max_tokens=30", home=served.home,
        stdin="Cats sleep a lot. They also like to play with string.", LLMASOS_PORT=port,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
