"""The memory, knowledge, files, apps, tasks, workflows and admin pages in a real browser,
against the session's real ``llmasos serve --auth`` with the embedded model (fixtures in
``conftest.py``). Each test drives what a person does and asserts on what the system
guarantees (statuses, versions, the API's own records), never on the tiny model's words.
Screenshots of each page go through `shot`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmasos.bench.console import ADMIN_SECTIONS, AREAS
from tests.webui.conftest import USER, Console, new_context, shot, shot_dir, signed_in_client

WAIT_S = 120.0
TRANSLATOR = Path(__file__).resolve().parents[2] / "src/llmasos/userland/apps/translator"


@pytest.fixture(scope="module")
def user_api(console: Console, user_context: Any) -> Iterator[tuple[httpx.Client, str]]:
    client, token = signed_in_client(console, *USER)
    yield client, token
    client.close()


def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy (the API's state, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_memory_edit_and_forget(user_page: Any, user_api: tuple[httpx.Client, str]) -> None:
    page = user_page
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/memory")
    page.get_by_label("What to remember").first.fill("My favourite tea is green tea")
    page.get_by_role("button", name="Remember").click()
    item = page.locator("[data-memory]").filter(has_text="green tea")
    item.wait_for()
    memory_id = item.get_attribute("data-memory")
    item.locator("textarea").fill("My favourite tea is black tea")
    item.get_by_role("button", name="Save").click()
    page.locator("[data-memory] textarea").filter(has_text="black tea").wait_for()
    client, _ = user_api
    assert client.get(f"/v1/memories/{memory_id}").json()["text"] == "My favourite tea is black tea"
    shot(page, "memory")
    page.locator(f'[data-memory="{memory_id}"]').get_by_role("button", name="Forget").click()
    page.locator(f'[data-memory="{memory_id}"]').wait_for(state="detached")
    assert client.get(f"/v1/memories/{memory_id}").status_code == 404


def test_knowledge_upload_shows_progress_then_a_search_hit(user_page: Any) -> None:
    page = user_page
    page.goto("/knowledge")
    page.get_by_label("Name").fill("handbook")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r".*/knowledge/vs_\w+$"))
    text = "\n\n".join(
        f"## Section {n}\n\nThe lighthouse keeper logs the weather at dawn, entry {n}."
        for n in range(12)
    )
    page.get_by_label("txt, md, html, pdf or docx").set_input_files(
        {"name": "keeper.md", "mimeType": "text/markdown", "buffer": text.encode()}
    )
    page.get_by_role("button", name="Upload and index").click()
    row = page.locator('[data-file="keeper.md"]')
    row.wait_for()
    assert row.locator("progress").count() == 1  # progress shown while it runs
    page.locator('[data-file="keeper.md"][data-file-status="completed"]').wait_for()
    done = row.locator("[data-progress]").inner_text()
    chunks_done, chunks_total = map(int, re.findall(r"\d+", done)[:2])
    assert chunks_done == chunks_total > 0
    page.get_by_placeholder("A question or some words").fill("who records the weather")
    page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator("[data-result]").first
    first.wait_for()
    assert "keeper.md" in first.inner_text()
    assert float(first.locator("[data-score]").inner_text()) > 0
    shot(page, "knowledge")
    first.get_by_role("link", name="open the chunk").click()
    chunk = page.locator("[data-chunk]").first
    chunk.wait_for()
    chunk.locator("textarea").fill("The keeper also feeds the cat.")
    chunk.get_by_role("button", name="Save the chunk").click()
    page.locator("[data-chunk] textarea").filter(has_text="feeds the cat").wait_for()
    assert page.locator("[data-chunk]").first.get_by_text("edited").count() == 1


def test_files_history_and_rollback(user_page: Any, user_api: tuple[httpx.Client, str]) -> None:
    client, token = user_api
    for body in (b"# Budget\n\nMore books.\n", b"# Budget\n\nMore travel.\n"):
        put = client.put(
            "/v1/fs/files/plans/budget.md", content=body, headers={"X-CSRF-Token": token}
        )
        assert put.status_code == 201, put.text
    page = user_page
    page.goto("/files?path=/plans")
    page.get_by_role("link", name="budget.md").click()
    page.locator('[data-version="2"]').wait_for()
    assert "More travel" in page.locator("[data-content]").inner_text()
    page.locator('[data-version="1"]').get_by_role("link", name="compare with now").click()
    page.locator("pre.diff").wait_for()
    shot(page, "files")
    page.locator('[data-version="1"]').get_by_role("button", name="Restore v1").click()
    page.locator('[data-version="3"]').wait_for()
    assert "More books" in page.locator("[data-content]").inner_text()
    history = client.get("/v1/fs/history/plans/budget.md").json()["data"]
    assert history[0]["version"] == 3 and history[0]["restored_from"] == 1


def test_install_and_open_a_builtin_app_after_its_permission_review(
    admin_page: Any, admin_api: tuple[httpx.Client, str]
) -> None:
    page = admin_page
    page.goto("/app-store")
    page.get_by_role("button", name="Install summarizer").click()
    review = page.locator('[data-review="summarizer"]')
    review.wait_for()
    assert "call services.summarize" in review.locator("[data-permissions]").inner_text()
    shot(page, "apps-review")
    client, token = admin_api
    installed = {app["name"] for app in client.get("/v1/apps").json()["data"]}
    assert "summarizer" not in installed  # the review installed nothing
    page.get_by_role("button", name="Install with these permissions").click()
    row = page.locator('[data-app="summarizer"]')
    row.wait_for()
    assert row.get_attribute("data-state") == "stopped"
    try:
        row.get_by_role("button", name="Start").click()
        page.locator('[data-app="summarizer"][data-state="running"]').wait_for()
        shot(page, "apps")
        page.locator('[data-app="summarizer"]').get_by_role("link", name="Open").click()
        route = page.locator('[data-route="/summarize"]')
        route.wait_for()
        route.get_by_label(re.compile("^text")).fill(
            "The council met on Monday. It approved the new library. Work starts in May."
        )
        route.get_by_role("button", name="Send").click()
        result = route.locator("[data-app-result]")
        page.wait_for_function(
            "el => el.textContent && el.textContent !== '…'", arg=result.element_handle()
        )
        assert not re.match(r"^[45]\d\d ", result.inner_text()), result.inner_text()
    finally:
        client.post("/v1/apps/summarizer/stop", headers={"X-CSRF-Token": token})


def test_approving_a_task_step_lets_the_task_go_on(
    user_page: Any, user_api: tuple[httpx.Client, str]
) -> None:
    client, token = user_api
    note = client.post(
        "/v1/notes", json={"title": "old", "body": "delete me"}, headers={"X-CSRF-Token": token}
    )
    assert note.status_code in (200, 201), note.text
    page = user_page
    page.goto("/tasks")
    page.get_by_label("Instruction").fill(f"Delete the note {note.json()['id']}.")
    page.get_by_label("Tools (comma-separated; empty: all you may use)").fill("notes_delete")
    page.get_by_label("First step").select_option("required")
    page.get_by_label("At most this many steps").fill("2")
    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_url(re.compile(r".*/tasks/task_\w+$"))
    task_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.samePage = true")  # a reload would drop it: updates come in place
    page.locator('[data-task-status="waiting_approval"]').wait_for(timeout=WAIT_S * 1000)
    assert page.evaluate("window.samePage === true")
    approval = page.locator("[data-approval]")
    assert "notes_delete" in approval.inner_text()
    shot(page, "tasks")
    with page.expect_navigation():
        approval.get_by_role("button", name="Approve").click()
    page.evaluate("window.samePage = true")

    def decided() -> dict[str, Any] | None:
        task = client.get(f"/v1/tasks/{task_id}").json()
        return task if task["status"] not in ("queued", "running", "waiting_approval") else None

    until(decided, "the task to finish after the approval")
    first = client.get(f"/v1/tasks/{task_id}/steps").json()["data"][0]
    assert first["tool"] == "notes_delete"
    assert first["status"] in ("completed", "failed")  # it ran: approved, not stuck waiting
    # the open page followed the task's event stream to its end, then closed it ("off": the
    # task had ended before the page loaded)
    page.locator('#live[data-stream="closed"], #live[data-stream="off"]').wait_for()
    final = client.get(f"/v1/tasks/{task_id}").json()["status"]
    page.locator(f'[data-task-status="{final}"]').wait_for()
    assert page.locator('[data-step="1"]').get_attribute("data-step-status") == first["status"]
    assert page.evaluate("window.samePage === true")


def test_run_a_workflow_from_its_form_and_read_the_trace(
    user_page: Any, user_api: tuple[httpx.Client, str]
) -> None:
    client, token = user_api
    source = (
        "name: greeter\n"
        "inputs: {who: string, times: {type: integer, default: 2}}\n"
        "nodes:\n"
        '  greet: {type: transform, template: "Hello {{ inputs.who }}!"}\n'
        '  shout: {type: transform, expression: "nodes.greet.output | upper"}\n'
        'outputs: {text: "{{ nodes.shout.output }}"}\n'
    )
    made = client.post("/v1/workflows", json={"source": source}, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    page = user_page
    page.goto("/workflows")
    page.get_by_role("link", name="greeter").click()
    page.get_by_label(re.compile("^who")).fill("Ada")
    assert page.get_by_label(re.compile("^times")).get_attribute("type") == "number"
    page.get_by_role("button", name="Start the run").click()
    page.locator('[data-run-status="succeeded"]').wait_for()
    for node in ("greet", "shout"):
        row = page.locator(f'[data-node="{node}"]')
        assert row.get_attribute("data-node-status") == "succeeded"
        assert re.match(r"^\d+\.\d{3} s$", row.locator("[data-duration]").inner_text())
    assert "HELLO ADA!" in page.locator("[data-run-output]").inner_text()
    shot(page, "workflows")


def test_a_non_admin_gets_403_on_admin_pages(user_page: Any) -> None:
    for path in ("/administration", "/administration/usage", "/administration/scheduler"):
        response = user_page.goto(path)
        assert response.status == 403, path
        assert "administrator" in user_page.locator("main").inner_text()
    assert user_page.get_by_role("link", name="Admin").count() == 0


def test_admin_pages_and_a_quota_the_user_then_hits(
    admin_page: Any, user_page: Any, admin_api: tuple[httpx.Client, str]
) -> None:
    page = admin_page
    for section in ("usage", "audit"):
        page.goto(f"/administration/{section}")
        shot(page, f"admin-{section}")
    page.goto("/administration/usage")
    assert page.locator('[data-chart="user"] rect').count() >= 1  # earlier tests used tokens
    page.goto("/administration/quotas?user=bob")
    form = page.locator("[data-quota-form]")
    form.get_by_label("Requests per minute").fill("0")
    form.get_by_role("button", name="Save").click()
    page.wait_for_url("**/administration/quotas?user=bob")
    shot(page, "admin")
    client, token = admin_api
    try:
        limits = client.get("/admin/quotas/bob").json()["data"]
        assert any(q["requests_per_minute"] == 0 and q["key_id"] is None for q in limits)
        user_page.goto("/chat")
        user_page.get_by_label("Message", exact=True).fill("Hello")
        user_page.get_by_role("button", name="Send").click()
        error = user_page.locator("#chat-error")
        error.wait_for()
        message = error.text_content() or ""
        assert message.startswith("Limit reached:") and "minute" in message, message
    finally:
        client.put("/admin/quotas/bob", json={}, headers={"X-CSRF-Token": token})


AUDITED = (
    *AREAS,
    *(f"/administration/{section}" for section in ADMIN_SECTIONS),
)
BLOCKING = ("serious", "critical")


def axe_counts(page: Any, axe: Any) -> tuple[dict[str, int], list[str]]:
    """axe-core's violations on ``page``: nodes per impact, and one line per rule."""
    violations = axe.run(page).response["violations"]
    counts = dict.fromkeys(("critical", "serious", "moderate", "minor"), 0)
    lines = []
    for violation in violations:
        counts[violation["impact"]] += len(violation["nodes"])
        targets = ", ".join(str(n["target"]) for n in violation["nodes"][:3])
        lines.append(f"{violation['id']} ({violation['impact']}): {targets}")
    return counts, lines


