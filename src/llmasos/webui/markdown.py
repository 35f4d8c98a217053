"""Model output and user text as safe HTML: markdown-it-py with raw HTML off.

Anything a model or a user wrote goes through `render_markdown`: HTML in the text is shown as
text (``<script>`` becomes ``&lt;script&gt;``), links keep only http(s), mailto and relative
targets (markdown-it-py's ``validateLink`` refuses ``javascript:`` and ``data:``), code
blocks are escaped. `cite_markers` then turns the ``[n]`` markers of a grounded answer into
links to the cited chunk, on the already-safe HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

_MARKER = re.compile(r"\[(\d{1,2})\]")
_CODE = re.compile(r"(<code[^>]*>.*?</code>)", re.DOTALL)


@cache
def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    return parser


def render_markdown(text: str) -> Markup:
    """``text`` (markdown) as HTML that cannot run script. Code blocks are focusable, so a
    keyboard can scroll a long line (the parser writes ``<pre>`` only for code blocks: raw
    HTML in the text is escaped)."""
    return Markup(_parser().render(text).replace("<pre>", '<pre tabindex="0">'))


def markers(html: Markup) -> list[int]:
    """The distinct ``[n]`` markers of ``html`` outside code, in order."""
    prose = (part for part in _CODE.split(str(html)) if not part.startswith("<code"))
    return list(dict.fromkeys(int(m) for part in prose for m in _MARKER.findall(part)))


def cite_markers(html: Markup, link: Callable[[int], str | None]) -> Markup:
    """``html`` with each ``[n]`` outside code turned into a link to ``link(n)`` (markers
    ``link`` knows nothing of stay text)."""

    def replace(match: re.Match[str]) -> str:
        number = int(match.group(1))
        href = link(number)
        if href is None:
            return match.group(0)
        return (
            f'<a class="cite" href="{escape(href)}" data-citation="{number}">'
            f"<sup>[{number}]</sup></a>"
        )

    parts = _CODE.split(str(html))
    return Markup(
        "".join(part if part.startswith("<code") else _MARKER.sub(replace, part) for part in parts)
    )
