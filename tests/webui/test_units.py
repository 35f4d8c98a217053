"""The console's pieces without a browser: safe markdown, citation links, languages, the page
list against the API's paths, the registry's console."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from starlette.requests import Request

from llmasos.plugins import PluginRegistry, register_builtins
from llmasos.server.console import API_SEGMENTS, is_console_path
from llmasos.webui.i18n import LANGUAGES, language_of, translator
from llmasos.webui.markdown import cite_markers, render_markdown
from llmasos.webui.pages import PAGES
from llmasos.webui.session import safe_next


def test_model_output_html_is_text() -> None:
    html = render_markdown(
        "<script>alert(1)</script> **bold** [x](javascript:alert(1)) <img src=x onerror=alert(1)>"
        "\n\n```html\n<script>bad()</script>\n```"
    )
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<strong>bold</strong>" in html
    assert 'href="javascript:' not in html
    assert '<pre tabindex="0"><code class="language-html">&lt;script&gt;' in html


def test_citation_markers_link_their_chunk_outside_code() -> None:
    html = render_markdown("Helium cools it [1], see `a[1]` and [7].")
    linked = cite_markers(html, lambda n: "/chat/sources/vs_1/chunk_9" if n == 1 else None)
    assert linked.count('<a class="cite" href="/chat/sources/vs_1/chunk_9"') == 1
    assert "<code>a[1]</code>" in linked and "[7]" in linked


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "language"),
    [
        ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "zh"),
        ({"Accept-Language": "fr-FR, en;q=0.5, zh;q=0.4"}, "en"),
        ({"Accept-Language": "fr;q=0.9, zh-TW;q=0.8"}, "zh"),
        ({"Accept-Language": "en", "Cookie": "llmasos_lang=zh"}, "zh"),
        ({}, "en"),
    ],
)
def test_language_comes_from_the_cookie_then_the_browser(
    headers: dict[str, str], language: str
) -> None:
    assert language_of(_request(headers)) == language


def test_every_language_has_every_key() -> None:
    folder = resources.files("llmasos.webui").joinpath("locales")
    keys = {
        code: set(json.loads(folder.joinpath(f"{code}.json").read_text("utf-8")))
        for code in LANGUAGES
    }
    assert keys["zh"] == keys["en"]
    for page in PAGES:
        assert page.label in keys["en"]
    assert translator("zh")("frame.signed_in_as", name="ada") == "已登录：ada"
    assert translator("en")("no.such.key") == "no.such.key"


def test_pages_live_outside_the_api() -> None:
    for page in PAGES:
        assert is_console_path(page.path), page
    assert not is_console_path("/v1/models") and not is_console_path("/apps/x/")
    assert is_console_path("/chat/conv_1") and "chat" not in API_SEGMENTS


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/models", "/models"), ("//evil.example", "/chat"), ("https://evil.example/", "/chat"),
     ("/\\evil.example", "/chat"), (None, "/chat"), ("models", "/chat")],
)  # fmt: skip
def test_sign_in_returns_only_to_local_pages(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_the_console_is_a_registered_plugin() -> None:
    registry = PluginRegistry()
    register_builtins(registry)
    from llmasos.webui.app import create_console

    assert registry.console() is create_console
