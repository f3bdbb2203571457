"""A real browser for the console's tests: Debian's chromium, driven by Playwright.

Playwright's own browsers come from its CDN (`playwright install`), which a bank's network
and this project's CI may not reach; the distribution's chromium comes from the package
registry like everything else (`.ci/run` installs it when missing).
"""

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
from playwright.async_api import Browser, async_playwright

# Where to find the browser: a path, or a name looked up on PATH.
CHROMIUM_SETTING: Final = "SAGABANK_CHROMIUM"
CHROMIUM_DEFAULT: Final = "chromium"
# Set by .ci/run: there a missing browser is a failure, not a skip.
BROWSER_REQUIRED_SETTING: Final = "SAGABANK_BROWSER_REQUIRED"
# The console's pages are checked at the size of a laptop screen (issue 19) and narrow.
DESKTOP_VIEWPORT: Final = {"width": 1280, "height": 800}
NARROW_VIEWPORT: Final = {"width": 390, "height": 844}
# How long a page action or expectation waits before the test fails.
PAGE_TIMEOUT_MILLISECONDS: Final = 15_000


def chromium_executable() -> str | None:
    """The chromium to drive, or None where none is installed."""
    return shutil.which(os.environ.get(CHROMIUM_SETTING, CHROMIUM_DEFAULT))


@asynccontextmanager
async def running_chromium() -> AsyncIterator[Browser]:
    """A headless chromium for the duration of the block; closed (its process ended) after.

    A newcomer without chromium gets the browser tests skipped with how to install it;
    CI (which installs it) fails instead."""
    executable = chromium_executable()
    if executable is None:
        reason = f"no chromium: `apt-get install chromium`, or set {CHROMIUM_SETTING}"
        if os.environ.get(BROWSER_REQUIRED_SETTING):
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        # Playwright starts chromium without its sandbox by default, which is what lets it
        # run as root (CI, containers); the pages it loads are the bank's own, local ones.
        browser = await playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            await browser.close()
