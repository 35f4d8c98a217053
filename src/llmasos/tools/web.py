"""``http_fetch`` (off unless ``settings.tools_http_fetch``) and ``service_call``.

``http_fetch`` reads a public web page through `llmasos.net.fetch_public`, whose guard
refuses private, loopback and link-local addresses (also after redirects and DNS changes).
It is offered by a provider, so with the setting off no task even sees it. A page's text is
cut at ``max_chars`` and the result says so.

``service_call`` runs one of the named services (``summarize``, ``translate`` ...) as the
task's owner, who must hold that service's scope.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from html import unescape
from typing import Any, Final

from llmasos.errors import LLMasOSError
from llmasos.net import fetch_public
from llmasos.services.registry import ServiceRegistry
from llmasos.services.runner import ServiceRunner
from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolResult, ToolSpec

MAX_FETCH_BYTES: Final = 2 * 2**20
DEFAULT_MAX_CHARS: Final = 8_000
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def page_text(body: bytes) -> str:
    """Readable text of a page: scripts and tags dropped, entities decoded."""
    text = body.decode("utf-8", errors="replace")
    if "<" in text and ">" in text:
        text = unescape(_TAG.sub(" ", _SCRIPT.sub(" ", text)))
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


class HttpFetch(Tool):
    spec = ToolSpec(
        name="http_fetch",
        description="Read a public web page (http or https) as text.",
        parameters={
            "type": "object",
            "properties": {
                "url": {"type": "string", "maxLength": 2048},
                "max_chars": {"type": "integer", "minimum": 100, "maximum": 50_000},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        permission="tasks",
        group="web",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        url = arguments["url"]
        try:
            body = await asyncio.to_thread(
                fetch_public, url, max_bytes=MAX_FETCH_BYTES, timeout=self.spec.timeout_s
            )
        except LLMasOSError as error:
            raise ToolError(error.message, code="fetch_failed") from None
        text = page_text(body)
        limit = arguments.get("max_chars", DEFAULT_MAX_CHARS)
        return ToolResult(
            {"url": url, "text": text[:limit], "truncated": len(text) > limit, "chars": len(text)}
        )


class HttpFetchProvider:
    """Offers `HttpFetch` only where the setting turns it on."""

    def __init__(self) -> None:
        self.tool = HttpFetch()

    async def tools(self, context: ToolContext) -> Sequence[Tool]:
        return [self.tool] if context.system.settings.tools_http_fetch else []


class ServiceCall(Tool):
    spec = ToolSpec(
        name="service_call",
        description="Run a named service (summarize, translate, classify, extract ...) "
        "on an input object.",
        parameters={
            "type": "object",
            "properties": {
                "service": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                "input": {"type": "object"},
            },
            "required": ["service", "input"],
            "additionalProperties": False,
        },
        permission="tasks",
        timeout_s=300.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        name = arguments["service"]
        if not context.principal.allows_scope(f"services:{name}"):
            raise ToolError(f"the service {name!r} is not permitted to this user", code="denied")
        settings = context.system.settings
        runner = ServiceRunner(context.system.engine, lambda: ServiceRegistry.load(settings.home))
        result = await runner.call(name, arguments["input"], tenant=context.principal.tenant)
        return ToolResult(result.to_dict())


http_fetch = HttpFetchProvider()
service_call = ServiceCall()
