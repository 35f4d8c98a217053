"""``llmasos conversations list|show|rm`` and ``llmasos run --conversation``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.cli.main import app
from llmasos.cli.root import state
from llmasos.config import Settings
from llmasos.errors import NotFoundError
from llmasos.memory import ConversationStore, input_items
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.net import free_port
from llmasos.storage import ContentCipher, open_database
from tests.cli.test_output import documented_fields

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("LLMASOS_PORT", str(free_port()))  # no server answers: in-process
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    state.reset()
    yield home
    state.reset()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def make_conversations(home: Path, count: int) -> list[str]:
    settings = Settings(home=home)
    with open_database(settings) as database:
        store = ConversationStore(database, ContentCipher.from_settings(settings))
        return [
            store.create(
                None,
                {"n": str(n)},
                input_items(
                    [{"role": "user", "content": f"hello {n}"}, {"role": "user", "content": "more"}]
                ),
            ).id
            for n in range(count)
        ]


def test_list_show_and_rm(home: Path) -> None:
    ids = make_conversations(home, 3)
    code, out, _ = run("conversations", "list")
    assert code == 0
    for conversation_id in ids:  # whole ids in an 80-column table
        assert conversation_id in out
    code, out, _ = run("conversations", "list", "--json")
    listed = json.loads(out)
    assert [c["id"] for c in listed] == ids[::-1] and listed[0]["items"] == 2
    assert list(listed[0]) == documented_fields("conversations", "list")
    code, out, _ = run("conversations", "show", ids[0], "--json")
    shown = json.loads(out)
    assert [i["content"][0]["text"] for i in shown["items"]] == ["hello 0", "more"]
    assert list(shown) == documented_fields("conversations", "show")
    code, out, _ = run("conversations", "show", ids[0])
    assert code == 0 and "user: hello 0" in out
    assert run("conversations", "rm", ids[0])[0] == 0
    with pytest.raises(NotFoundError, match="no conversation"):
        run("conversations", "show", ids[0])
    assert len(json.loads(run("conversations", "list", "--json")[1])) == 2


def test_keys_rotate_master_reencrypts_conversations(home: Path) -> None:
    (conversation_id,) = make_conversations(home, 1)
    before = (home / "secret.key").read_bytes()
    code, _, err = run("keys", "rotate-master")
    assert code == 0, err
    assert "re-encrypted 2 value(s)" in err
    assert (home / "secret.key").read_bytes() != before
    shown = json.loads(run("conversations", "show", conversation_id, "--json")[1])
    assert [i["content"][0]["text"] for i in shown["items"]] == ["hello 0", "more"]


@pytest.mark.model
@pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)
def test_run_continues_a_stored_conversation(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMASOS_THREADS", "2")
    monkeypatch.setenv("LLMASOS_CONTEXT_LENGTH", "1024")
    code, _, err = run("run", "smollm2", "My name is Ada.", "--conversation", "new",
                       "-p", "num_predict=8")  # fmt: skip
    assert code == 0, err
    conversation_id = err.split("conversation ", 1)[1].split()[0]
    code, _, err = run("run", "smollm2", "What is my name?", "--conversation", conversation_id,
                       "-p", "num_predict=8")  # fmt: skip
    assert code == 0, err
    shown = json.loads(run("conversations", "show", conversation_id, "--json")[1])
    roles = [i["role"] for i in shown["items"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert shown["items"][2]["content"][0]["text"] == "What is my name?"
    with pytest.raises(NotFoundError, match="no conversation"):
        run("run", "smollm2", "hi", "--conversation", "conv_missing")
