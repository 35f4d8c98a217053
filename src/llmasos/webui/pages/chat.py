"""The chat page: conversations, the model picker, settings, streaming, citations, memory.

The page is rendered here (conversation list, history as safe markdown, models with the
resident ones marked); the reply itself streams from the browser straight to
``/v1/chat/completions`` (``static/chat.js``: fetch + ReadableStream, the stop button aborts
it). When a reply ends, the browser posts its text with the citations and memory ids the
stream carried to ``/chat/render``, which returns it as safe HTML with ``[n]`` linked to the
cited chunk (``/chat/sources/STORE/CHUNK``) and the memories used listed; the browser then
stores the turn with those citations (``file_citation`` annotations) and memory ids, so a
reopened conversation is rendered here the same way. Conversations are
``/v1/conversations``; rename, delete and the list are htmx fragments from here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from llmasos.webui.api import CSRF_FIELD, ApiError
from llmasos.webui.console import Console, Viewer, console_of
from llmasos.webui.markdown import cite_markers, markers, render_markdown

CONVERSATIONS_SHOWN = 100
HISTORY_SHOWN = 100
MEMORIES_SHOWN = 8
HISTORY_MEMORIES = 32
"""Most distinct memories read to show a reopened conversation's notes."""
TITLE_LENGTH = 80


def bare_name(name: str) -> str:
    return name.removesuffix(":latest")


def text_of(content: Any) -> str:
    """The text of a conversation item's ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def title_of(conversation: dict[str, Any]) -> str:
    metadata = conversation.get("metadata") or {}
    return str(metadata.get("title") or "").strip()


async def _models(console: Console, request: Request) -> list[dict[str, Any]]:
    """The store's chat models, resident ones marked, the default first."""
    listed = await console.api.get(request, "/v1/models")
    try:
        running = await console.api.get(request, "/api/ps")
    except ApiError:
        running = {"models": []}
    resident = {bare_name(str(m.get("name", ""))) for m in running.get("models", [])}
    default = console.settings.default_model
    models = [
        {"id": m["id"], "resident": bare_name(m["id"]) in resident}
        for m in listed.get("data", [])
        if "embed" not in str(m.get("id", "")).lower() and "minilm" not in str(m.get("id", ""))
    ]
    models.sort(key=lambda m: (bare_name(m["id"]) != bare_name(default), m["id"]))
    return models


async def _conversations(console: Console, request: Request) -> list[dict[str, Any]]:
    page = await console.api.get(request, "/v1/conversations", limit=CONVERSATIONS_SHOWN)
    return [{**c, "title": title_of(c)} for c in page.get("data", [])]


