"""The external MCP servers a user registered: what they are, stored per owner, sealed.

`McpServerConfig` is how to reach one server: a stdio command (with arguments, extra
environment and a working directory) or a streamable HTTP URL (with headers), plus the
seconds a call may take. `McpServerStore` keeps them per owner in ``mcp_servers``; the whole
config is one JSON object sealed by the content cipher, because environments and headers
carry tokens. `McpServer.to_dict` never shows a secret value: environment variables and
headers are listed by name only. Another owner's server is `NotFoundError`, as if absent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import select

from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.ids import new_id
from llmasos.storage.schema import MCP_SERVER_CONFIG_CONTEXT, McpServerRecord, owned_by

SERVER_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
"""Server names: short, lower case; the tools' group is ``mcp:NAME``."""
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
HEADER_NAME: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
DEFAULT_TIMEOUT_S: Final = 30.0
MAX_TIMEOUT_S: Final = 600.0
MAX_SERVERS_PER_OWNER: Final = 50
Transport = Literal["stdio", "http"]


@dataclass(frozen=True)
class McpServerConfig:
    """How to reach one MCP server; `checked` refuses what cannot work."""

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    confine: bool = True
    """stdio: run the command in LLMasOS's sandbox (`llmasos.tools.mcp.confined`)."""
    network: bool = True
    """stdio, confined: the host's network (False: none at all)."""
    read_paths: tuple[str, ...] = ()
    """stdio, confined: directories or files the server may read (beyond the system,
    Python and its own command's directory)."""
    write_paths: tuple[str, ...] = ()
    """stdio, confined: directories the server may write."""

    @classmethod
    def checked(cls, data: dict[str, Any]) -> McpServerConfig:
        """A config from request fields; `InvalidRequestError` naming the field otherwise.
        ``transport`` defaults to ``stdio`` with a ``command``, ``http`` with a ``url``."""
        name = data.get("name")
        if not isinstance(name, str) or not SERVER_NAME.fullmatch(name):
            raise InvalidRequestError(
                "name must be 1-32 lower-case letters, digits, _ or -, starting with a letter",
                param="name",
            )
        command, url = data.get("command"), data.get("url")
        transport = data.get("transport") or ("http" if url and not command else "stdio")
        if transport not in ("stdio", "http"):
            raise InvalidRequestError('transport must be "stdio" or "http"', param="transport")
        timeout = data.get("timeout_s", DEFAULT_TIMEOUT_S)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT_S
        ):
            raise InvalidRequestError(
                f"timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]",
                param="timeout_s",
            )
        if transport == "stdio":
            if not isinstance(command, str) or not command.strip() or "\x00" in command:
                raise InvalidRequestError("a stdio server needs a command", param="command")
            if url:
                raise InvalidRequestError("a stdio server takes no url", param="url")
            args = data.get("args") or []
            if not isinstance(args, list) or not all(
                isinstance(a, str) and "\x00" not in a for a in args
            ):
                raise InvalidRequestError("args must be a list of strings", param="args")
            cwd = data.get("cwd")
            if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
                raise InvalidRequestError("cwd must be an absolute path", param="cwd")
            env = _string_map(data.get("env"), "env", ENV_NAME)
            if data.get("headers"):
                raise InvalidRequestError("a stdio server takes no headers", param="headers")
            for flag in ("confine", "network"):
                if not isinstance(data.get(flag, True), bool):
                    raise InvalidRequestError(f"{flag} must be true or false", param=flag)
            return cls(
                name,
                "stdio",
                command,
                tuple(args),
                env,
                cwd,
                timeout_s=float(timeout),
                confine=data.get("confine", True),
                network=data.get("network", True),
                read_paths=_paths(data.get("read_paths"), "read_paths"),
                write_paths=_paths(data.get("write_paths"), "write_paths"),
            )
        if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url):
            raise InvalidRequestError("an http server needs an http(s) url", param="url")
        if command or data.get("args") or data.get("env"):
            raise InvalidRequestError(
                "an http server takes no command, args or env", param="command"
            )
        headers = _string_map(data.get("headers"), "headers", HEADER_NAME)
        return cls(name, "http", url=url, headers=headers, timeout_s=float(timeout))

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "args": list(self.args),
            "env": self.env,
            "cwd": self.cwd,
            "url": self.url,
            "headers": self.headers,
            "timeout_s": self.timeout_s,
            "confine": self.confine,
            "network": self.network,
            "read_paths": list(self.read_paths),
            "write_paths": list(self.write_paths),
        }

    @classmethod
    def from_json(cls, name: str, transport: str, data: dict[str, Any]) -> McpServerConfig:
        return cls(
            name=name,
            transport="http" if transport == "http" else "stdio",
            command=data.get("command"),
            args=tuple(data.get("args") or ()),
            env=dict(data.get("env") or {}),
            cwd=data.get("cwd"),
            url=data.get("url"),
            headers=dict(data.get("headers") or {}),
            timeout_s=float(data.get("timeout_s") or DEFAULT_TIMEOUT_S),
            confine=bool(data.get("confine", True)),
            network=bool(data.get("network", True)),
            read_paths=tuple(data.get("read_paths") or ()),
            write_paths=tuple(data.get("write_paths") or ()),
        )

    def fingerprint(self) -> str:
        """Changes whenever anything about reaching the server changes (cache keys)."""
        return json.dumps([self.name, self.transport, self.to_json()], sort_keys=True)


