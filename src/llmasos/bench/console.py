"""The web console, measured over HTTP: ``llmasos bench console`` (or ``python -m
llmasos.bench.console``).

It starts ``llmasos serve --auth`` on a temporary home (or uses ``--url`` with a user's
name and password), signs in the way the browser does (the first run creates the user on a
fresh server) and measures, like a browser's first visit with an empty cache:

- time to first byte of every page: ``/sign-in`` signed out; signed in as the admin, every
  area (chat, memory, knowledge, files, apps, tasks, workflows, models), every
  administration section, and the detail pages of things the bench makes through the API
  first (a conversation with a turn, a knowledge store, a file, an installed built-in app,
  a workflow and its run): p50 and p95 of ``--repeat`` loads, headers received;
- page weight: the page's HTML plus every script, stylesheet and image it links, bodies as
  transferred (gzip, as browsers ask), against the goal of 300 KB per page;
- time to the first streamed token of a chat reply: ``/v1/chat/completions`` with
  ``stream: true``, the session cookie and the CSRF token, as the chat page sends it.

It knows nothing of the console's code (the bench layer may not import ``webui``): it reads
the pages as any client would. It prints a table and writes the numbers as JSON (``--out``),
with the machine's load average at the start and the end (the times depend on it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from llmasos.bench.metrics import percentile
from llmasos.bench.peers import llmasos_server

ADMIN_SECTIONS = ("users", "keys", "quotas", "prices", "usage", "audit", "scheduler")
AREAS = (
    "/chat",
    "/memory",
    "/knowledge",
    "/files",
    "/app-store",
    "/tasks",
    "/workflows",
    "/models",
)
DETAIL_PAGES = (
    "/chat/{conversation}",
    "/knowledge/{store}",
    "/files/file?path={file}",
    "/app-store/{app}",
    "/workflows/{workflow}",
    "/workflows/runs/{run}",
)
"""Pages of one thing, as the table names them; `make_things` gives the real paths."""
PAGES = (
    "/sign-in",
    *AREAS,
    *(f"/administration/{section}" for section in ADMIN_SECTIONS),
    *DETAIL_PAGES,
)
SIGNED_OUT_PAGES = frozenset({"/sign-in"})
BENCH_APP = "tutor"
BENCH_WORKFLOW = (
    "name: bench-greeter\n"
    "inputs: {who: string}\n"
    "nodes:\n"
    '  greet: {type: transform, template: "Hello {{ inputs.who }}!"}\n'
    'outputs: {text: "{{ nodes.greet.output }}"}\n'
)
WEIGHT_GOAL_KB = 300.0
BENCH_USER = ("bench-admin", "bench-console-password")
ASSET = re.compile(r"""<(?:script[^>]*\ssrc|link[^>]*\shref|img[^>]*\ssrc)="(/[^"]+)\"""")
PROMPT = "Say hello in one short sentence."


@dataclass
class PageResult:
    path: str
    ttfb_p50_ms: float
    ttfb_p95_ms: float
    html_kb: float
    assets: int
    transferred_kb: float
    within_goal: bool


@dataclass
class ConsoleReport:
    pages: list[PageResult] = field(default_factory=list)
    first_token_p50_ms: float = 0.0
    first_token_p95_ms: float = 0.0
    first_token_runs: int = 0
    repeat: int = 0
    model: str = ""
    started_at: str = ""
    load_average_start: float = 0.0
    load_average_end: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "weight_goal_kb": WEIGHT_GOAL_KB}


def sign_in(client: httpx.Client, name: str, password: str) -> str:
    """Sign ``client`` in (the first run on a fresh server); its CSRF token."""
    credentials = {"name": name, "password": password}
    if client.get("/auth/setup").json().get("needed"):
        response = client.post("/auth/setup", json=credentials)
    else:
        response = client.post("/auth/sign-in", json=credentials)
    if response.status_code >= 400:
        raise RuntimeError(f"signing in failed: {response.status_code} {response.text[:200]}")
    return str(response.json()["csrf_token"])


def time_to_first_byte(client: httpx.Client, path: str) -> float:
    """Milliseconds until the response's headers arrived (the body is read afterwards)."""
    started = time.perf_counter()
    with client.stream("GET", path) as response:
        elapsed = (time.perf_counter() - started) * 1000
        response.read()
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
    return elapsed


def transferred(client: httpx.Client, path: str) -> tuple[int, str]:
    """Body bytes on the wire for ``path`` (compressed, as sent) and its decoded text."""
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
        gzipped = response.headers.get("content-encoding") == "gzip"
    return len(raw), (gzip.decompress(raw) if gzipped else raw).decode("utf-8", "replace")


def page_result(client: httpx.Client, path: str, repeat: int, label: str = "") -> PageResult:
    times = [time_to_first_byte(client, path) for _ in range(repeat)]
    html_bytes, html = transferred(client, path)
    assets = sorted(set(ASSET.findall(html)))
    total = html_bytes + sum(transferred(client, asset)[0] for asset in assets)
    return PageResult(
        path=label or path,
        ttfb_p50_ms=percentile(times, 50),
        ttfb_p95_ms=percentile(times, 95),
        html_kb=html_bytes / 1000,
        assets=len(assets),
        transferred_kb=total / 1000,
        within_goal=total / 1000 < WEIGHT_GOAL_KB,
    )


