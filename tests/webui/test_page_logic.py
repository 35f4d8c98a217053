"""The pages' own logic, without a browser: reading a workflow's generated form back into
its input, the trace's time axis, the scheduler's rates from ``/metrics`` text, chart bars,
folder crumbs, and a stored reply's citations shown again."""

from __future__ import annotations

from typing import cast

import pytest

from llmasos.config import Settings
from llmasos.memory.items import message_item
from llmasos.webui.api import ApiError, ConsoleApi
from llmasos.webui.console import Console
from llmasos.webui.i18n import translator
from llmasos.webui.pages import admin, chat, files, workflows

SCHEMA = {
    "type": "object",
    "properties": {
        "who": {"type": "string"},
        "times": {"type": "integer"},
        "ratio": {"type": "number"},
        "loud": {"type": "boolean"},
        "tags": {"type": "array"},
        "note": {"type": "string"},
    },
    "required": ["who"],
}


def test_a_workflow_form_is_read_as_its_schema_types() -> None:
    form = {
        "input.who": "Ada",
        "input.times": "3",
        "input.ratio": "0.5",
        "input.loud": "on",
        "input.tags": '["a", "b"]',
        "input.note": "",
    }
    assert workflows.input_of(SCHEMA, form) == {
        "who": "Ada", "times": 3, "ratio": 0.5, "loud": True, "tags": ["a", "b"],
    }  # fmt: skip
    assert workflows.input_of(SCHEMA, {"input.who": "x"})["loud"] is False


@pytest.mark.parametrize(("field", "value"), [("times", "three"), ("tags", "[not json")])
def test_a_bad_field_is_a_400_naming_it(field: str, value: str) -> None:
    with pytest.raises(ApiError) as raised:
        workflows.input_of(SCHEMA, {"input.who": "x", f"input.{field}": value})
    assert raised.value.status == 400 and field in raised.value.message


def test_the_trace_timeline_spans_the_run() -> None:
    steps = [
        {"node": "a", "started_at": 100.0, "finished_at": 101.0},
        {"node": "b", "started_at": 101.0, "finished_at": 104.0},
        {"node": "c", "started_at": None, "finished_at": None},
        {"node": "d", "started_at": 104.0, "finished_at": None},
    ]
    bars = {s["node"]: (s["offset"], s["width"]) for s in workflows.timeline(steps)}
    assert bars["a"] == (0.0, 25.0)
    assert bars["b"] == (25.0, 75.0)
    assert bars["c"] == (0.0, 0.0)  # not started: no bar
    assert bars["d"] == (100.0, 0.5)  # running: a sliver where it began
    assert workflows.timeline([]) == []


METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="smollm2:135m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="smollm2:135m"} 5.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{model_name="smollm2:135m"} %d
# TYPE llmasos:tenant_tokens counter
llmasos:tenant_tokens_total{kind="generation",model_name="smollm2:135m",tenant="alice"} %d
# TYPE llmasos:tenant_requests_running gauge
llmasos:tenant_requests_running{model_name="smollm2:135m",tenant="alice"} 2.0
llmasos:tenant_requests_running{model_name="other:1b",tenant="alice"} 1.0
llmasos:tenant_requests_running{model_name="smollm2:135m",tenant="bob"} 1.0
"""


def test_the_scheduler_view_turns_counters_into_rates() -> None:
    admin._last = admin.Sample()
    first = admin.scheduler_view(METRICS % (100, 40), now=10.0)
    assert first["queue"] == 5 and first["running"] == 2
    assert first["models"]["smollm2:135m"]["tokens_per_s"] is None  # nothing to compare yet
    second = admin.scheduler_view(METRICS % (160, 70), now=12.0)
    assert second["models"]["smollm2:135m"]["tokens_per_s"] == pytest.approx(30.0)
    assert second["tenants"] == {
        "alice": {"running": 3.0, "tokens_per_s": pytest.approx(15.0)},
        "bob": {"running": 1.0, "tokens_per_s": None},  # running, no tokens counted yet
    }


def test_chart_bars_are_fractions_of_the_largest() -> None:
    rows = admin.chart(
        [{"group": "a", "total_tokens": 50}, {"group": "b", "total_tokens": 100}], "total_tokens"
    )
    assert [r["fraction"] for r in rows] == [0.5, 1.0]
    assert admin.chart([{"group": "a", "total_tokens": 0}], "total_tokens")[0]["fraction"] == 0.0


def test_folder_crumbs_and_api_paths() -> None:
    assert files.crumbs("/notes/2026") == [("/", "/"), ("notes", "/notes"), ("2026", "/notes/2026")]
    assert files.crumbs("/") == [("/", "/")]
    assert files.api_path("/notes/a b#1.md") == "notes/a%20b%231.md"


def test_a_stored_reply_shows_its_sources_again() -> None:
    cite = {"type": "file_citation", "file_id": "file_1", "filename": "a.txt"}
    item = {
        "role": "assistant",
        "content": [
            {
                "type": "output_text",
                "text": "Cooled by helium [1], inspected on Tuesdays [2] [1].",
                "annotations": [
                    {**cite, "index": 17, "number": 1, "chunk_id": "c1", "vector_store_id": "vs_1"},
                    {**cite, "index": 44, "number": 2, "chunk_id": "c2", "vector_store_id": "vs_1"},
                    {**cite, "index": 48, "number": 1, "chunk_id": "c1", "vector_store_id": "vs_1"},
                    {"type": "url_citation", "url": "https://example.org"},
                ],
            }
        ],
    }
    citations = chat.citations_of(item)
    assert [(c["number"], c["chunk_id"]) for c in citations] == [(1, "c1"), (2, "c2")]
    view = chat.reply_view(item["content"][0]["text"], citations, [])
    assert str(view["html"]).count('href="/chat/sources/vs_1/c1"') == 2
    assert [c["href"] for c in view["citations"]] == [
        "/chat/sources/vs_1/c1",
        "/chat/sources/vs_1/c2",
    ]
    # another client's citation without number, chunk or page: listed in order, not linked
    bare = chat.citations_of({"content": [{"annotations": [cite]}]})
    assert bare[0]["number"] == 1 and chat.source_link(bare[0]) is None
    templates = Console(cast(ConsoleApi, None), Settings(), []).templates
    shown = templates.get_template("chat/_reply.html").render(
        t=translator("en"), **chat.reply_view("See [1].", bare, []), stopped=False
    )
    assert "a.txt" in shown and "/chat/sources/" not in shown


def test_a_reply_stored_before_citations_says_its_markers_have_no_source() -> None:
    """The console once stored a reply as its text alone; the conversations API keeps that as
    an ``output_text`` part without annotations, so its ``[n]`` cannot be linked: the page
    says so instead of leaving bare markers. Markers in code and cited markers are not named."""
    old = message_item("assistant", "Cooled by helium [1], see `a[2]` and [3].")
    assert old["content"][0]["annotations"] == []  # nothing stored to recover from
    citations = chat.citations_of(old)
    view = chat.reply_view(old["content"][0]["text"], citations, [])
    assert citations == [] and view["unlinked"] == "[1], [3]"
    templates = Console(cast(ConsoleApi, None), Settings(), []).templates
    shown = templates.get_template("chat/_reply.html").render(
        t=translator("en"), **view, stopped=False
    )
    assert "No source was stored with this reply for [1], [3]" in shown
    cited = [{"number": 1, "chunk_id": "c1", "vector_store_id": "vs_1", "filename": "a.txt"}]
    assert chat.reply_view("Helium [1].", cited, [])["unlinked"] == ""
    assert chat.reply_view("No markers here.", [], [])["unlinked"] == ""


def test_the_trace_shows_each_model_nodes_cost_and_the_total() -> None:
    def step(node: str, model: str | None, cost: float | None, finished: bool = True) -> dict:
        tokens = {"prompt_tokens": 7, "completion_tokens": 3} if model else {}
        return {
            "node": node, "type": "llm" if model else "transform", "status": "succeeded",
            "attempts": 1, "error": None, "model": model, "cost": cost, "duration_s": 0.5,
            "usage": tokens or {"prompt_tokens": 0, "completion_tokens": 0},
            "started_at": 100.0, "finished_at": 100.5 if finished else None,
        }  # fmt: skip

    run = {
        "id": "run_1", "workflow": "w", "status": "succeeded", "error": None, "output": None,
        "waiting_for": [],
        "usage": {"prompt_tokens": 14, "completion_tokens": 6, "total_tokens": 20,
                  "cost": 0.0123, "priced": False},
    }  # fmt: skip
    steps = workflows.timeline(
        [step("priced", "smollm2", 0.0123), step("unpriced", "other", None), step("t", None, 0.0)]
    )
    template = Console(cast(ConsoleApi, None), Settings(), []).templates.get_template(
        "workflows/run.html"
    )
    context = template.new_context(
        {"t": translator("en"), "run": run, "steps": steps, "total": 1.5, "live": False,
         "csrf_token": ""}
    )  # fmt: skip
    html = "".join(template.blocks["content"](context))
    cells = html.split("data-cost>")[1:]
    assert [c.split("</td>")[0] for c in cells] == ["0.012300", "no price", ""]
    assert "0.012300 in model costs (no price)" in html
    run.pop("usage")  # a run shown without its steps' totals
    html = "".join(template.blocks["content"](template.new_context({**context.parent, "run": run})))
    assert "in model costs" not in html
