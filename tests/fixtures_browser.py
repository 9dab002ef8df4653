"""The app served by ``streamlit run`` on a free loopback port, and Debian's Chromium driven by Playwright.

``serve_app(folder, **env)`` starts the app with extra ``RAG_*`` settings and stops its whole process group
afterwards; the ``page`` fixture is a fresh headless browser page (``page.context.browser.new_page()`` opens a
second tab); ``settled(page)`` waits for a script run to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fixtures_llm import free_port, stop_process_group

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


@contextmanager
def serve_app(folder: Path, **env: str) -> Iterator[str]:
    """``streamlit run app.py`` with ``RAG_INDEX_DIR`` in ``folder`` (unless given) and ``env``; yields its URL."""
    port = free_port()
    settings = {**os.environ, "RAG_INDEX_DIR": str(folder / "index"), "RAG_LLM": "embedded",
                "PYTHONPATH": str(ROOT), **env}
    log_path = folder / "streamlit.log"
    log = open(log_path, "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=settings, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start:\n" + log_path.read_text()[-3000:])
        yield url
    finally:
        stop_process_group(server)
        log.close()


def settled(page) -> None:  # noqa: ANN001 - a Playwright Page
    """Wait until the page's script run is over: no running indicator and no stale (skeleton) elements, so a click
    is not lost to a redraw."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    page.locator('[data-testid="stSkeleton"]').first.wait_for(state="detached")


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


# Every label a status line or a sources panel of the chat shows, in the order they first appear, into
# window.seenLabels: the status line changes several times a second while an answer is written, so the page records
# them as they come.
RECORD_LABELS = """() => {
    window.seenLabels = [];
    const look = () => document.querySelectorAll('[data-testid="stChatMessage"] summary').forEach(s => {
        const text = (s.querySelector('[data-testid="stMarkdownContainer"]') || s).innerText.trim();
        if (text && !window.seenLabels.includes(text)) window.seenLabels.push(text);
    });
    new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
