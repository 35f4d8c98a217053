"""The console's languages: English and Simplified Chinese, from ``locales/*.json``.

Each locale file is one flat JSON object of ``"area.key": "text"``; texts may name
``{placeholders}`` filled by ``t("area.key", name=...)``. A key missing from a language falls
back to English, then to the key itself (a test keeps both files' keys equal). The language
of a request is the ``llmasos_lang`` cookie the header's switch sets, else the first of the
browser's ``Accept-Language`` that the console speaks, else English.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources

from starlette.requests import Request

LANGUAGES: dict[str, str] = {"en": "English", "zh": "简体中文"}
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "llmasos_lang"

Translate = Callable[..., str]


@cache
def messages(language: str) -> dict[str, str]:
    """The texts of ``language`` (read once)."""
    text = resources.files("llmasos.webui").joinpath(f"locales/{language}.json").read_text("utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def _accepted(header: str) -> list[str]:
    """Languages of an ``Accept-Language`` header, most wanted first."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            ranked.append((-quality, index, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def language_of(request: Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for tag in _accepted(request.headers.get("accept-language", "")):
        primary = tag.split("-", 1)[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def translator(language: str) -> Translate:
    """``t(key, **values)`` in ``language``."""
    texts, fallback = messages(language), messages(DEFAULT_LANGUAGE)

    def translate(key: str, **values: object) -> str:
        text = texts.get(key) or fallback.get(key) or key
        return text.format(**values) if values else text

    return translate
