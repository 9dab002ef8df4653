"""Take the README's screenshot: ask the running app one of its suggested questions and open the first source.

    make run &    # or any running instance
    .venv/bin/python scripts/screenshot.py [URL] [QUESTION] [OUT.png]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8501"
QUESTION = sys.argv[2] if len(sys.argv) > 2 else "Who was the first keeper of the Cape Merrow lighthouse?"
OUT = Path(sys.argv[3] if len(sys.argv) > 3 else Path(__file__).resolve().parent.parent / "docs" / "screenshot.png")

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(180_000)
    page.goto(URL)
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill(QUESTION)
    box.press("Enter")
    page.get_by_text("Answered in").first.wait_for()  # the status line once the answer is complete
    first = page.locator('[data-testid="stExpander"]').filter(has_text="[1]").first  # the first source
    first.locator("summary").click()
    time.sleep(1.0)
    page.screenshot(path=str(OUT))
    browser.close()
print(OUT)
