"""The console's frame in a real browser: first run, sign in and out with readable errors
(the rate limit included), the language switch, and what non-browser clients still get."""

from __future__ import annotations

from typing import Any

import httpx

from tests.webui.conftest import ADMIN, Console, FirstRun, new_context, shot


def test_first_run_creates_the_admin_and_cannot_be_replayed(
    first_run: tuple[FirstRun, Any], browser: Any, console: Console
) -> None:
    seen, _ = first_run
    assert seen.first_path == "/setup"
    assert seen.after_setup_path == "/chat"
    assert seen.signed_in_as == ADMIN[0]
    assert httpx.get(f"{console.url}/auth/setup").json()["needed"] is False
    context = new_context(browser, console, locale="en-US")
    page = context.new_page()
    page.goto("/setup")  # once anyone exists, the first-run page sends you to sign in
    assert page.url.endswith("/sign-in")
    context.close()


def test_sign_in_errors_rate_limit_and_sign_out(
    browser: Any, console: Console, admin_context: Any
) -> None:
    context = new_context(browser, console, locale="en-US")
    page = context.new_page()
    page.goto("/chat")
    assert "/sign-in" in page.url
    shot(page, "sign-in")
    alert = page.locator("[data-form-error]")
    page.get_by_label("User name").fill("mallory")
    for _ in range(5):
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Sign in").click()
        alert.wait_for(state="visible")
        assert "password" in (alert.text_content() or "").lower()
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("too many failed sign-ins").wait_for()  # 429, with its wait

    page.get_by_label("User name").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/chat")
    assert page.locator("[data-user]").get_attribute("data-user") == ADMIN[0]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    page.goto("/models")  # the cookie is gone: back to sign-in, then to where you were going
    assert "/sign-in?next=/models" in page.url
    context.close()


def test_language_switch_and_browser_language(
    browser: Any, console: Console, admin_context: Any
) -> None:
    context = new_context(browser, console, locale="zh-CN")
    page = context.new_page()
    page.goto("/sign-in")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.get_by_role("button", name="登录").is_visible()
    page.get_by_role("link", name="English").click()
    page.wait_for_url("**/sign-in")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("button", name="Sign in").is_visible()
    page.get_by_role("link", name="简体中文").click()
    page.get_by_role("button", name="登录").wait_for()
    context.close()


def test_clients_keep_the_api(console: Console, admin_context: Any) -> None:
    assert httpx.get(f"{console.url}/").text == "LLMasOS is running"  # Ollama's probe
    browser_root = httpx.get(f"{console.url}/", headers={"Accept": "text/html"})
    assert browser_root.status_code == 303 and browser_root.headers["location"] == "/chat"
    missing = httpx.get(f"{console.url}/v1/no-such-thing")
    assert missing.status_code in (401, 404) and "error" in missing.json()
    page = httpx.get(f"{console.url}/sign-in")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    css = next(p for p in page.text.split('"') if p.endswith("/console.css"))
    static = httpx.get(f"{console.url}{css}")
    assert static.status_code == 200
    assert "immutable" in static.headers["cache-control"]
