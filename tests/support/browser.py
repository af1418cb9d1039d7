"""Debian's Chromium, driven by Playwright, for the console's browser tests. Never a downloaded browser:
the machine reaches no browser download site, and CI installs the `chromium` package (.ci/run).

The flags are those a closed network needs: without the background-networking ones Chromium opens
connections to Google's services at start, which this machine refuses, many at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium") or CHROMIUM
    async with async_playwright() as p:
        # Playwright gives each launch a fresh, empty profile of its own: no cookie or cache from another run.
        browser = await p.chromium.launch(executable_path=executable, args=FLAGS, timeout=60_000)
        try:
            yield browser
        finally:
            await browser.close()


async def log_in(page: Page, base: str, token: str) -> int:
    """Log in on the console at `base` (".../console") through its form; the status of the page it leads to."""
    await page.goto(f"{base}/login")
    await page.fill("#token", token)
    async with page.expect_navigation() as navigation:
        await page.click("button[type=submit]")
    response = await navigation.value
    assert response is not None
    return response.status