def test_every_page_passes_axe_core(
    browser: Any,
    console: Console,
    admin_page: Any,
    user_page: Any,
    admin_api: tuple[httpx.Client, str],
    user_api: tuple[httpx.Client, str],
) -> None:
    """axe-core (the engine behind Lighthouse's accessibility score; offline, bundled by
    axe-playwright-python) over every page in this session's one Chromium: the sign-in page
    signed out, every area and admin section signed in as the admin, and the detail pages
    (a store, a file, an app as the admin; the user's task, workflow and run from the tests
    above): no serious or critical violation."""
    axe_module = pytest.importorskip("axe_playwright_python.sync_playwright", reason="dev extra")
    axe = axe_module.Axe()
    client, token = admin_api
    store = client.post(
        "/v1/vector_stores", json={"name": "audit"}, headers={"X-CSRF-Token": token}
    )
    put = client.put("/v1/fs/files/audit.md", content=b"# Audit\n", headers={"X-CSRF-Token": token})
    assert store.status_code in (200, 201) and put.status_code == 201, (store.text, put.text)
    as_admin = [*AUDITED, f"/knowledge/{store.json()['id']}", "/files/file?path=/audit.md"]
    as_admin += [f"/app-store/{app['name']}" for app in client.get("/v1/apps").json()["data"][:1]]
    chats = client.get("/v1/conversations").json()["data"]  # test_chat.py's, when it ran
    as_admin += [f"/chat/{chat['id']}" for chat in chats[:1]]
    user = user_api[0]
    as_user = [f"/tasks/{task['id']}" for task in user.get("/v1/tasks").json()["data"][:1]]
    for flow in user.get("/v1/workflows").json()["data"]:
        as_user.append(f"/workflows/{flow['name']}")
        runs = user.get(f"/v1/workflows/{flow['name']}/runs").json()["data"]
        as_user += [f"/workflows/runs/{run['id']}" for run in runs[:1]]
    results: dict[str, dict[str, Any]] = {}

    def audit(page: Any, path: str) -> None:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        counts, lines = axe_counts(page, axe)
        results[path] = {"counts": counts, "rules": lines}

    signed_out = new_context(browser, console, locale="en-US")
    try:
        audit(signed_out.new_page(), "/sign-in")
    finally:
        signed_out.close()
    for path in as_admin:
        audit(admin_page, path)
    for path in as_user:
        audit(user_page, path)
    (shot_dir() / "console-axe.json").write_text(json.dumps(results, indent=1))
    assert len(results) == 1 + len(as_admin) + len(as_user) > len(AUDITED)
    blocking = {
        path: result["rules"]
        for path, result in results.items()
        if any(result["counts"][impact] for impact in BLOCKING)
    }
    assert not blocking, json.dumps(blocking, indent=1)


