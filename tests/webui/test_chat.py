"""The chat page in a real browser against the real server and the embedded model: streaming
with stop, a cited answer from an attached file (its sources shown again when the
conversation is reopened), HTML in messages shown as text, a form post
without the CSRF token refused, a quota shown as a readable message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.webui.conftest import USER, Console, shot

REPLY_DONE = "#messages article.message.assistant[data-done]"


def settings(page: Any, *, max_tokens: int, temperature: float | None = None) -> None:
    page.get_by_text("System prompt and parameters").click()
    page.get_by_label("Max tokens").fill(str(max_tokens))
    if temperature is not None:
        page.get_by_label("Temperature").fill(str(temperature))


def test_streaming_reply_and_stop(admin_page: Any) -> None:
    page = admin_page
    page.goto("/chat")
    settings(page, max_tokens=600, temperature=0)
    page.get_by_label("Message", exact=True).fill(
        "Write a very long story about a dragon who learns to bake bread."
    )
    page.get_by_role("button", name="Send").click()
    streaming = page.locator("#messages .message.assistant .streaming")
    page.wait_for_function(  # tokens show while the reply is still running
        "() => { const s = document.querySelector('#messages .streaming');"
        " return s && s.textContent.length > 0 && !document.getElementById('stop').disabled; }"
    )
    partial = streaming.text_content() or ""
    page.get_by_role("button", name="Stop").click()
    done = page.locator(REPLY_DONE)
    done.wait_for()
    assert "Stopped." in (done.text_content() or "")
    assert page.get_by_role("button", name="Stop").is_disabled()
    assert partial.strip()[:20] in (done.locator(".body").text_content() or "")
    assert "/chat/conv_" in page.url  # the conversation was created and is listed
    page.reload()
    assert page.locator("#messages .message").count() == 2
    assert page.locator("#conversation-list li a[aria-current=page]").count() == 1


def test_attached_file_gives_a_cited_answer(admin_page: Any, tmp_path: Path) -> None:
    page = admin_page
    page.goto("/chat")
    notes = tmp_path / "reactor-notes.txt"
    notes.write_text(
        "Zorblax reactor operations manual.\n\n"
        "The Zorblax reactor is cooled by liquid helium pumped from the Oslo facility. "
        "The helium loop is inspected every Tuesday by the night shift.\n"
    )
    page.locator("#attachment").set_input_files(str(notes))
    page.locator("#attachments[data-ready]").wait_for()
    settings(page, max_tokens=60, temperature=0)
    page.get_by_label("Message", exact=True).fill("How is the Zorblax reactor cooled?")
    page.get_by_role("button", name="Send").click()
    done = page.locator(REPLY_DONE)
    done.wait_for()
    source = done.locator(".sources a.source").first
    href = source.get_attribute("href") or ""
    assert href.startswith("/chat/sources/vs_")
    assert "reactor-notes.txt" in (source.text_content() or "")
    live_markers = done.locator("a.cite").count()
    shot(page, "chat")
    conversation = page.url
    source.click()
    page.wait_for_url("**/chat/sources/**")
    assert "liquid helium" in (page.locator("#chunk-text").text_content() or "")
    page.goto(conversation)  # reopened: the stored reply shows the same sources and markers
    reopened = page.locator("#messages article.message.assistant").last
    assert reopened.locator(".sources a.source").first.get_attribute("href") == href
    assert "reactor-notes.txt" in (reopened.locator(".sources").text_content() or "")
    assert reopened.locator("a.cite").count() == live_markers


def test_memory_used_in_a_reply_is_shown(admin_page: Any, admin_api: Any) -> None:
    client, token = admin_api
    added = client.post(
        "/v1/memories",
        json={"text": "My cat is called Pixel and she loves sardines."},
        headers={"X-CSRF-Token": token},
    )
    assert added.status_code in (200, 201), added.text
    memory_id = added.json()["data"][0]["id"]
    page = admin_page
    page.goto("/chat")
    settings(page, max_tokens=12, temperature=0)
    page.get_by_label("Use my memory").check()
    page.get_by_label("Message", exact=True).fill("What is my cat called?")
    page.get_by_role("button", name="Send").click()
    done = page.locator(REPLY_DONE)
    done.wait_for()
    used = done.locator(".memories li")
    assert used.first.get_attribute("data-memory") == memory_id
    assert "Pixel" in (used.first.text_content() or "")


def test_html_in_messages_is_shown_as_text(admin_page: Any, admin_api: Any) -> None:
    client, token = admin_api
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    conversation = client.post(
        "/v1/conversations",
        json={
            "metadata": {"title": "hostile"},
            "items": [
                {"type": "message", "role": "user", "content": f"echo {hostile}"},
                {"type": "message", "role": "assistant", "content": f"Sure: {hostile} **ok**"},
            ],
        },
        headers={"X-CSRF-Token": token},
    )
    assert conversation.status_code == 200, conversation.text
    page = admin_page
    page.goto(f"/chat/{conversation.json()['id']}")
    answer = page.locator("#messages .message.assistant .body")
    assert "<script>window.__pwned = 1</script>" in (answer.text_content() or "")
    assert answer.locator("strong").text_content() == "ok"
    assert page.locator("#messages script, #messages img").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")


def test_a_reply_stored_before_citations_says_its_sources_are_missing(
    admin_page: Any, admin_api: Any
) -> None:
    """A turn as the console stored it before it kept sources (the reply's text alone, with
    markers): reopened, its markers stay unlinked and the reply says why, instead of showing
    nothing (docs/design/console.md)."""
    client, token = admin_api
    conversation = client.post(
        "/v1/conversations",
        json={
            "metadata": {"title": "before citations"},
            "items": [
                {"type": "message", "role": "user", "content": "How is the reactor cooled?"},
                {"type": "message", "role": "assistant", "content": "With helium [1] [2]."},
            ],
        },
        headers={"X-CSRF-Token": token},
    )
    assert conversation.status_code == 200, conversation.text
    page = admin_page
    page.goto(f"/chat/{conversation.json()['id']}")
    reply = page.locator("#messages .message.assistant")
    note = reply.locator("[data-unlinked]").text_content() or ""
    assert "[1], [2]" in note and "cannot be recovered" in note
    assert reply.locator("a.cite").count() == 0 and reply.locator(".sources").count() == 0


def test_conversations_rename_search_and_delete(admin_page: Any, admin_api: Any) -> None:
    client, token = admin_api
    for title in ("alpha notes", "beta notes"):
        client.post(
            "/v1/conversations", json={"metadata": {"title": title}},
            headers={"X-CSRF-Token": token},
        )  # fmt: skip
    page = admin_page
    page.goto("/chat")
    page.get_by_role("button", name="Rename: alpha notes").click()
    page.get_by_label("New title").fill("gamma plans")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("link", name="gamma plans").wait_for()
    page.get_by_label("Search conversations").fill("gamma")
    assert page.get_by_role("link", name="beta notes").is_hidden()
    assert page.get_by_role("link", name="gamma plans").is_visible()
    page.get_by_label("Search conversations").fill("")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete: beta notes").click()
    page.get_by_role("link", name="beta notes").wait_for(state="detached")
    titles = [c["metadata"].get("title") for c in client.get("/v1/conversations").json()["data"]]
    assert "gamma plans" in titles and "beta notes" not in titles and "alpha notes" not in titles


def test_form_post_without_the_csrf_token_is_refused(
    admin_page: Any, admin_api: Any, console: Console
) -> None:
    client, token = admin_api
    created = client.post("/v1/conversations", json={}, headers={"X-CSRF-Token": token})
    conversation_id = created.json()["id"]
    page = admin_page
    page.goto("/chat")
    page.evaluate(  # what another page could make the browser do: a plain form post
        """id => { const f = document.createElement('form'); f.method = 'post';
        f.action = '/chat/' + id + '/delete'; document.body.append(f); f.submit(); }""",
        conversation_id,
    )
    page.get_by_role("alert").filter(has_text="X-CSRF-Token").wait_for()
    assert client.get(f"/v1/conversations/{conversation_id}").status_code == 200
    refused = page.evaluate(
        """async () => (await fetch('/v1/conversations', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{}'})).status"""
    )
    assert refused == 403


def test_quota_exceeded_reads_clearly_in_the_chat(user_page: Any, admin_api: Any) -> None:
    client, token = admin_api
    limited = client.put(
        f"/admin/quotas/{USER[0]}", json={"tokens_per_day": 0}, headers={"X-CSRF-Token": token}
    )
    assert limited.status_code == 200, limited.text
    try:
        page = user_page
        page.goto("/chat")
        assert page.locator("nav a[href='/administration']").count() == 0
        page.get_by_label("Message", exact=True).fill("Hello")
        page.get_by_role("button", name="Send").click()
        error = page.locator("#chat-error")
        error.wait_for()
        message = error.text_content() or ""
        assert message.startswith("Limit reached:") and "tokens" in message
        page.wait_for_url("**/chat")  # the empty conversation it began is gone again
    finally:
        client.put(f"/admin/quotas/{USER[0]}", json={}, headers={"X-CSRF-Token": token})


def test_models_page_lists_the_store_and_the_resident_model(
    admin_page: Any, console: Console
) -> None:
    page = admin_page
    page.goto("/models")
    page.locator("#store tr[data-model^='smollm2']").first.wait_for()
    page.locator("#resident tr[data-resident]").first.wait_for()
    shot(page, "models")
    page.get_by_label("Model to pull").fill("no-such-org/no-such-model:missing.gguf")
    page.get_by_role("button", name="Pull").click()
    error = page.locator("#pull-form [data-form-error]")
    error.wait_for()
    assert (error.text_content() or "").strip()
    assert httpx.get(f"{console.url}/health").status_code == 200

    page.get_by_label("New model's name").fill("console-made")
    page.get_by_role("button", name="Create").click()
    page.locator("#create-form[data-done]").wait_for()
    page.locator("#store tr[data-model^='console-made']").wait_for()  # the list refreshed

    resident = page.locator("#resident tr[data-resident]").first
    name = resident.get_attribute("data-resident")
    page.get_by_role("button", name=f"Unload {name}").click()
    page.locator(f"#resident tr[data-resident='{name}']").wait_for(state="detached")