def citations_of(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources an assistant item cited, one per source number, from the
    ``file_citation`` annotations its reply was stored with (numbered in order when a client
    stored them without numbers)."""
    found: dict[int, dict[str, Any]] = {}
    for part in item.get("content") or []:
        if not isinstance(part, dict):
            continue
        for annotation in part.get("annotations") or []:
            if not isinstance(annotation, dict) or annotation.get("type") != "file_citation":
                continue
            number = annotation.get("number")
            if not isinstance(number, int):
                number = len(found) + 1
            found.setdefault(number, {**annotation, "number": number})
    return [found[n] for n in sorted(found)]


async def _history(
    console: Console, request: Request, conversation_id: str
) -> list[dict[str, Any]]:
    """The conversation's messages; an assistant's with what it cited and the memories it
    used (each memory read once; a forgotten one is left out)."""
    page = await console.api.get(
        request,
        f"/v1/conversations/{conversation_id}/items",
        order="asc",
        limit=HISTORY_SHOWN,
    )
    history = []
    for item in page.get("data", []):
        if item.get("type") != "message" or item.get("role") not in ("user", "assistant"):
            continue
        message: dict[str, Any] = {"role": item["role"], "text": text_of(item.get("content"))}
        if item["role"] == "assistant":
            message["citations"] = citations_of(item)
            message["memory_ids"] = [str(m) for m in item.get("memory_ids") or []]
        history.append(message)
    wanted = list(dict.fromkeys(m for message in history for m in message.get("memory_ids", [])))
    memories = {m["id"]: m for m in await _memories(console, request, wanted, HISTORY_MEMORIES)}
    for message in history:
        if message["role"] == "assistant":
            message.update(
                reply_view(
                    message["text"],
                    message["citations"],
                    [memories[m] for m in message.pop("memory_ids") if m in memories],
                )
            )
    return history


def reply_view(
    text: str, citations: list[dict[str, Any]], memories: list[dict[str, str]]
) -> dict[str, Any]:
    """What ``chat/_reply.html`` shows of a reply: its safe HTML with ``[n]`` linked to the
    cited chunk, its sources, the memories it used, and the markers that name no stored
    source (``unlinked``: a reply stored before the console kept its sources has markers but
    no citations, and they cannot be recovered, see docs/design/console.md)."""
    by_number = {int(c["number"]): c for c in citations if isinstance(c.get("number"), int)}

    def link(number: int) -> str | None:
        citation = by_number.get(number)
        return source_link(citation) if citation else None

    html = render_markdown(text)
    return {
        "html": cite_markers(html, link),
        "unlinked": ", ".join(f"[{n}]" for n in markers(html) if n not in by_number),
        "citations": [{**c, "href": source_link(c)} for c in citations],
        "memories": memories,
    }


async def chat_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await console.require_viewer(request)
    conversation_id = request.path_params.get("conversation_id")
    conversation, history = None, []
    if conversation_id:
        conversation = await console.api.get(request, f"/v1/conversations/{conversation_id}")
        history = await _history(console, request, conversation_id)
    return console.render(
        request,
        "chat/index.html",
        viewer=viewer,
        area="chat",
        models=await _models(console, request),
        conversations=await _conversations(console, request),
        conversation=conversation,
        conversation_title=title_of(conversation) if conversation else "",
        vector_store_id=(conversation or {}).get("metadata", {}).get("vector_store_id", ""),
        history=history,
        history_texts=[{"role": m["role"], "text": m["text"]} for m in history],
    )


async def conversation_list(request: Request) -> Response:
    console = console_of(request)
    viewer = await console.require_viewer(request)
    return console.render(
        request,
        "chat/_conversations.html",
        viewer=viewer,
        conversations=await _conversations(console, request),
        current=request.query_params.get("current", ""),
    )


async def _form_token(request: Request) -> tuple[dict[str, Any], str | None]:
    form = await request.form()
    token = form.get(CSRF_FIELD)
    return dict(form), token if isinstance(token, str) else None


async def rename(request: Request) -> Response:
    """``POST /chat/ID/rename`` (``title``): the conversation's metadata keeps its other keys."""
    console = console_of(request)
    viewer = await console.require_viewer(request)
    conversation_id = request.path_params["conversation_id"]
    form, token = await _form_token(request)
    title = str(form.get("title", "")).strip()[:TITLE_LENGTH]
    path = f"/v1/conversations/{conversation_id}"
    conversation = await console.api.get(request, path)
    metadata = {**(conversation.get("metadata") or {}), "title": title}
    updated = await console.api.call(
        request, "POST", path, json={"metadata": metadata}, csrf_token=token
    )
    return console.render(
        request,
        "chat/_conversation.html",
        viewer=viewer,
        conversation={**updated, "title": title_of(updated)},
        current=request.query_params.get("current", ""),
    )


async def rename_form(request: Request) -> Response:
    console = console_of(request)
    viewer = await console.require_viewer(request)
    conversation_id = request.path_params["conversation_id"]
    conversation = await console.api.get(request, f"/v1/conversations/{conversation_id}")
    return console.render(
        request,
        "chat/_rename.html",
        viewer=viewer,
        conversation={**conversation, "title": title_of(conversation)},
        current=request.query_params.get("current", ""),
    )


async def delete(request: Request) -> Response:
    console = console_of(request)
    await console.require_viewer(request)
    conversation_id = request.path_params["conversation_id"]
    _, token = await _form_token(request)
    await console.api.call(
        request, "DELETE", f"/v1/conversations/{conversation_id}", csrf_token=token
    )
    if request.query_params.get("current") == conversation_id:
        return Response(status_code=200, headers={"HX-Redirect": "/chat"})
    return HTMLResponse("")


async def _memories(
    console: Console, request: Request, ids: list[str], limit: int = MEMORIES_SHOWN
) -> list[dict[str, str]]:
    found = []
    for memory_id in ids[:limit]:
        try:
            item = await console.api.get(request, f"/v1/memories/{quote(memory_id, safe='')}")
        except ApiError:
            continue  # forgotten since: nothing to show
        found.append({"id": memory_id, "text": str(item.get("text", ""))})
    return found


def source_link(citation: dict[str, Any]) -> str | None:
    """The console's page of a cited chunk (none for a citation without its chunk)."""
    store, chunk = citation.get("vector_store_id"), citation.get("chunk_id")
    if not store or not chunk:
        return None
    return f"/chat/sources/{quote(str(store), safe='')}/{quote(str(chunk), safe='')}"


def _check_csrf(request: Request, viewer: Viewer) -> None:
    if viewer.auth and request.headers.get("x-csrf-token") != viewer.csrf_token:
        raise ApiError(403, "this request needs the session's X-CSRF-Token header", "csrf_failed")


async def render_reply(request: Request) -> Response:
    """``POST /chat/render`` ``{text, citations, memory_ids, stopped}``: a finished reply as
    safe HTML with its sources and the memories it used."""
    console = console_of(request)
    viewer = await console.require_viewer(request)
    _check_csrf(request, viewer)
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "the body must be JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    citations = [c for c in body.get("citations") or [] if isinstance(c, dict)]
    memory_ids = [str(m) for m in body.get("memory_ids") or [] if isinstance(m, str)]
    memories = await _memories(console, request, memory_ids)
    return console.render(
        request,
        "chat/_reply.html",
        viewer=viewer,
        **reply_view(str(body.get("text") or ""), citations, memories),
        stopped=bool(body.get("stopped")),
    )


async def source(request: Request) -> Response:
    """One cited chunk, readable: its file, headings, page and text."""
    console = console_of(request)
    viewer = await console.require_viewer(request)
    store_id, chunk_id = request.path_params["store_id"], request.path_params["chunk_id"]
    chunk = await console.api.get(request, f"/v1/vector_stores/{store_id}/chunks/{chunk_id}")
    return console.render(
        request, "chat/source.html", viewer=viewer, area="chat", chunk=chunk, chunk_id=chunk_id
    )


routes = [
    Route("/chat", chat_page, methods=["GET"]),
    Route("/chat/conversations", conversation_list, methods=["GET"]),
    Route("/chat/render", render_reply, methods=["POST"]),
    Route("/chat/sources/{store_id}/{chunk_id}", source, methods=["GET"]),
    Route("/chat/{conversation_id}", chat_page, methods=["GET"]),
    Route("/chat/{conversation_id}/rename", rename_form, methods=["GET"]),
    Route("/chat/{conversation_id}/rename", rename, methods=["POST"]),
    Route("/chat/{conversation_id}/delete", delete, methods=["POST"]),
]
