"""Browser tests of the web console: one real ``llmasos serve --auth`` with the embedded model
and one headless Chromium (Debian's, driven by Playwright's sync API) for the whole session.

The first run happens once, through the browser (`first_run`): the server starts with no
user, ``/`` leads to the first-run page, and the admin it creates is the session's admin.
`admin_page` is a page signed in as that admin, `user_page` one signed in as a plain user
the admin created through the API. `shot(page, name)` saves a screenshot: into
``docs/images/console-NAME.png`` when ``LLMASOS_CONSOLE_SHOTS=1`` (how the README's images are
made), else under the session's temporary directory. Browser tests skip, saying why, only when
``/usr/bin/chromium`` is absent (``make setup`` installs it); the server starts after the
browser, so a skip costs no model load.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import llmasos_serve

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("ada", "console-admin-pass")
USER = ("bob", "console-user-pass")
TIMEOUT_MS = 60_000
"""Playwright's wait for an element or a navigation: generous, for a loaded 2-core machine."""


@dataclass
class Console:
    """The server under test."""

    url: str
    home: Path


@dataclass
class FirstRun:
    """What the first visit showed: where ``/`` led, and where the setup form ended."""

    first_path: str
    after_setup_path: str
    signed_in_as: str


def shot_dir() -> Path:
    """Where screenshots (and the accessibility audit's report) go: see the module docstring."""
    folder = (
        ROOT / "docs" / "images"
        if os.environ.get("LLMASOS_CONSOLE_SHOTS") == "1"
        else Path(os.environ.get("LLMASOS_CONSOLE_SHOT_DIR", "/tmp/llmasos-console-shots"))
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as ``console-NAME.png`` (see the module docstring)."""
    path = shot_dir() / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


@pytest.fixture(scope="package")
def console(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    home = tmp_path_factory.mktemp("console-home")
    with llmasos_serve(home, "--auth", timeout=240) as url:
        yield Console(url, home)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "the console's browser tests need Chromium at /usr/bin/chromium "
            "(`apt-get install chromium`, which `make setup` does)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright: the dev extra")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield launched
        launched.close()


def new_context(browser: Any, console: Console, **options: Any) -> Any:
    context = browser.new_context(
        base_url=console.url, viewport={"width": 1280, "height": 820}, **options
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture(scope="package")
def first_run(browser: Any, console: Console) -> Iterator[tuple[FirstRun, Any]]:
    """The server's first visit, through the browser: it creates the admin. Yields what it
    saw and the admin's signed-in context."""
    context = new_context(browser, console, locale="en-US")
    page = context.new_page()
    page.goto("/")
    first_path = page.url.removeprefix(console.url)
    shot(page, "first-run")
    page.get_by_label("Administrator's user name").fill(ADMIN[0])
    page.get_by_label("Password", exact=True).fill(ADMIN[1])
    page.get_by_label("Password again").fill(ADMIN[1])
    page.get_by_role("button", name="Create the administrator and sign in").click()
    page.wait_for_url("**/chat")
    seen = FirstRun(
        first_path=first_path,
        after_setup_path=page.url.removeprefix(console.url),
        signed_in_as=page.locator("[data-user]").get_attribute("data-user") or "",
    )
    page.close()
    yield seen, context
    context.close()


@pytest.fixture(scope="package")
def admin_context(first_run: tuple[FirstRun, Any]) -> Any:
    return first_run[1]


@pytest.fixture
def admin_page(admin_context: Any) -> Iterator[Any]:
    page = admin_context.new_page()
    yield page
    page.close()


def signed_in_client(console: Console, name: str, password: str) -> tuple[httpx.Client, str]:
    """An HTTP client holding ``name``'s console session, and its CSRF token."""
    client = httpx.Client(base_url=console.url, timeout=60)
    response = client.post("/auth/sign-in", json={"name": name, "password": password})
    response.raise_for_status()
    return client, str(response.json()["csrf_token"])


@pytest.fixture(scope="package")
def admin_api(console: Console, admin_context: Any) -> Iterator[tuple[httpx.Client, str]]:
    client, token = signed_in_client(console, *ADMIN)
    yield client, token
    client.close()


@pytest.fixture(scope="package")
def user_context(
    browser: Any, console: Console, admin_api: tuple[httpx.Client, str]
) -> Iterator[Any]:
    """A plain user (role ``user``), created by the admin, signed in through the page."""
    client, token = admin_api
    created = client.post(
        "/admin/users",
        json={"name": USER[0], "password": USER[1], "role": "user"},
        headers={"X-CSRF-Token": token},
    )
    assert created.status_code == 201, created.text
    context = new_context(browser, console, locale="en-US")
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("User name").fill(USER[0])
    page.get_by_label("Password").fill(USER[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/chat")
    page.close()
    yield context
    context.close()


@pytest.fixture
def user_page(user_context: Any) -> Iterator[Any]:
    page = user_context.new_page()
    yield page
    page.close()
