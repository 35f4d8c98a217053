"""``llmasos serve``: start the OS — HTTP server, kernel, model store — in this process.

The CLI only parses the settings flags: what runs is the server the plugin registry names
(`llmasos.server.main.serve` unless a plugin registers another), so the CLI never imports
the server's code.
"""

from __future__ import annotations

from typing import Any

from llmasos.cli.root import app, console, settings_options, state
from llmasos.plugins import get_registry


@app.command()
@settings_options
def serve(*, settings_flags: dict[str, Any]) -> None:
    """Start the LLMasOS server (OpenAI- and Ollama-compatible API) on the default model."""
    state.override(settings_flags)
    run_server = get_registry().server()
    run_server(
        state.settings,
        state.store,
        announce=lambda line: console.print(line, highlight=False),
    )
