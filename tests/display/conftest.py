"""Browser fixture: Playwright driving Debian's chromium, skipped cleanly where either is absent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.display._helpers import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def browser() -> Iterator:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser) -> Iterator:
    """A fresh browser profile (no cookies) for one test, closed after it."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context
    context.close()
