"""The ``service`` template: a thin app around one named service (summarize)."""

MANIFEST = """[app]
name = "$name"
version = "0.1.0"
description = "Summarizes text with the summarize service."
entry = "app:app"

[permissions]
calls = ["services.summarize"]
models = []
network = false
storage_mb = 10
"""

APP = '''"""$name: summarizes text through the kernel's summarize service.

POST /summarize {"text": "..."} answers the summary. The app may call only the summarize
service: its manifest declares nothing else, so its key allows nothing else.
"""

import llmasos

client = llmasos.Client()
app = llmasos.Application(name="$name")


@app.route("/summarize")
def summarize(text: str) -> str:
    """Summarize a text."""
    return str(client.call("summarize", text).output)


if __name__ == "__main__":
    app.run()
'''

FILES = {"llmasos-app.toml": MANIFEST, "app.py": APP}