def test_the_scheduler_view_follows_a_running_request(
    admin_page: Any, console: Console, user_context: Any
) -> None:
    """The admin's scheduler page, left open, shows the user's streamed request while it
    runs (running 1, the user's tenant row, tokens/s) and drops it when the client goes away,
    by its own polling of ``/metrics`` (no reload)."""
    page = admin_page
    page.goto("/administration/scheduler")
    page.evaluate("window.samePage = true")
    page.locator("[data-running]").filter(has_text=re.compile("^0$")).wait_for()
    client, token = signed_in_client(console, *USER)
    started, stop = threading.Event(), threading.Event()

    def stream() -> None:
        body = {
            "model": "smollm2",
            "stream": True,
            "max_tokens": 1000,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Count from one to a thousand."}],
        }
        with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"X-CSRF-Token": token}
        ) as response:
            for _ in response.iter_lines():
                started.set()
                if stop.is_set():
                    break  # closing the stream cancels the request in the kernel

    worker = threading.Thread(target=stream)
    worker.start()
    try:
        assert started.wait(WAIT_S), "the streamed request never started"
        bob = page.locator(f'[data-tenant="{USER[0]}"]')
        page.locator("[data-running]").filter(has_text=re.compile("^1$")).wait_for()
        bob.locator("[data-tenant-running]").filter(has_text=re.compile("^1$")).wait_for()
        page.wait_for_function(  # a rate, once two refreshes saw the counter move
            "() => { const c = document.querySelector('[data-tenant=bob] [data-rate]');"
            " return c && parseFloat(c.textContent) > 0; }"
        )
        shot(page, "admin-scheduler")
    finally:
        stop.set()
        worker.join()
        client.close()
    page.locator("[data-running]").filter(has_text=re.compile("^0$")).wait_for()
    assert page.evaluate("window.samePage === true")


