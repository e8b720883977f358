"""Debian's chromium driven by Playwright (headless), signed in to a running api-server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from scheduler import API_USER, AirflowStack

from support.tools import require_tool

#: Chromium as root in a sandbox without a network: the flags of the machine notes.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@contextlib.contextmanager
def signed_in_tab(stack: AirflowStack) -> Iterator[Any]:
    """A 1280x900 browser tab signed in to ``stack``'s api-server as its admin user."""
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(30_000)
            tab.goto(stack.api_url + "/")
            tab.get_by_label("Username").fill(API_USER)
            tab.get_by_label("Password").fill(stack.api_password)
            tab.get_by_role("button", name="Sign in").click()
            tab.wait_for_url(lambda url: "/auth/login" not in url)
            yield tab
        finally:
            browser.close()
