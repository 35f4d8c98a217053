"""The Python SDK, the library programs use: `Client`, `AsyncClient`, `LLM`, `pipeline` and
the application framework `Application`.

``llmasos.Client``, ``llmasos.AsyncClient``, ``llmasos.LLM``, ``llmasos.pipeline`` and
``llmasos.Application`` are these, imported lazily. The clients speak HTTP to a server;
`LLM` runs over a server or an in-process kernel; `Application` turns typed functions into
HTTP routes around a model (an app's code, which the process manager `llmasos.apps` runs).

``llmasos.Workflow`` is the workflow definition (`llmasos.workflows.Workflow`): build one
from Python data with ``Workflow.from_dict`` and store it with ``client.workflows.create``
(`llmasos.sdk.workflows`, which also runs workflows and reads their traces); it is checked
exactly as YAML is.

May import: workflows (definitions), the kernel's client, services, models (through
`ModelStoreInterface`), config, errors and types — never server, cli or webui.
"""

from typing import TYPE_CHECKING, Any

from llmasos.sdk.client import AsyncClient, Client
from llmasos.sdk.llm import LLM
from llmasos.sdk.pipeline import pipeline

if TYPE_CHECKING:
    from llmasos.sdk.application import Application, Route
    from llmasos.sdk.params import ParameterError
    from llmasos.workflows.definition import Workflow

__all__ = [
    "LLM",
    "Application",
    "AsyncClient",
    "Client",
    "ParameterError",
    "Route",
    "Workflow",
    "pipeline",
]


def __getattr__(name: str) -> Any:
    # The application framework pulls in FastAPI: load it only for programs that use it.
    if name in ("Application", "Route"):
        from llmasos.sdk import application

        return getattr(application, name)
    if name == "ParameterError":
        from llmasos.sdk.params import ParameterError

        return ParameterError
    if name == "Workflow":
        from llmasos.workflows.definition import Workflow

        return Workflow
    raise AttributeError(f"module 'llmasos.sdk' has no attribute {name!r}")
