"""Modelfile parsing and writing."""

from __future__ import annotations

import pytest

from llmasos.errors import ModelfileError
from llmasos.models.manifest import BlobRef, Manifest
from llmasos.models.modelfile import parse_modelfile, to_modelfile


def test_parses_every_instruction() -> None:
    spec = parse_modelfile(
        "# a comment\nfrom smollm2\nPARAMETER temperature 0.2\nPARAMETER num_ctx 2048\n"
        'PARAMETER stop "<|im_end|>"\nparameter stop END\n'
        'SYSTEM """\nYou are terse.\nVery terse.\n"""\n'
        'TEMPLATE """{% for m in messages %}{{ m.content }}{% endfor %}"""\n'
        "ADAPTER ./lora.gguf\nLICENSE MIT\nMESSAGE user Hi\nMESSAGE assistant Hello!\n"
    )
    assert spec.base == "smollm2"
    assert spec.parameters == {"temperature": 0.2, "num_ctx": 2048, "stop": ["<|im_end|>", "END"]}
    assert spec.system == "You are terse.\nVery terse."
    assert spec.template == "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert spec.adapter == "./lora.gguf"
    assert spec.license == "MIT"
    assert spec.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("FROM x\nFROBNICATE y\n", "line 2: unknown instruction 'FROBNICATE'"),
        ("SYSTEM hi\n", "no FROM"),
        ("FROM x\nPARAMETER warmth 1\n", "line 2: unknown parameter 'warmth'"),
        ("FROM x\nPARAMETER top_k lots\n", "line 2: parameter top_k must be an integer"),
        ("FROM x\nPARAMETER temperature hot\n", "must be a number"),
        ('FROM x\nSYSTEM """never closed\n', 'line 2: """ is never closed'),
        ("FROM x\nMESSAGE robot hi\n", "MESSAGE role"),
        ("FROM x\nFROM y\n", "only one FROM"),
        ("FROM x\nTEMPLATE {{ .Prompt }}\n", "Jinja2"),
        ("FROM x\nTEMPLATE {% for %}\n", "line 2: TEMPLATE is not a valid Jinja2"),
    ],
)
def test_errors_name_the_problem(text: str, match: str) -> None:
    with pytest.raises(ModelfileError, match=match):
        parse_modelfile(text)


def test_round_trip() -> None:
    manifest = Manifest(
        name="m:latest",
        format="gguf",
        kind="generate",
        files=(BlobRef("m.gguf", "sha256:00", 1),),
        system='Say "hi".\nTwice.',
        parameters={"temperature": 0.5, "stop": ["<|im_end|>"]},
        messages=({"role": "user", "content": "Hi"},),
        chat_template="{{ messages }}",
    )
    spec = parse_modelfile(to_modelfile(manifest, "/models/m.gguf"))
    assert spec.base == "/models/m.gguf"
    assert spec.system == manifest.system
    assert spec.parameters == manifest.parameters
    assert spec.template == manifest.chat_template
    assert spec.messages == list(manifest.messages)
