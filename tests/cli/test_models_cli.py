"""The model verbs through the real CLI: list, show, rm, cp, import, create, pull."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.cli.main import main
from llmasos.cli.root import state
from tests.cli.invoke import run as invoke

USES_BUILTINS = {"test_builtins_are_listed"}
"""Tests that register the real built-in models; the others hide them (faster)."""


@pytest.fixture(autouse=True)
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    if request.node.name not in USES_BUILTINS:
        from llmasos.models import builtin

        monkeypatch.setattr(builtin, "package_path", lambda b: None)
    state.overrides.clear()
    state._settings = None
    state._store = None
    yield home
    state._settings = None
    state._store = None


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "My-Tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.ones((2, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def run(*args: str) -> tuple[int, str]:
    return invoke(*args, stream="output")


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Through `main`, the error boundary that prints one line."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_import_list_show_cp_rm(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run("import", str(tiny_gguf))
    assert code == 0 and "imported 'my-tiny:latest'" in out
    code, out = run("cp", "my-tiny", "me/copy:v2")
    assert code == 0 and "copied 'my-tiny:latest' to 'me/copy:v2'" in out
    code, out = run("list")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert lines[1].startswith("me/copy:v2") and "ago" in lines[1]
    assert lines[2].startswith("my-tiny:latest")
    code, out = run("show", "my-tiny")
    assert "architecture        llama" in out and "context length      64" in out
    code, out = run("show", "my-tiny", "--json")
    assert json.loads(out)["name"] == "my-tiny:latest"
    code, out = run("rm", "my-tiny", "me/copy:v2")
    assert code == 0 and "deleted 'me/copy:v2'" in out
    assert run("list")[1].strip().splitlines()[1:] == []
    from llmasos.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        run("rm", "no-such-model")
    from llmasos.access.audit import AuditLog
    from llmasos.storage import open_database

    database = open_database(state.settings)
    try:
        events = [(e.action, e.target, e.outcome) for e in AuditLog(database).list()]
    finally:
        database.close()
    assert ("model.import", str(tiny_gguf), "ok") in events
    assert ("model.copy", "my-tiny -> me/copy:v2", "ok") in events
    assert ("model.delete", "me/copy:v2", "ok") in events
    assert ("model.delete", "no-such-model", "error") in events


def test_create_versions_and_modelfile(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM ./{tiny_gguf.name}\nSYSTEM You are a pirate.\n")
    code, out = run("create", "pirate", "-f", str(modelfile))
    assert code == 0 and "created 'pirate:latest'" in out
    modelfile.write_text("FROM pirate\nSYSTEM Arr.\nPARAMETER temperature 0.5\n")
    assert run("create", "pirate", "-f", str(modelfile))[0] == 0
    code, out = run("show", "pirate", "--versions")
    rows = out.strip().splitlines()[1:]
    assert len(rows) == 2 and "(current)" in rows[0]
    old_id = rows[1].split()[0]
    code, out = run("show", f"pirate@{old_id}", "--json")
    assert json.loads(out)["system"] == "You are a pirate."
    code, out = run("show", "pirate", "--modelfile")
    assert "SYSTEM Arr." in out and "PARAMETER temperature 0.5" in out


def test_builtins_are_listed() -> None:
    from llmasos.models.builtin import BUILTINS, package_path

    if any(package_path(b) is None for b in BUILTINS):
        pytest.skip("embedded model packages missing")
    code, out = run("list")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()[1:]]
    assert names == [
        "all-minilm:l6-v2",
        "all-minilm:latest",
        "smollm2:135m",
        "smollm2:latest",
        "whisper:tiny.en",
    ]
    _, out = run("show", "smollm2")
    assert "temperature" in out and "Q4_1" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "smolm2"], "model 'smolm2' not found; did you mean"),
        (["rm", "nothing-here"], "not found"),
        (["cp", "smollm2", "Bad Name"], "invalid model name 'Bad Name'"),
        (["show", "smollm2@xyz"], "invalid model version"),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str, tiny_gguf: Path
) -> None:
    assert run_main(capsys, "import", str(tiny_gguf), "--name", "smollm2")[0] == 0
    code, err = run_main(capsys, *args)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("Error: ") and message in err


def test_bad_import_and_modelfile_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x00" * 100)
    code, err = run_main(capsys, "import", str(junk))
    assert code == 1 and "junk.gguf" in err and err.count("\n") == 1
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM x\nTEMPLATE {{ .Prompt }}\n")
    code, err = run_main(capsys, "create", "m", "-f", str(modelfile))
    assert code == 1 and "Jinja2" in err and "line 2" in err


def test_pull_offline(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    code, err = run_main(capsys, "pull", "org/model")
    assert code == 1
    assert err.startswith("Error: cannot reach http://127.0.0.1:9") and "(offline?)" in err
    assert err.count("\n") == 1


def test_import_with_a_vision_projector(
    tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.vision.tiny_mmproj import write_tiny_mmproj

    projector = write_tiny_mmproj(tmp_path / "mmproj-tiny.gguf", text_hidden=8)
    code, out = run("import", str(tiny_gguf), "--mmproj", str(projector), "-n", "seer")
    assert code == 0 and "imported 'seer:latest'" in out
    code, out = run("show", "seer")
    assert "capabilities        vision" in out and "vision projector    sha256:" in out
    assert json.loads(run("show", "seer", "--json")[1])["projector"]["path"] == "mmproj.gguf"
    code, err = run_main(capsys, "import", str(tiny_gguf), "--mmproj", str(tiny_gguf))
    assert code == 1 and "My-Tiny.gguf is not a vision projector (mmproj) GGUF" in err
    assert len(err.strip().splitlines()) == 1
