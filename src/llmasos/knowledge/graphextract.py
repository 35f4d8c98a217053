"""Triples from text: what a graph extractor is, and the one that asks the model.

`GraphExtractorInterface.extract` turns one chunk's text into `Triple`s (subject, its type,
predicate, object, its type). `ModelExtractor` asks a chat model through the kernel's
generate syscall under a JSON schema (`triple_schema`), so the answer is always valid JSON of
that shape — grammar-constrained decoding, the same path as ``response_format`` — an
answer cut off by the token cap keeps its complete triples (`salvage_json`), and
`parse_triples` keeps only well-formed triples (names cleaned, types from `ENTITY_TYPES`).
What the model says may still be wrong (a 135M model extracts poorly); each triple cites the
chunk it came from, so a user can check it. Tests plug a deterministic extractor in where a
`KnowledgeGraph` takes this interface.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Final

from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.knowledge.graph import clean_name, normalize_name
from llmasos.types import SamplingParams, StructuredOutput

ENTITY_TYPES: Final = (
    "person",
    "organization",
    "place",
    "event",
    "date",
    "product",
    "concept",
    "other",
)
MAX_TRIPLES: Final = 8
"""Per chunk: a 250-token chunk rarely states more facts worth a node."""
MAX_PREDICATE_CHARS: Final = 60
MAX_INPUT_CHARS: Final = 2000
EXTRACT_PROMPT: Final = (
    "Extract facts from the text as triples: subject, predicate, object. Subjects and "
    "objects are named things from the text (people, organizations, places, products, "
    "concepts); the predicate is a short verb phrase from the text. Give at most "
    f"{MAX_TRIPLES} triples, only facts the text states."
)


@dataclass(frozen=True)
class Triple:
    subject: str
    subject_type: str
    predicate: str
    object: str
    object_type: str


def triple_schema() -> dict[str, Any]:
    """The JSON schema the model's answer follows."""
    name = {"type": "string", "minLength": 1, "maxLength": 80}
    kind = {"type": "string", "enum": list(ENTITY_TYPES)}
    return {
        "type": "object",
        "properties": {
            "triples": {
                "type": "array",
                "maxItems": MAX_TRIPLES,
                "items": {
                    "type": "object",
                    "properties": {
                        "subject": name,
                        "subject_type": kind,
                        "predicate": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_PREDICATE_CHARS,
                        },
                        "object": name,
                        "object_type": kind,
                    },
                    "required": ["subject", "subject_type", "predicate", "object", "object_type"],
                },
            }
        },
        "required": ["triples"],
    }


def parse_triples(data: Any) -> list[Triple]:
    """The well-formed triples of a decoded answer: names and predicate non-empty after
    cleaning, subject and object different, unknown types read as ``other``; duplicates
    dropped. Anything else yields nothing rather than an error."""
    items = data.get("triples") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    triples: list[Triple] = []
    seen: set[tuple[str, str, str]] = set()
    for item in items[:MAX_TRIPLES]:
        if not isinstance(item, dict):
            continue
        values = [item.get(key) for key in ("subject", "predicate", "object")]
        if not all(isinstance(v, str) for v in values):
            continue
        subject, predicate, obj = (clean_name(str(v)) for v in values)
        predicate = " ".join(predicate.split())[:MAX_PREDICATE_CHARS]
        if not subject or not predicate or not obj:
            continue
        if normalize_name(subject) == normalize_name(obj):
            continue
        key = (normalize_name(subject), predicate.casefold(), normalize_name(obj))
        if key in seen:
            continue
        seen.add(key)
        types = [item.get(k) for k in ("subject_type", "object_type")]
        s_type, o_type = (t if t in ENTITY_TYPES else "other" for t in types)
        triples.append(Triple(subject, str(s_type), predicate, obj, str(o_type)))
    return triples


class GraphExtractorInterface(ABC):
    """Turns a chunk's text into triples."""

    model: str | None = None
    """The model that extracts, as reported in a build's status (None: not a model)."""

    @abstractmethod
    async def extract(self, text: str, *, tenant: str = "anonymous") -> list[Triple]:
        """The triples ``text`` states (possibly none)."""


class ModelExtractor(GraphExtractorInterface):
    """Asks a chat model (the default one unless named) under `triple_schema`."""

    def __init__(self, engine: EngineClientInterface, model: str | None = None) -> None:
        self.engine = engine
        self.model = model

    async def extract(self, text: str, *, tenant: str = "anonymous") -> list[Triple]:
        request = GenerateRequest(
            model=self.model,
            messages=[
                {"role": "system", "content": EXTRACT_PROMPT},
                {"role": "user", "content": text[:MAX_INPUT_CHARS]},
            ],
            sampling=SamplingParams(
                temperature=0.0,
                max_tokens=60 * MAX_TRIPLES,
                structured=StructuredOutput(kind="json_schema", schema=triple_schema()),
            ),
            explicit=frozenset({"temperature", "max_tokens", "structured"}),
            tenant=tenant,
        )
        pieces: list[str] = []
        async for output in self.engine.generate(request):
            pieces.append(output.text)
            if output.finished and output.model:
                self.model = output.model
        return parse_triples(salvage_json("".join(pieces)))


def salvage_json(raw: str) -> Any:
    """The answer decoded; an answer cut off by the token cap keeps its complete triples
    (the text up to the last closed object, with the array and object closed)."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    end = len(raw)
    for _ in range(MAX_TRIPLES + 1):
        end = raw.rfind("}", 0, end)
        if end < 0:
            return None
        try:
            return json.loads(raw[: end + 1] + "]}")
        except ValueError:
            continue
    return None
