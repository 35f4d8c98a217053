"""The ``workflow`` template: an app that serves the workflow in its ``workflow.yaml``."""

MANIFEST = """[app]
name = "$name"
version = "0.1.0"
description = "Serves the workflow in workflow.yaml: a title and a summary of a text."
entry = "app:app"

[permissions]
calls = ["workflows"]
models = []
network = false
storage_mb = 10
"""

WORKFLOW = """name: $name
description: >-
  Cleans a text, asks the model for a title and a one-sentence summary as JSON, and shapes
  the answer. Edit it freely: `llmasos workflow create workflow.yaml` checks it the same way.
inputs:
  text: {type: string, minLength: 1, description: The text to work on.}
nodes:
  clean:
    type: transform
    expression: "inputs.text | trim | truncate(4000, true, '')"
  infer:
    type: llm
    system: You title and summarize texts. Reply with JSON only.
    prompt: |-
      Give a short title and a one-sentence summary of this text.

      {{ nodes.clean.output }}
    schema:
      type: object
      properties:
        title: {type: string, maxLength: 80}
        summary: {type: string, maxLength: 300}
      required: [title, summary]
    max_tokens: 160
    temperature: 0
    retries: 1
  shape:
    type: transform
    template: "{{ nodes.infer.output.title | trim }}: {{ nodes.infer.output.summary | trim }}"
outputs:
  title: "{{ nodes.infer.output.title }}"
  summary: "{{ nodes.infer.output.summary }}"
  text: "{{ nodes.shape.output }}"
"""

APP = '''"""$name: serves the workflow in workflow.yaml through the OS's workflow engine.

On its first request the app stores its workflow on the OS (as the app's own user, replacing
the version an older start stored), so a run is durable, traced and metered like any other.
POST /run {"text": "..."} runs it and answers its output with the run's id; GET
/runs/RUN_ID answers the run's trace: each node's status, seconds, tokens and cost.
"""

import threading
from pathlib import Path
from typing import Any

import llmasos

WORKFLOW = Path(__file__).parent / "workflow.yaml"
client = llmasos.Client()
app = llmasos.Application(name="$name")
_stored: list[str] = []
_lock = threading.Lock()


def _workflow() -> str:
    """The workflow's name, once it is stored on the OS (once per process)."""
    with _lock:
        if not _stored:
            source = WORKFLOW.read_text(encoding="utf-8")
            _stored.append(client.workflows.create(source, replace=True)["name"])
    return _stored[0]


@app.route("/run", methods=["POST"])
def run(text: str) -> dict[str, Any]:
    """Run the workflow on a text: its output and the run's id."""
    result = client.workflows.run(_workflow(), {"text": text})
    if result.status != "succeeded":
        raise llmasos.BackendError(f"run {result.id} {result.status}: {result.error}")
    return {"run_id": result.id, "output": result.output}


@app.route("/runs/{run_id}", methods=["GET"])
def trace(run_id: str) -> dict[str, Any]:
    """A run's trace: each node's status, seconds, tokens and cost, and the totals."""
    found = client.workflows.get_run(run_id)
    nodes = [
        {
            "node": step["node"],
            "status": step["status"],
            "seconds": step["duration_s"],
            "tokens": step["usage"]["prompt_tokens"] + step["usage"]["completion_tokens"],
            "cost": step["cost"],
            "error": step["error"],
        }
        for step in found.steps
    ]
    return {"run_id": found.id, "status": found.status, "nodes": nodes, "usage": found.usage}


if __name__ == "__main__":
    app.run()
'''

FILES = {"llmasos-app.toml": MANIFEST, "workflow.yaml": WORKFLOW, "app.py": APP}
