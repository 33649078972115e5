"""Debian's chromium driven by Playwright, for the tests of the web pages.

Set DRAGOMAN_REQUIRE_BROWSER=1 (CI does) to make a missing browser a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


def _unavailable(reason: str) -> None:
    if os.environ.get("DRAGOMAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser required but unavailable: {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


def launched_browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _unavailable("no chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
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
        yield browser
        browser.close()
