"""Models LLMasOS knows better than their files do: the settings it serves them with.

A GGUF carries its publisher's chat template, and some templates hurt: SmolLM2-Instruct's
injects "You are a helpful AI assistant named SmolLM, trained by Hugging Face" into every
chat, with which the 135M model answers the France question wrongly and can loop until the
context is full (docs/design/models.md). The built-in copy is served with LLMasOS's ChatML
template, no default system prompt and a low temperature; `known_overrides` gives any other
copy of the same model — imported, pulled, derived by ``llmasos tune`` — the same settings,
recognised by a marker in its own chat template. A Modelfile's TEMPLATE/SYSTEM/PARAMETER
still win over these (they are applied after).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmasos.models.templates import CHATML_STOP, CHATML_TEMPLATE

SMOLLM2_DEFAULT_TEMPERATURE = 0.2


@dataclass(frozen=True)
class KnownModel:
    family: str
    template_marker: str
    """Text only this model family's own chat template contains."""
    overrides: dict[str, Any]
    """Manifest fields LLMasOS serves it with."""


KNOWN_MODELS = (
    KnownModel(
        family="smollm2",
        template_marker="named SmolLM, trained by Hugging Face",
        overrides={
            "chat_template": CHATML_TEMPLATE,
            "system": None,
            "parameters": {"stop": list(CHATML_STOP), "temperature": SMOLLM2_DEFAULT_TEMPERATURE},
        },
    ),
)


def known_overrides(chat_template: str | None) -> dict[str, Any]:
    """LLMasOS's settings for the model whose own template this is (empty if unknown)."""
    if chat_template:
        for known in KNOWN_MODELS:
            if known.template_marker in chat_template:
                return dict(known.overrides)
    return {}
