"""summarizer: summarizes text through the kernel's summarize service.

POST /summarize {"text": "...", "max_sentences": 3} answers the summary as plain text.
Texts longer than the model's context are handled by the service (map-reduce), not cut.
The manifest declares only ``services.summarize``, so the app's key allows nothing else.
"""

from llmasos import Application, Client

client = Client()
app = Application(name="summarizer")


@app.route("/summarize", methods=("POST",))
def summarize(text: str, max_sentences: int = 3) -> str:
    """Summarize a text in about ``max_sentences`` sentences."""
    result = client.call("summarize", {"text": text, "max_sentences": max_sentences})
    return str(result.output).strip()


if __name__ == "__main__":
    app.run()