def _made(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(f"making {what} failed: {response.status_code} {response.text[:200]}")
    return dict(response.json())


def make_things(client: httpx.Client, csrf: str) -> dict[str, str]:
    """One of each thing with a page of its own, made through the API (no model work):
    the path of each of `DETAIL_PAGES`."""
    headers = {"X-CSRF-Token": csrf}
    conversation = _made(
        client.post(
            "/v1/conversations",
            json={
                "metadata": {"title": "bench"},
                "items": [
                    {"type": "message", "role": "user", "content": "Hello"},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": "Hello! **How** can I help?",
                    },
                ],
            },
            headers=headers,
        ),
        "a conversation",
    )
    store = _made(
        client.post("/v1/vector_stores", json={"name": "bench"}, headers=headers), "a store"
    )
    _made(
        client.put("/v1/fs/files/bench/notes.md", content=b"# Notes\n\nA line.\n", headers=headers),
        "a file",
    )
    apps = {app["name"] for app in _made(client.get("/v1/apps"), "the app list")["data"]}
    if BENCH_APP not in apps:
        source = f"builtin:{BENCH_APP}"
        review = _made(
            client.post("/v1/apps/review", json={"source": source}, headers=headers), "a review"
        )
        _made(
            client.post(
                "/v1/apps",
                json={"source": source, "review_id": review["review_id"]},
                headers=headers,
            ),
            "an app",
        )
    workflow = client.post("/v1/workflows", json={"source": BENCH_WORKFLOW}, headers=headers)
    if workflow.status_code != 409:  # made by an earlier run against the same server
        _made(workflow, "a workflow")
    run = _made(
        client.post(
            "/v1/workflows/bench-greeter/runs?wait=true",
            json={"input": {"who": "bench"}},
            headers=headers,
        ),
        "a workflow run",
    )
    values = {
        "conversation": conversation["id"],
        "store": store["id"],
        "file": "/bench/notes.md",
        "app": BENCH_APP,
        "workflow": "bench-greeter",
        "run": run["id"],
    }
    return {label: label.format(**values) for label in DETAIL_PAGES}


def first_token_ms(client: httpx.Client, csrf: str, model: str) -> float:
    """Milliseconds from sending a streamed chat request to its first content token."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    started = time.perf_counter()
    with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"X-CSRF-Token": csrf}
    ) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"chat answered {response.status_code}: {response.text[:200]}")
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("the streamed reply had no content")


def measure(
    url: str,
    name: str,
    password: str,
    *,
    repeat: int,
    chats: int,
    model: str,
    say: Callable[[str], None] = print,
) -> ConsoleReport:
    report = ConsoleReport(
        repeat=repeat,
        model=model,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_average_start=os.getloadavg()[0],
    )
    with (
        httpx.Client(base_url=url, timeout=300, trust_env=False) as signed_out,
        httpx.Client(base_url=url, timeout=300, trust_env=False) as signed_in,
    ):
        csrf = sign_in(signed_in, name, password)
        paths = make_things(signed_in, csrf)
        for label in PAGES:
            say(f"page {label}")
            client = signed_out if label in SIGNED_OUT_PAGES else signed_in
            report.pages.append(page_result(client, paths.get(label, label), repeat, label))
        say(f"first streamed token x{chats}")
        first_token_ms(signed_in, csrf, model)  # the model is resident before timing
        tokens = [first_token_ms(signed_in, csrf, model) for _ in range(chats)]
    report.first_token_runs = len(tokens)
    report.first_token_p50_ms = percentile(tokens, 50)
    report.first_token_p95_ms = percentile(tokens, 95)
    report.load_average_end = os.getloadavg()[0]
    return report


def run_console_bench(
    *,
    url: str | None = None,
    name: str = BENCH_USER[0],
    password: str = BENCH_USER[1],
    repeat: int = 20,
    chats: int = 10,
    model: str = "smollm2",
    threads: int | None = None,
    say: Callable[[str], None] = print,
) -> ConsoleReport:
    """Measure against ``url``, or a fresh ``llmasos serve --auth`` started for the run."""
    if url is not None:
        return measure(url, name, password, repeat=repeat, chats=chats, model=model, say=say)
    say("starting llmasos serve --auth on a temporary home")
    with llmasos_server(threads=threads, extra_args=["--auth"]) as server:
        server.start(timeout_s=300)
        return measure(
            server.base_url, name, password, repeat=repeat, chats=chats, model=model, say=say
        )


def table(report: ConsoleReport) -> str:
    lines = [
        f"{'page':<26} {'TTFB p50 ms':>12} {'TTFB p95 ms':>12} {'HTML KB':>8} {'assets':>7} "
        f"{'first load KB':>14}  < {WEIGHT_GOAL_KB:.0f} KB",
    ]
    for page in report.pages:
        lines.append(
            f"{page.path:<26} {page.ttfb_p50_ms:>12.1f} {page.ttfb_p95_ms:>12.1f} "
            f"{page.html_kb:>8.1f} {page.assets:>7} {page.transferred_kb:>14.1f}  "
            f"{'yes' if page.within_goal else 'NO'}"
        )
    lines.append(
        f"chat: first streamed token p50 {report.first_token_p50_ms:.0f} ms, "
        f"p95 {report.first_token_p95_ms:.0f} ms ({report.first_token_runs} replies, "
        f"{report.model})"
    )
    lines.append(
        f"load average (1 min) {report.load_average_start:.1f} at the start, "
        f"{report.load_average_end:.1f} at the end, {os.cpu_count()} CPUs"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="a running server (else one is started)")
    parser.add_argument("--name", default=BENCH_USER[0], help="user to sign in as (--url)")
    parser.add_argument("--password", default=BENCH_USER[1], help="that user's password")
    parser.add_argument("--repeat", type=int, default=20, help="loads per page")
    parser.add_argument("--chats", type=int, default=10, help="streamed chat replies")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    report = run_console_bench(
        url=args.url,
        name=args.name,
        password=args.password,
        repeat=args.repeat,
        chats=args.chats,
        model=args.model,
    )
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report.to_json(), indent=2) + "\n")


if __name__ == "__main__":
    main()
