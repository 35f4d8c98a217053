"""Workflows: durable DAGs of steps (llm, service, tool, retrieval, condition, map, transform,
http, human, sub-workflow) defined as data.

`definition` parses and validates a workflow (YAML or Python) before anything runs;
`expressions` evaluates its ``{{ ... }}`` references in a sandbox; `store` keeps definitions,
runs and one record per finished node in the database; `engine` runs a run's DAG, recording
each node as it finishes, so a run resumes after a crash from the last completed node;
`nodes` executes each node type through the OS's own doors (the kernel client, the services
runner, `ToolSet`, `KnowledgeBase.search`, `net.fetch_public`).

May import: tools, toolchain, perception, services, memory, knowledge, retrieval, access,
storage, the kernel's interface and client, and the shared modules — never agents, apps,
sdk, server, cli or webui.
"""

from llmasos.workflows.definition import Node, Workflow, load_workflow
from llmasos.workflows.errors import NodeFailure, WorkflowError

__all__ = ["Node", "NodeFailure", "Workflow", "WorkflowError", "load_workflow"]
