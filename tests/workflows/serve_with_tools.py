"""``llmasos serve`` with two test tools registered through the real plugin registry.

``mark`` appends ``TEXT KEY`` to the file ``$WF_MARKS`` (a side effect the test counts);
``gate`` waits while the file ``$WF_GATE`` exists. Run as ``python -m
tests.workflows.serve_with_tools serve --port N``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from llmasos.plugins import get_registry
from llmasos.tools import Tool, ToolContext, ToolResult, ToolSpec


class Mark(Tool):
    spec = ToolSpec(
        name="mark",
        description="Append a line to the marks file.",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
        permission="notes",
        side_effect=True,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        with open(os.environ["WF_MARKS"], "a", encoding="utf-8") as marks:
            marks.write(f"{arguments['text']} {context.idempotency_key}\n")
        return ToolResult({"marked": arguments["text"]})


class Gate(Tool):
    spec = ToolSpec(
        name="gate",
        description="Wait while the gate file exists.",
        parameters={"type": "object"},
        permission="notes",
        timeout_s=600,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        gate = Path(os.environ["WF_GATE"])
        while gate.exists():
            await asyncio.sleep(0.05)
        return ToolResult("open")


if __name__ == "__main__":
    get_registry().register_tool(Mark())
    get_registry().register_tool(Gate())
    from llmasos.cli.main import main

    sys.argv = ["llmasos", *sys.argv[1:]]
    main()
