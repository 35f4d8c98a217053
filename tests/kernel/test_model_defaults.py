"""How a model's default parameters fill a request's sampling parameters."""

from __future__ import annotations

from llmasos.kernel.client import apply_model_defaults
from llmasos.models.manifest import Manifest
from llmasos.types import SamplingParams, StructuredOutput

CHATML = Manifest(
    name="chatml:test",
    format="gguf",
    kind="generate",
    files=(),
    parameters={"stop": ["<|im_end|>"], "temperature": 0.2},
)


def test_defaults_fill_only_what_the_caller_left_unset() -> None:
    filled = apply_model_defaults(
        SamplingParams(temperature=0.9), CHATML, frozenset({"temperature"})
    )
    assert filled.temperature == 0.9 and filled.stop == ("<|im_end|>",)


def test_structured_output_ends_where_its_grammar_does_not_at_default_stops() -> None:
    """Under a grammar the model may spell '<|im_end|>' inside a JSON string; a default stop
    string would cut the document there (seen with SmolLM2 at temperature 0.7)."""
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    structured = SamplingParams(structured=StructuredOutput(kind="json_schema", schema=schema))
    filled = apply_model_defaults(structured, CHATML, frozenset())
    assert filled.stop == () and filled.temperature == 0.2
    # A stop the caller asks for still applies.
    asked = structured.with_changes(stop=("END",))
    assert apply_model_defaults(asked, CHATML, frozenset({"stop"})).stop == ("END",)
