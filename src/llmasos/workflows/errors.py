"""The two failures of the workflows layer: a definition that cannot run, a node that failed."""

from __future__ import annotations

from llmasos.errors import InvalidRequestError


class WorkflowError(InvalidRequestError):
    """A definition that cannot run; the message names the node and the YAML position."""

    default_code = "invalid_workflow"


class NodeFailure(InvalidRequestError):
    """A node could not do its work (bad value, failed call, timeout): the run's error."""

    default_code = "node_failed"
