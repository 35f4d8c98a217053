"""translator: translates text through the kernel's translate service.

POST /translate {"text": "...", "target_language": "French", "source_language": "English"}
answers the translation as plain text; without ``source_language`` the model detects it.
Long texts are translated chunk by chunk by the service. The manifest declares only
``services.translate``.
"""

from typing import Any

from llmasos import Application, Client

client = Client()
app = Application(name="translator")


@app.route("/translate", methods=("POST",))
def translate(text: str, target_language: str, source_language: str | None = None) -> str:
    """Translate a text into ``target_language``."""
    request: dict[str, Any] = {"text": text, "target_language": target_language}
    if source_language:
        request["source_language"] = source_language
    return str(client.call("translate", request).output).strip()


if __name__ == "__main__":
    app.run()