@pytest.fixture
def app_index(tmp_path: Path) -> Iterator[str]:
    """An app index on loopback HTTP (``index.json`` listing the built-in translator packed
    as an archive, with its digest), as a publisher would serve one; yields its URL."""
    archive = tmp_path / "translator-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(
            TRANSLATOR,
            arcname="translator",
            filter=lambda info: None if "__pycache__" in info.name else info,
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    entry = {"name": "translator", "version": "1.0.0", "url": archive.name, "sha256": digest}
    (tmp_path / "index.json").write_text(json.dumps({"apps": [entry]}))
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/index.json"
        finally:
            server.shutdown()
            thread.join()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_install_from_an_index_after_its_permission_review(
    admin_page: Any, admin_api: tuple[httpx.Client, str], app_index: str
) -> None:
    page = admin_page
    page.goto("/app-store")
    form = page.locator("form").filter(has=page.get_by_label("Index URL"))
    form.get_by_label("Index URL").fill(app_index)
    form.get_by_label("App name (NAME or NAME@VERSION)").fill("translator")
    form.get_by_role("button", name="Review permissions").click()
    review = page.locator('[data-review="translator"]')
    review.wait_for()
    assert "call services.translate" in review.locator("[data-permissions]").inner_text()
    client, token = admin_api
    assert "translator" not in {a["name"] for a in client.get("/v1/apps").json()["data"]}
    page.get_by_role("button", name="Install with these permissions").click()
    page.locator('[data-app="translator"]').wait_for()
    try:
        installed = client.get("/v1/apps/translator").json()
        assert installed["version"] == "1.0.0"
        assert installed["source"].startswith(app_index.removesuffix("index.json"))
    finally:
        client.delete("/v1/apps/translator", headers={"X-CSRF-Token": token})
