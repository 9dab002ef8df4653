"""Two browser sessions at once on one app: one asks a question while the other uploads a file.

Both must finish: the answer streams with its source while the other session's file is ingested, neither session
shows an error, and afterwards both see the new document. (The app serves every tab from one process: one index,
one embedded model; generation runs in its own thread, so a session that is reading an answer never holds the
model or the index for the other.) SmolLM2 answers here: the test is about the sessions, not the answer.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import XQUAD_DOCS, build_index
from tests.fixtures_browser import ARTIFACTS, serve_app
from tests.pdfs import make_pdf

pytestmark = pytest.mark.browser


@pytest.fixture
def shared_app(tmp_path: Path, embedder) -> Iterator[str]:
    (tmp_path / "docs").mkdir()
    shutil.copy(XQUAD_DOCS / "Nikola_Tesla.md", tmp_path / "docs")
    assert not build_index(tmp_path / "docs", tmp_path / "index", embedder).failed
    with serve_app(tmp_path, RAG_EMBEDDED_MODEL="smollm2-135m") as url:
        yield url


def test_one_session_asks_while_another_uploads(shared_app: str, page, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "harbour-report.pdf", [
        "Harbour report. The harbour of Elling handled 4,200 tonnes of cargo in 1871.",
        "The harbour master of Elling in 1871 was Ingrid Falk.",
    ])
    asking, uploading = page, page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    uploading.set_default_timeout(120_000)
    for tab in (asking, uploading):
        tab.goto(shared_app)
        tab.locator('[data-testid="stSidebar"]').get_by_text("Nikola_Tesla.md", exact=True).wait_for()

    box = asking.locator('[data-testid="stChatInputTextArea"]')
    box.fill("When did Nikola Tesla die?")
    box.press("Enter")
    uploading.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(pdf))

    asking.get_by_text("[1] Nikola_Tesla.md").first.wait_for(timeout=300_000)
    uploading.locator('[data-testid="stSidebar"]').get_by_text("harbour-report.pdf", exact=True).wait_for()
    asking.screenshot(path=str(ARTIFACTS / "browser-sessions-asking.png"), full_page=True)
    uploading.screenshot(path=str(ARTIFACTS / "browser-sessions-uploading.png"), full_page=True)
    for tab in (asking, uploading):
        assert tab.locator('[data-testid="stException"]').count() == 0, "no traceback in either session"
        assert tab.locator('[data-testid="stAlertContentError"]').count() == 0, "no error in either session"

    asking.reload()  # the asking session sees the other's document too
    asking.locator('[data-testid="stSidebar"]').get_by_text("harbour-report.pdf", exact=True).wait_for()
    box = asking.locator('[data-testid="stChatInputTextArea"]')
    box.fill("Who was the harbour master of Elling in 1871?")
    box.press("Enter")
    asking.get_by_text("[1] harbour-report.pdf, page 2").first.wait_for(timeout=300_000)
    time.sleep(0.5)
    asking.screenshot(path=str(ARTIFACTS / "browser-sessions-after.png"), full_page=True)
