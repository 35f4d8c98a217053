"""The registered remote providers: ``$LLMASOS_HOME/remotes.toml``, read and written here.

One table per remote, keyed by the model name it is served under::

    [remotes."gpt-4o-mini:latest"]
    url = "https://api.openai.com/v1"
    model = "gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY"
    max_concurrency = 4
    timeout = 300.0
    context_length = 8192

The key itself is never written anywhere: only the name of the environment variable the
server reads it from when it sends a request. The file is plain TOML so an operator can
read and edit it; `RemoteRegistry` re-reads it when it changes, so ``llmasos remote add``
takes effect on a running server without a restart.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llmasos.config import Settings
from llmasos.errors import ConfigError, InvalidRequestError, RemoteProviderError
from llmasos.models.names import parse_name

logger = logging.getLogger(__name__)

REMOTES_FILE = "remotes.toml"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_CONCURRENCY_LIMIT = 1024


def remotes_file(settings: Settings) -> Path:
    """Where the remotes of ``settings.home`` are registered."""
    return settings.home / REMOTES_FILE


def canonical_remote_name(name: str) -> str:
    """The model name a remote is served under (``peer`` -> ``peer:latest``)."""
    return str(parse_name(name))


def normalize_url(url: str) -> str:
    """An OpenAI base URL: ``http(s)://host[:port]/path`` without a trailing slash, with
    ``/v1`` added when the URL has no path (``http://host:8000`` -> ``http://host:8000/v1``)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"remote URL {url[:200]!r} is not an http(s) URL with a host "
            "(e.g. http://127.0.0.1:8080/v1)",
            param="url",
        )
    if parts.username or parts.password:
        raise InvalidRequestError(
            "put the remote's key in an environment variable (--api-key-env), not in its URL",
            param="url",
        )
    if parts.query or parts.fragment:
        raise InvalidRequestError("a remote URL takes no query or fragment", param="url")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class RemoteProvider:
    """One OpenAI-compatible endpoint served as a model of this LLMasOS."""

    name: str
    """The model name clients use here (canonical, ``name:tag``)."""
    url: str
    """The endpoint's OpenAI base URL (``…/v1``); requests go to ``{url}/chat/completions``."""
    model: str
    """The model name sent to the endpoint."""
    api_key_env: str | None = None
    """The environment variable holding the key sent as ``Authorization: Bearer``."""
    max_concurrency: int = 4
    """Requests in flight to the endpoint at once; more wait in the fair queue."""
    timeout: float = 300.0
    """Seconds to wait for the endpoint's response, and then between two stream events."""
    context_length: int = 8192
    """The context window the Responses API's compaction plans with (the endpoint's own
    window is not discoverable through the OpenAI API)."""

    def __post_init__(self) -> None:
        if self.api_key_env is not None and not _ENV_NAME.match(self.api_key_env):
            raise InvalidRequestError(
                f"--api-key-env {self.api_key_env[:130]!r} is not an environment variable name",
                param="api_key_env",
            )
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY_LIMIT:
            raise InvalidRequestError(
                f"--max-concurrency must be between 1 and {MAX_CONCURRENCY_LIMIT}",
                param="max_concurrency",
            )
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= 86400):
            raise InvalidRequestError(
                "--timeout must be between 0 and 86400 seconds", param="timeout"
            )
        if self.context_length < 256:
            raise InvalidRequestError("--context-length must be at least 256", param="context")
        if not self.model.strip():
            raise InvalidRequestError("the remote model name is empty", param="model")

    @classmethod
    def create(
        cls,
        name: str,
        url: str,
        *,
        model: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 4,
        timeout: float = 300.0,
        context_length: int = 8192,
    ) -> RemoteProvider:
        """A validated provider: ``name`` made canonical, ``url`` normalized, the upstream
        model defaulting to ``name`` as given."""
        return cls(
            name=canonical_remote_name(name),
            url=normalize_url(url),
            model=(model or name).strip(),
            api_key_env=api_key_env or None,
            max_concurrency=max_concurrency,
            timeout=float(timeout),
            context_length=context_length,
        )

    def api_key(self) -> str | None:
        """The key from the environment (None when the remote needs none)."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RemoteProviderError(
                f"remote {self.name!r} takes its key from ${self.api_key_env}, which is not "
                "set in the server's environment",
                code="remote_key_missing",
            )
        return key

    def public(self) -> dict[str, Any]:
        """What ``llmasos remote ls --json`` shows (never the key)."""
        return asdict(self)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class RemoteRegistry:
    """The remotes registered in one file; thread-safe, re-read when the file changes.

    A file that does not parse is a `ConfigError`, unless ``keep_last_good`` (the server):
    then it is logged once and the remotes read before stay in service, so a bad edit
    never takes the local models down with it."""

    def __init__(self, path: Path, *, keep_last_good: bool = False) -> None:
        self.path = path
        self.keep_last_good = keep_last_good
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._bad_stamp: tuple[int, int] | None = None
        self._providers: dict[str, RemoteProvider] = {}

    @classmethod
    def for_settings(cls, settings: Settings, *, keep_last_good: bool = False) -> RemoteRegistry:
        return cls(remotes_file(settings), keep_last_good=keep_last_good)

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> dict[str, RemoteProvider]:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return self._providers
        providers: dict[str, RemoteProvider] = {}
        problem: ConfigError | None = None
        if stamp is not None:
            try:
                data = tomllib.loads(self.path.read_text(encoding="utf-8"))
                for name, table in (data.get("remotes") or {}).items():
                    provider = RemoteProvider(name=name, **table)
                    providers[provider.name] = provider
            except (tomllib.TOMLDecodeError, TypeError, AttributeError) as error:
                problem = ConfigError(f"{self.path} is not a valid remotes file: {error}")
            except InvalidRequestError as error:
                problem = ConfigError(f"{self.path}: {error}")
        if problem is not None:
            if not self.keep_last_good:
                raise problem
            if stamp != self._bad_stamp:
                self._bad_stamp = stamp
                logger.warning("%s; the remotes read before stay in service", problem)
            return self._providers
        self._providers, self._stamp = providers, stamp
        return providers

    def list(self) -> list[RemoteProvider]:
        """Every remote, sorted by name."""
        with self._lock:
            return sorted(self._load().values(), key=lambda p: p.name)

    def get(self, name: str | None) -> RemoteProvider | None:
        """The remote served as ``name`` (any spelling of it), or None."""
        if not name:
            return None
        with self._lock:
            providers = self._load()
            if not providers:
                return None
            try:
                return providers.get(canonical_remote_name(name))
            except InvalidRequestError:
                return None

    def add(self, provider: RemoteProvider, *, replace: bool = False) -> None:
        with self._lock:
            providers = dict(self._load())
            if provider.name in providers and not replace:
                raise InvalidRequestError(
                    f"a remote named {provider.name!r} exists already: `llmasos remote rm "
                    f"{provider.name}` first, or add it with --replace",
                    param="name",
                )
            providers[provider.name] = provider
            self._write(providers)

    def remove(self, name: str) -> RemoteProvider:
        with self._lock:
            providers = dict(self._load())
            provider = providers.pop(canonical_remote_name(name), None)
            if provider is None:
                raise InvalidRequestError(f"no remote named {name[:80]!r}", param="name")
            self._write(providers)
            return provider

    def _write(self, providers: dict[str, RemoteProvider]) -> None:
        lines = [
            "# Remote providers served as models (`llmasos remote add`). Keys are never",
            "# stored here, only the environment variable each is read from.",
        ]
        for name in sorted(providers):
            lines.append("")
            lines.append(f"[remotes.{json.dumps(name)}]")
            for key, value in asdict(providers[name]).items():
                if key != "name" and value is not None:
                    lines.append(f"{key} = {_toml_value(value)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        temporary.replace(self.path)
        self._stamp = None  # read back on next use
