"""The ``rag`` template: answers questions from the text files in the app's ``docs/``."""

MANIFEST = """[app]
name = "$name"
version = "0.1.0"
description = "Answers questions from its documents (retrieval-augmented generation)."
entry = "app:app"

[permissions]
calls = ["embed", "services.answer"]
models = []
network = false
storage_mb = 50
"""

APP = '''"""$name: answers questions from the .txt files in docs/.

The documents are split into paragraphs and embedded once, on the first question; a
question is embedded too, the closest paragraphs (cosine similarity) become the context of
the answer service. GET /ask?question=... answers; GET /sources?question=... shows the
paragraphs it would use.
"""

import math
import threading
from pathlib import Path

import llmasos

DOCS = Path(__file__).parent / "docs"
client = llmasos.Client()
app = llmasos.Application(name="$name")
_index: list[tuple[str, list[float]]] = []
_lock = threading.Lock()


def _paragraphs() -> list[str]:
    texts = [path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.txt"))]
    return [p.strip() for text in texts for p in text.split("\\n\\n") if p.strip()]


def _cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


def _search(question: str, k: int) -> list[str]:
    with _lock:
        if not _index:
            paragraphs = _paragraphs()
            if paragraphs:
                vectors = client.embed(paragraphs).vectors
                _index.extend(zip(paragraphs, vectors))
    if not _index:
        return []
    query = client.embed(question).vectors[0]
    ranked = sorted(_index, key=lambda item: _cosine(query, item[1]), reverse=True)
    return [text for text, _vector in ranked[:k]]


@app.route("/sources")
def sources(question: str, k: int = 3) -> list[str]:
    """The paragraphs closest to the question."""
    return _search(question, k)


@app.route("/ask")
def ask(question: str, k: int = 3) -> str:
    """Answer a question from the documents."""
    context = "\\n\\n".join(_search(question, k))
    return str(client.call("answer", {"question": question, "context": context}).output)


if __name__ == "__main__":
    app.run()
'''

DOC = """LLMasOS is a self-hosted operating system whose kernel is an LLM runtime.

Apps run as their own processes and reach the kernel with a capability key limited to the
permissions in their manifest.
"""

FILES = {"llmasos-app.toml": MANIFEST, "app.py": APP, "docs/about.txt": DOC}