def _paths(value: Any, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(p, str) and p.startswith("/") and "\x00" not in p for p in value
    ):
        raise InvalidRequestError(f"{param} must be a list of absolute paths", param=param)
    return tuple(value)


def _string_map(value: Any, param: str, pattern: re.Pattern[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and pattern.fullmatch(k) and isinstance(v, str) and "\x00" not in v
        for k, v in value.items()
    ):
        raise InvalidRequestError(f"{param} must map names to string values", param=param)
    return dict(value)


@dataclass(frozen=True)
class McpServer:
    """A registered server: its id, owner and config."""

    id: str
    user_id: int | None
    config: McpServerConfig
    created_at: datetime

    @property
    def name(self) -> str:
        return self.config.name

    def to_dict(self) -> dict[str, Any]:
        """The API's view: secret values left out, their names kept."""
        config = self.config
        return {
            "id": self.id,
            "object": "mcp_server",
            "name": config.name,
            "transport": config.transport,
            "command": config.command,
            "args": list(config.args),
            "env": sorted(config.env),
            "cwd": config.cwd,
            "url": config.url,
            "headers": sorted(config.headers),
            "timeout_s": config.timeout_s,
            "confine": config.confine if config.transport == "stdio" else None,
            "network": config.network if config.transport == "stdio" else None,
            "read_paths": list(config.read_paths),
            "write_paths": list(config.write_paths),
            "tool_group": f"mcp:{config.name}",
            "created_at": int(self.created_at.timestamp()),
        }


class McpServerStore:
    """CRUD over ``mcp_servers`` for one database; every call names the owner."""

    def __init__(self, database: Database, cipher: ContentCipher) -> None:
        self.database = database
        self.cipher = cipher

    def create(self, user_id: int | None, config: McpServerConfig) -> McpServer:
        server_id = new_id("mcp")
        sealed = self.cipher.encrypt(
            json.dumps(config.to_json()), context=MCP_SERVER_CONFIG_CONTEXT.format(id=server_id)
        )
        with self.database.session(write=True) as session:
            mine = session.scalars(
                select(McpServerRecord.name).where(owned_by(McpServerRecord.user_id, user_id))
            ).all()
            if config.name in mine:
                raise InvalidRequestError(
                    f"you already have an MCP server named {config.name!r}; remove it first",
                    param="name",
                    code="name_taken",
                )
            if len(mine) >= MAX_SERVERS_PER_OWNER:
                raise InvalidRequestError(
                    f"at most {MAX_SERVERS_PER_OWNER} MCP servers per user", param="name"
                )
            record = McpServerRecord(
                id=server_id,
                user_id=user_id,
                name=config.name,
                transport=config.transport,
                config=sealed,
            )
            session.add(record)
            session.flush()
            return self._open(record)

    def list(self, user_id: int | None) -> list[McpServer]:
        with self.database.session() as session:
            records = session.scalars(
                select(McpServerRecord)
                .where(owned_by(McpServerRecord.user_id, user_id))
                .order_by(McpServerRecord.name)
            ).all()
            return [self._open(r) for r in records]

    def get(self, user_id: int | None, ref: str) -> McpServer:
        """The owner's server by id or by name."""
        for server in self.list(user_id):
            if ref in (server.id, server.name):
                return server
        raise NotFoundError(f"no MCP server {ref[:80]!r}", param="server_id")

    def delete(self, user_id: int | None, ref: str) -> McpServer:
        server = self.get(user_id, ref)
        with self.database.session(write=True) as session:
            record = session.get(McpServerRecord, server.id)
            if record is not None:
                session.delete(record)
        return server

    def _open(self, record: McpServerRecord) -> McpServer:
        text = self.cipher.decrypt_text(
            record.config, context=MCP_SERVER_CONFIG_CONTEXT.format(id=record.id)
        )
        return McpServer(
            id=record.id,
            user_id=record.user_id,
            config=McpServerConfig.from_json(record.name, record.transport, json.loads(text)),
            created_at=record.created_at,
        )
