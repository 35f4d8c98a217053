"""The ``code`` node: Python checked when the workflow is defined, run in the OS sandbox by
the runner of the ``python_run`` tool (`tests/tools/test_code.py` tries the ways out of
it), its ``input`` on standard input and its printed JSON as ``output.json``.

The code is taken as written: its braces and ``nodes.x`` attributes are neither templates
nor references. A failed run fails the node with the end of its stderr; an owner without
the ``code`` scope is refused before anything runs.
"""

from __future__ import annotations

import asyncio

import pytest

from llmasos.access.users import UserManager
from llmasos.storage import Database
from llmasos.workflows import WorkflowError, load_workflow
from llmasos.workflows.system import Workflows
from tests.sandbox.conftest import require_namespaces
from tests.workflows.conftest import run

TOTAL = """
name: total
inputs: {prices: {type: array}}
nodes:
  tax: {type: transform, expression: "0.2"}
  sum:
    type: code
    input: {prices: "{{ inputs.prices }}", tax: "{{ nodes.tax.output }}"}
    code: |
      import json, sys
      data = json.load(sys.stdin)
      total = sum(data["prices"]) * (1 + data["tax"])
      print(json.dumps({"total": round(total, 2), "note": f"{{not a template}}"}))
outputs:
  total: "{{ nodes.sum.output.json.total }}"
  note: "{{ nodes.sum.output.json.note }}"
"""
FAILING = """
name: failing
nodes:
  divide:
    type: code
    code: |
      import sys
      print("about to divide", file=sys.stderr)
      1 / 0
"""


def test_code_is_checked_as_python_and_never_as_a_template() -> None:
    workflow = load_workflow(TOTAL)
    assert workflow.order == ["tax", "sum"]  # `nodes.tax` in `input` only
    source = "name: x\nnodes:\n  a: {type: code, code: 'nodes.missing.append(1)'}\n"
    assert load_workflow(source).nodes["a"].references() == set()
    with pytest.raises(WorkflowError, match=r"`code` is not valid Python: .* \(line 2 of the code"):
        load_workflow('name: x\nnodes:\n  a: {type: code, code: "x = 1\\nif:\\n"}\n')
    with pytest.raises(WorkflowError, match="a code node needs `code`"):
        load_workflow("name: x\nnodes:\n  a: {type: code}\n")
    wrong_field = (
        "name: x\nnodes:\n  a: {type: code, code: 'print(1)'}\n"
        "  b: {type: transform, expression: nodes.a.output.result}\n"
    )
    with pytest.raises(WorkflowError, match=r"nodes\.a\.output has no field 'result'"):
        load_workflow(wrong_field)


def test_a_code_node_runs_confined_and_fails_with_its_stderr(workflows: Workflows) -> None:
    require_namespaces()
    result = asyncio.run(run(workflows, TOTAL, {"prices": [10, 5.5]}))
    assert result.status == "succeeded", result.error
    assert result.output == {"total": 18.6, "note": "{not a template}"}
    failed = asyncio.run(run(workflows, FAILING))
    assert failed.status == "failed"
    assert failed.error is not None
    assert "node 'divide': the code failed (exit status 1)" in failed.error
    assert "ZeroDivisionError: division by zero" in failed.error


def test_an_owner_without_the_code_scope_is_refused(
    workflows: Workflows, database: Database
) -> None:
    users = UserManager(database)
    users.create("owner", role="admin")  # the first user is an admin whatever it asks
    user = users.create("plain", role="user")
    result = asyncio.run(run(workflows, FAILING, user=user.id))
    assert result.status == "failed"
    assert "code nodes need the `code` scope" in (result.error or "")
