"""OS confinement for every process LLMasOS starts on someone's behalf.

``spawn(argv, SandboxSpec(...))`` runs a command inside Linux namespaces (bubblewrap), under
a seccomp filter and resource limits (cgroups, else rlimits), and returns a Popen-like
`SandboxedProcess`. Installed apps (`llmasos.apps.monitor`), stdio MCP servers
(`llmasos.tools.mcp.confined`) and model-written code (`llmasos.tools.code`: the
``python_run`` tool and workflows' ``code`` nodes) all start through it. `probe()` says
what this machine provides; `plan()` says which layers a spec would get, and refuses in
strict mode when one is missing (see docs/design/apps.md, *Confinement*).

Layering: this package imports only the standard library and `llmasos.errors`, so any layer
that runs code for a user (apps, tools, agents, workflows) may use it.
"""

from llmasos.sandbox.interface import (
    ConfinementError,
    ConfinementMode,
    ConfinementReport,
    Layer,
    ResourceLimits,
    SandboxSpec,
)
from llmasos.sandbox.probe import MachineSupport, probe
from llmasos.sandbox.process import SandboxedProcess, plan, refusal, spawn

__all__ = [
    "ConfinementError",
    "ConfinementMode",
    "ConfinementReport",
    "Layer",
    "MachineSupport",
    "ResourceLimits",
    "SandboxSpec",
    "SandboxedProcess",
    "plan",
    "probe",
    "refusal",
    "spawn",
]
