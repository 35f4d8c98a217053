"""``llmasos bench console`` against the session's server: every page measured (the detail
pages of the things it makes first), the weight goal checked, a streamed token timed."""

from __future__ import annotations

from typing import Any

from llmasos.bench.console import DETAIL_PAGES, PAGES, WEIGHT_GOAL_KB, measure, table
from tests.webui.conftest import ADMIN, Console


def test_console_bench_measures_every_page(console: Console, admin_context: Any) -> None:
    report = measure(console.url, *ADMIN, repeat=1, chats=1, model="smollm2", say=lambda _: None)
    assert [page.path for page in report.pages] == list(PAGES)
    assert set(DETAIL_PAGES) < set(PAGES) and "/administration/scheduler" in PAGES
    for page in report.pages:
        assert page.ttfb_p50_ms > 0 and page.assets >= 3  # htmx, console.js, console.css
        assert page.within_goal == (page.transferred_kb < WEIGHT_GOAL_KB)
    assert report.first_token_runs == 1 and report.first_token_p50_ms > 0
    assert "/workflows/runs/{run}" in table(report)
    assert report.to_json()["weight_goal_kb"] == WEIGHT_GOAL_KB
    assert "load average" in table(report) and report.to_json()["load_average_end"] >= 0
