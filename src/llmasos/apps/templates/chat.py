"""The ``chat`` template: an assistant that answers with the kernel's chat syscall."""

MANIFEST = """[app]
name = "$name"
version = "0.1.0"
description = "A chat assistant."
entry = "app:app"

[permissions]
calls = ["chat"]
models = []
network = false
storage_mb = 10
"""

APP = '''"""$name: a chat assistant on LLMasOS.

GET /ask?question=... (or POST {"question": ...}) answers the question; the optional
"system" parameter sets the assistant's instructions.
"""

import llmasos

client = llmasos.Client()
app = llmasos.Application(name="$name")


@app.route("/ask")
def ask(question: str, system: str = "You are a helpful assistant.", max_tokens: int = 200) -> str:
    """Answer a question."""
    reply = client.chat(
        [{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=max_tokens,
    )
    return reply.text


if __name__ == "__main__":
    app.run()
'''

FILES = {"llmasos-app.toml": MANIFEST, "app.py": APP}
