"""writer: drafts texts on a topic and rewrites texts in a given style.

POST /draft {"topic": "...", "tone": "friendly", "max_words": 150} writes a first draft
with the chat syscall; POST /rewrite {"text": "...", "style": "formal"} rewrites a text
with the rewrite service, keeping its meaning. Both answer plain text. The manifest
declares ``chat`` and ``services.rewrite``.
"""

from llmasos import Application, Client, InvalidRequestError

client = Client()
app = Application(name="writer")

SYSTEM = "You are a skilled writer. Reply with the text only, without a preamble."
TOKENS_PER_WORD = 2  # generous: the draft should end on its own, not on the token limit


@app.route("/draft", methods=("POST",))
def draft(topic: str, tone: str = "clear and friendly", max_words: int = 150) -> str:
    """Write a first draft about ``topic`` in the given tone."""
    if not topic.strip():
        raise InvalidRequestError("topic is empty", param="topic")
    if not 10 <= max_words <= 1000:
        raise InvalidRequestError("max_words must be between 10 and 1000", param="max_words")
    prompt = f"Write a {tone} text of at most {max_words} words about: {topic.strip()}"
    reply = client.chat(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        max_tokens=max_words * TOKENS_PER_WORD,
        temperature=0.7,
    )
    return reply.text.strip()


@app.route("/rewrite", methods=("POST",))
def rewrite(text: str, style: str = "clear and concise") -> str:
    """Rewrite ``text`` in ``style`` (formal, friendly, concise ...), keeping its meaning."""
    return str(client.call("rewrite", {"text": text, "style": style}).output).strip()


if __name__ == "__main__":
    app.run()
