"""The web playground in a real browser: Debian's chromium driven by Playwright.

Set DRAGOMAN_REQUIRE_BROWSER=1 (CI does) to make a missing browser a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _unavailable(reason: str) -> None:
    if os.environ.get("DRAGOMAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser required but unavailable: {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _unavailable("no chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def _open(browser: Any, server: ServerThread, locale: str = "en-US") -> Any:
    context = browser.new_context(locale=locale, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/")
    page.wait_for_function("document.getElementById('target').options.length > 5")
    return page


def test_translation_arrives_live_then_stop_and_history(
    browser: Any, make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server()
    page = _open(browser, server)
    assert page.input_value("#target") == "en"  # the browser's language
    page.fill("#script", "browser-1")
    page.select_option("#target", "ko")
    page.fill("#text", "[[slow:browser-live:8:0.15]]")
    page.get_by_role("button", name="Translate", exact=True).click()
    seen: list[str] = []
    page.wait_for_function("document.getElementById('output').textContent.length > 0")
    deadline = time.monotonic() + 20
    while page.is_disabled("#translate") and time.monotonic() < deadline:
        text = page.text_content("#output") or ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.03)
    assert page.text_content("#output") == "".join(f"p{i} " for i in range(8))
    assert len(seen) >= 3, seen  # it grew piece by piece
    assert page.text_content("#provider") == "openai"
    assert page.text_content("#model") == "fake-model"
    assert "ms" in (page.text_content("#ttft") or "")

    # A slow one, stopped: the upstream connection closes and the record ends cancelled.
    page.fill("#text", "[[slow:browser-stop:500:0.05]]")
    page.focus("#text")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("document.getElementById('output').textContent.length > 0")
    page.get_by_role("button", name="Stop", exact=True).click()
    assert fake.closed_event("browser-stop").wait(5)
    page.wait_for_function("document.getElementById('message').textContent === 'Stopped.'")

    page.wait_for_function("document.querySelectorAll('#history li').length === 2")
    history = page.text_content("#history") or ""
    assert "cancelled" in history and "succeeded" in history
    records = httpx.get(f"{server.url}/v1/translations", params={"script_id": "browser-1"}).json()
    assert [r["status"] for r in records["items"]] == ["cancelled", "succeeded"]
    # Stopped by a cancel request, not by dropping the connection.
    assert records["items"][0]["error"]["code"] == "cancelled"
    if os.environ.get("DRAGOMAN_SCREENSHOT"):
        page.screenshot(path=os.environ["DRAGOMAN_SCREENSHOT"], full_page=True)


def test_errors_are_shown_and_language_preselected(
    browser: Any, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server()
    page = _open(browser, server, locale="ko-KR")
    assert page.input_value("#target") == "ko"
    page.get_by_role("button", name="Translate", exact=True).click()  # nothing typed
    assert page.text_content("#message") == "Type a text to translate."
    page.fill("#text", "x [[error:429]]")
    page.get_by_role("button", name="Translate", exact=True).click()
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('rate limited')"
    )
    page.fill("#text", "a b c [[drop:2]]")
    page.get_by_role("button", name="Translate", exact=True).click()
    page.wait_for_function("document.getElementById('message').textContent.includes('broke off')")
    assert page.text_content("#output") == "T:a"


def test_asks_for_a_key_when_the_server_needs_one_and_keeps_it(
    browser: Any, make_server: Callable[..., ServerThread], db_url: str
) -> None:
    from tests.test_keys import create_key

    server = make_server(auth="keys")
    key_id, secret = create_key(db_url)
    page = _open(browser, server)  # the languages are public: the page loads
    page.wait_for_selector("#key-box", state="visible")  # the history needed a key
    page.fill("#key", secret)
    page.get_by_role("button", name="Use this key", exact=True).click()
    page.wait_for_selector("#key-box", state="hidden")
    page.fill("#script", "browser-key")
    page.fill("#text", "Hello")
    page.get_by_role("button", name="Translate", exact=True).click()
    page.wait_for_function("document.querySelectorAll('#history li').length === 1")
    assert page.evaluate("localStorage.getItem('dragoman.key')") == secret
    records = httpx.get(
        f"{server.url}/v1/translations",
        params={"script_id": "browser-key"},
        headers={"Authorization": f"Bearer {secret}"},
    ).json()
    assert [r["key_id"] for r in records["items"]] == [key_id]

    page.reload()  # kept in the browser: no question this time
    page.wait_for_function("document.querySelectorAll('#history li').length === 1")
    assert page.is_hidden("#key-box")


def test_script_mode_streams_segments_with_context_and_edits_the_glossary(
    browser: Any, make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server()
    page = _open(browser, server)
    page.fill("#script", "browser-script")
    page.select_option("#target", "ko")
    page.get_by_label("Script (segments with context)").check()
    page.wait_for_selector("#script-box", state="visible")

    page.fill("#glossary", "dragoman = 통역사\nno separator here\n")
    page.get_by_role("button", name="Save glossary", exact=True).click()
    page.wait_for_function("document.querySelectorAll('#glossary-list li').length === 1")
    glossary = httpx.get(f"{server.url}/v1/scripts/browser-script/glossary").json()
    assert glossary["entries"] == [{"source": "dragoman", "target": "통역사", "target_lang": "ko"}]

    page.fill("#text", "[[slow:browser-segment:6:0.15]]")
    page.get_by_role("button", name="Translate segment", exact=True).click()
    page.wait_for_function("document.querySelectorAll('#segments li').length === 1")
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while page.is_disabled("#translate") and time.monotonic() < deadline:
        text = page.text_content("#segments li .translation") or ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.03)
    assert len(seen) >= 3, seen  # the segment's translation grew in the list
    assert page.input_value("#text") == ""  # ready for the next segment

    page.fill("#text", "The dragoman speaks.")
    page.get_by_role("button", name="Translate segment", exact=True).click()
    page.wait_for_function(
        "document.querySelectorAll('#segments li').length === 2"
        " && document.getElementById('segments').textContent.includes('glossary missed: dragoman')"
        " && !document.getElementById('translate').disabled"
    )
    translations = page.eval_on_selector_all(
        "#segments li .translation", "items => items.map(i => i.textContent)"
    )
    assert translations == ["".join(f"p{i} " for i in range(6)), "T:The dragoman speaks."]
    request = next(
        r for r in fake.requests if "The dragoman speaks." in r["messages"][-1]["content"]
    )
    assert request["messages"][2]["content"] == translations[0]  # the first as context
    assert "- dragoman → 통역사" in request["messages"][0]["content"]

    page.reload()  # the segments come back from the server
    page.wait_for_function("document.getElementById('target').options.length > 5")
    page.select_option("#target", "ko")
    page.get_by_label("Script (segments with context)").check()
    page.wait_for_function("document.querySelectorAll('#segments li').length === 2")
    page.wait_for_function("document.getElementById('glossary').value === 'dragoman = 통역사'")
