"""Parsing and validation: every definition error names the node and its YAML position."""

from __future__ import annotations

import pytest

from llmasos.workflows import Workflow, WorkflowError, load_workflow
from llmasos.workflows.schedule import due, parse_cron


def check(source: str) -> str:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(source)
    return caught.value.message


def test_valid_workflow_orders_nodes_by_dependency() -> None:
    workflow = load_workflow(
        """
name: demo
inputs: {text: string}
nodes:
  last: {type: transform, template: "{{ nodes.middle.output }}!"}
  middle: {type: transform, expression: "nodes.first.output | upper"}
  first: {type: transform, expression: "inputs.text"}
"""
    )
    assert workflow.order == ["first", "middle", "last"]
    assert workflow.input_schema()["required"] == ["text"]


def test_invalid_yaml_names_line_and_column() -> None:
    message = check("name: x\nnodes:\n  a: {type: transform\n  b: 1\n")
    assert message.startswith("invalid YAML at line 4, column")


def test_unknown_node_type_names_node_and_line() -> None:
    message = check(
        "name: x\nnodes:\n  ok: {type: transform, expression: '1'}\n  bad: {type: lmm}\n"
    )
    assert "node 'bad' (line 4, column 3): unknown node type 'lmm'" in message
    assert "llm" in message


def test_missing_reference_and_missing_input() -> None:
    message = check("name: x\nnodes:\n  a: {type: transform, expression: 'nodes.ghost.output'}\n")
    assert "node 'a' (line 3, column 3): references a missing node 'ghost'" in message
    message = check("name: x\nnodes:\n  a: {type: transform, expression: 'inputs.nope'}\n")
    assert "references a missing input 'nope'" in message


def test_self_reference_and_cycle() -> None:
    message = check("name: x\nnodes:\n  a: {type: transform, expression: 'nodes.a.output'}\n")
    assert "node 'a' (line 3, column 3): references itself" in message
    message = check(
        """name: x
nodes:
  a: {type: transform, expression: "nodes.b.output"}
  b: {type: transform, expression: "nodes.a.output"}
"""
    )
    assert "a cycle: " in message
    assert "a -> b -> a" in message or "b -> a -> b" in message


def test_map_over_a_non_list_input_is_refused() -> None:
    message = check(
        """name: x
inputs: {n: integer}
nodes:
  m: {type: map, over: "{{ inputs.n }}", node: {type: transform, expression: "item"}}
"""
    )
    assert "node 'm' (line 4, column 3): map over a non-list: input 'n' is integer" in message


def test_field_missing_from_a_declared_schema() -> None:
    message = check(
        """name: x
nodes:
  ask:
    type: llm
    prompt: hi
    schema: {type: object, properties: {label: {type: string}}}
  use: {type: transform, expression: "nodes.ask.output.score"}
"""
    )
    assert "nodes.ask.output has no field 'score'; its fields are: label" in message


def test_http_off_unless_allowed_and_bad_policy() -> None:
    assert "http nodes are off" in check("name: x\nnodes:\n  h: {type: http, url: 'https://a'}\n")
    load_workflow("name: x\nallow_http: true\nnodes:\n  h: {type: http, url: 'https://a'}\n")
    assert "on_error must be one of" in check(
        "name: x\nnodes:\n  a: {type: transform, expression: '1', on_error: ignore}\n"
    )
    assert "needs `fallback`" in check(
        "name: x\nnodes:\n  a: {type: transform, expression: '1', on_error: branch}\n"
    )
    assert "template error" in check("name: x\nnodes:\n  a: {type: transform, template: '{{ x'}\n")


def test_duplicate_node_is_refused() -> None:
    message = check(
        "name: x\nnodes:\n  a: {type: transform, expression: '1'}\n"
        "  a: {type: transform, expression: '2'}\n"
    )
    assert "node 'a' (line 4, column 3): defined twice" in message


def test_python_definition_goes_through_the_same_checks() -> None:
    workflow = Workflow.from_dict(
        {
            "name": "py",
            "inputs": {"xs": {"type": "array"}},
            "nodes": {
                "double": {
                    "type": "map",
                    "over": "{{ inputs.xs }}",
                    "node": {"type": "transform", "expression": "item * 2"},
                }
            },
        }
    )
    assert workflow.order == ["double"]
    with pytest.raises(WorkflowError, match="unknown node type"):
        Workflow.from_dict({"name": "py", "nodes": {"a": {"type": "shell"}}})


def test_cron_schedule() -> None:
    from datetime import UTC, datetime

    parse_cron("*/15 7-9 * * 1-5")
    assert due("0 7 * * *", datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    assert not due("0 7 * * *", datetime(2026, 1, 5, 7, 1, tzinfo=UTC))
    assert "needs 5 fields" in check(
        "name: x\nschedule: daily\nnodes:\n  a: {type: transform, expression: '1'}\n"
    )
    with pytest.raises(WorkflowError, match="minute must be within"):
        parse_cron("61 * * * *")
