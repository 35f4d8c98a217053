"""The tools one caller may use, and the one place calls are checked and run.

`ToolSet.load` gathers the tools registered through ``llmasos.plugins`` (`Tool` objects and
`ToolProvider` ones, which answer per caller), keeps those whose permission the principal
holds, and narrows them to the names or groups a task allowed. `ToolSet.call` parses and
validates the arguments against the tool's schema, runs it under its timeout, and turns
every expected failure (unknown tool, bad arguments, `ToolError`, timeout) into an error
`ToolResult` the model can read, so a task goes on or ends with the reason, never with a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import jsonschema

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.plugins import PluginRegistry, get_registry
from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolProvider, ToolResult

logger = logging.getLogger(__name__)
MAX_ARGUMENT_CHARS = 100_000


class ToolSet:
    """Named tools, each usable by the context it was loaded for."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Any] = {}
        for tool in tools:
            if tool.spec.name in self._tools:
                logger.warning("tool %s is registered twice; the first one is used", tool.spec.name)
                continue
            self._tools[tool.spec.name] = tool

    @classmethod
    async def load(
        cls,
        context: ToolContext,
        *,
        allowed: Collection[str] | None = None,
        registry: PluginRegistry | None = None,
    ) -> ToolSet:
        """The registered tools ``context.principal`` may use; with ``allowed``, only those
        named there, by tool name or group. A name in ``allowed`` that matches nothing the
        principal may use is an `InvalidRequestError` (400) naming what is available."""
        registry = registry or get_registry()
        found: list[Tool] = []
        for target in registry.tools():
            if isinstance(target, Tool):
                found.append(target)
            else:
                found.extend(await _provided(target, context))
        usable = [t for t in found if context.principal.allows_scope(t.spec.permission)]
        if allowed is None:
            return cls(usable)
        wanted = set(allowed)
        chosen = [t for t in usable if t.spec.name in wanted or t.spec.set_name in wanted]
        matched = {t.spec.name for t in chosen} | {t.spec.set_name for t in chosen}
        unknown = sorted(wanted - matched)
        if unknown:
            names = sorted({t.spec.set_name for t in usable} | {t.spec.name for t in usable})
            raise InvalidRequestError(
                f"unknown or not permitted tool {', '.join(unknown)[:200]}; "
                f"available: {', '.join(names) or 'none'}",
                param="tools",
                code="unknown_tool",
            )
        return cls(chosen)

    def _validator(self, tool: Tool) -> Any:
        """The tool's schema checked once and compiled (checking it per call costs ms)."""
        validator = self._validators.get(tool.spec.name)
        if validator is None:
            cls: Any = jsonschema.validators.validator_for(tool.spec.parameters)
            cls.check_schema(tool.spec.parameters)
            validator = self._validators[tool.spec.name] = cls(tool.spec.parameters)
        return validator

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def functions(self) -> list[dict[str, Any]]:
        """The OpenAI ``tools`` list of this set."""
        return [tool.spec.function() for tool in self._tools.values()]

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(self._tools) or "none"
            raise ToolError(
                f"unknown tool {name[:80]!r}; the tools are: {known}", code="unknown_tool"
            ) from None

    def arguments(self, name: str, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """``arguments`` (JSON text or a dict) checked against the tool's schema."""
        tool = self.get(name)
        if arguments is None or arguments == "":
            parsed: Any = {}
        elif isinstance(arguments, str):
            if len(arguments) > MAX_ARGUMENT_CHARS:
                raise ToolError(
                    f"{name}: arguments are {len(arguments)} characters, over the limit of "
                    f"{MAX_ARGUMENT_CHARS}",
                    code="invalid_arguments",
                )
            try:
                parsed = json.loads(arguments)
            except json.JSONDecodeError as error:
                raise ToolError(
                    f"{name}: arguments are not JSON ({error.msg})", code="invalid_arguments"
                ) from None
        else:
            parsed = dict(arguments)
        if not isinstance(parsed, dict):
            raise ToolError(f"{name}: arguments must be a JSON object", code="invalid_arguments")
        try:
            self._validator(tool).validate(parsed)
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "arguments"
            raise ToolError(
                f"{name}: {where}: {error.message[:300]}", code="invalid_arguments"
            ) from None
        except jsonschema.SchemaError as error:
            raise ToolError(
                f"{name}: the tool's own schema is invalid ({error.message[:200]})",
                code="invalid_tool_schema",
            ) from None
        return parsed

    async def call(
        self, name: str, arguments: str | dict[str, Any] | None, context: ToolContext
    ) -> ToolResult:
        """Run one call; every expected failure comes back as an error result."""
        try:
            tool = self.get(name)
            checked = self.arguments(name, arguments)
            return await asyncio.wait_for(tool.run(checked, context), tool.spec.timeout_s)
        except LLMasOSError as error:  # ToolError, or a store's NotFound/InvalidRequest
            return ToolResult({"error": error.message, "code": error.code}, is_error=True)
        except TimeoutError:
            seconds = self._tools[name].spec.timeout_s
            return ToolResult(
                {"error": f"{name} did not answer within {seconds:g} s", "code": "tool_timeout"},
                is_error=True,
            )


async def _provided(provider: ToolProvider, context: ToolContext) -> Sequence[Tool]:
    """A provider's tools; one that fails is logged and contributes none."""
    try:
        return await provider.tools(context)
    except Exception as error:  # a broken provider (a dead MCP server) must not stop a task
        logger.warning("tool provider %r failed: %s", provider, error)
        return []
