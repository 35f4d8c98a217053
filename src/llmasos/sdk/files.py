"""``Client.files``: the calling user's semantic file space (``/v1/fs``).

`Files` wraps the file endpoints: `write` (bytes or text, a new version), `read` (a file or
one version's bytes), `list`, `find` (by meaning, words and metadata), `history`, `move`,
`delete` and `rollback`. Answers are the API's JSON objects (``fs.version``, ``fs.entry``,
``fs.match``; see docs/api.md). With an API key the files are the key's user's; an app's
key reaches only the directories its manifest's ``files`` permission names (403 elsewhere).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from llmasos.sdk.errors import error_from_response


def _url(path: str) -> str:
    return "/v1/fs/files/" + quote(path.lstrip("/"), safe="/")


class Files:
    """The file endpoints of one client (blocking)."""

    def __init__(self, http: httpx.Client, unreachable: Callable[[Exception], Exception]) -> None:
        self._http = http
        self._unreachable = unreachable

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, response.headers)
        return response

    def write(self, path: str, data: bytes | str) -> dict[str, Any]:
        """Store ``data`` at ``path`` (a new file or its next version)."""
        content = data.encode() if isinstance(data, str) else data
        result: dict[str, Any] = self._send("PUT", _url(path), content=content).json()
        return result

    def read(self, path: str, version: int | None = None) -> bytes:
        params = {"version": version} if version is not None else {}
        return self._send("GET", _url(path), params=params).content

    def list(self, path: str = "/") -> builtins.list[dict[str, Any]]:
        data: builtins.list[dict[str, Any]] = self._send(
            "GET", "/v1/fs/list", params={"path": path}
        ).json()["data"]
        return data

    def find(self, query: str, *, k: int = 10, **filters: Any) -> builtins.list[dict[str, Any]]:
        """Files matching ``query``, best first; ``filters``: type, min_size, max_size,
        modified_after, modified_before (ISO dates)."""
        body = {"query": query, "k": k, **filters}
        data: builtins.list[dict[str, Any]] = self._send("POST", "/v1/fs/find", json=body).json()[
            "data"
        ]
        return data

    def history(self, path: str) -> builtins.list[dict[str, Any]]:
        url = "/v1/fs/history/" + quote(path.lstrip("/"), safe="/")
        data: builtins.list[dict[str, Any]] = self._send("GET", url).json()["data"]
        return data

    def move(self, source: str, destination: str) -> dict[str, Any]:
        body = {"from": source, "to": destination}
        result: dict[str, Any] = self._send("POST", "/v1/fs/move", json=body).json()
        return result

    def delete(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send("DELETE", _url(path)).json()
        return result

    def rollback(self, path: str, to: int | None = None) -> dict[str, Any]:
        body = {"path": path, "to": to}
        result: dict[str, Any] = self._send("POST", "/v1/fs/rollback", json=body).json()
        return result
