"""Service definitions: built-ins, user YAML, plugins, and clear errors for broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmasos.plugins
from llmasos.services.interface import (
    ServiceDefinition,
    ServiceDefinitionError,
    coerce_input_value,
)
from llmasos.services.registry import ServiceRegistry, builtin_definitions

BUILTINS = {
    "summarize",
    "translate",
    "answer",
    "classify",
    "extract",
    "rewrite",
    "code",
    "sentiment",
    "keywords",
}

USER_YAML = """
name: haiku
description: Write a haiku about a topic.
text_input: topic
input_schema:
  type: object
  properties:
    topic: {type: string}
  required: [topic]
prompt: "Write a haiku about {{ topic }}."
parameters: {temperature: 0.7, num_predict: 40}
"""


def test_builtins_load_with_text_inputs() -> None:
    definitions = {d.name: d for d in builtin_definitions()}
    assert set(definitions) == BUILTINS
    assert definitions["summarize"].long_input == "map_reduce"
    assert definitions["translate"].long_input == "chunked"
    assert definitions["classify"].choose_from == "labels"
    assert definitions["translate"].split == "sentences"
    assert definitions["answer"].grounding == "context"
    assert definitions["code"].text_input == "description"


def test_user_yaml_is_picked_up_and_overrides(tmp_path: Path) -> None:
    folder = tmp_path / "services"
    folder.mkdir()
    (folder / "haiku.yaml").write_text(USER_YAML)
    (folder / "summarize.yml").write_text(USER_YAML.replace("name: haiku", "name: summarize"))
    (folder / "broken.yaml").write_text("name: [oops\n")
    registry = ServiceRegistry.load(tmp_path)
    haiku = registry.get("haiku")
    assert haiku.source.endswith("haiku.yaml")
    assert haiku.parameters == {"temperature": 0.7, "num_predict": 40}
    assert registry.get("summarize").text_input == "topic"
    assert len(registry.errors) == 1 and "broken.yaml" in registry.errors[0]


def test_plugin_registered_service(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = llmasos.plugins.PluginRegistry()
    llmasos.plugins.register_builtins(plugins)
    plugins.register_service(USER_YAML.replace("haiku", "poem"))
    plugins.register_service({"name": "bad"})
    monkeypatch.setattr(llmasos.plugins, "_registry", plugins)
    registry = ServiceRegistry.load(None)
    assert registry.get("poem").source == "plugin:service"
    assert "bad" not in registry.names() and registry.errors


def test_unknown_service_names_the_known_ones() -> None:
    with pytest.raises(Exception, match=r"no service named 'nope'.*summarize"):
        ServiceRegistry(builtin_definitions()).get("nope")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "x", "description": "d", "prompt": "p"}, "input_schema"),
        (
            {"name": "x", "description": "d", "prompt": "p", "input_schema": {"type": "object"},
             "parameters": {"temperature": 9}},
            "temperature",
        ),
        (
            {"name": "x", "description": "d", "prompt": "p", "input_schema": {"type": "object"},
             "long_input": "map_reduce"},
            "needs text_input",
        ),
        ({"name": "x", "description": "d", "prompt": "p", "colour": 1}, "unknown keys"),
    ],
)  # fmt: skip
def test_malformed_definitions(data: dict[str, object], match: str) -> None:
    with pytest.raises(ServiceDefinitionError, match=match):
        ServiceDefinition.from_dict(data)


def test_cli_values_are_typed_by_the_schema() -> None:
    definitions = {d.name: d for d in builtin_definitions()}
    assert coerce_input_value(definitions["classify"], "labels", "a, b,c") == ["a", "b", "c"]
    assert coerce_input_value(definitions["summarize"], "max_sentences", "2") == 2
    with pytest.raises(Exception, match="no input 'colour'"):
        coerce_input_value(definitions["summarize"], "colour", "red")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"choose_from": "text"}, "choose_from must name an array input"),
        ({"output_field": "x"}, "output_field needs an output_schema"),
        ({"sentence_limit": "text"}, "sentence_limit must name an integer input"),
        ({"split": "words"}, "split must be sentences"),
        ({"grounding": "labels"}, "grounding must name a string input"),
        ({"examples": [{"output": "a"}]}, "examples must be a list"),
    ],
)
def test_strategy_keys_are_checked(extra: dict[str, object], message: str) -> None:
    data = {
        "name": "s",
        "description": "S.",
        "text_input": "text",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "labels": {"type": "array"}},
        },
        "prompt": "{{ text }}",
        **extra,
    }
    with pytest.raises(ServiceDefinitionError, match=message):
        ServiceDefinition.from_dict(data)
