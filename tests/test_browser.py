"""The app in a real browser: Playwright drives Debian's Chromium against ``streamlit run`` on a free loopback port.

Upload a PDF through the page's file input, wait until it is ingested, ask a question answered on its page 2, watch
the answer stream in with a source naming the file and page 2, open that page in the PDF viewer, then delete the
file from the library. Then a Word file: upload it, ask, see its source; reload the page and find the conversation
again, open it from a second tab's list and export it as Markdown. Screenshots go to test-artifacts/ (not
committed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.documents import make_docx
from tests.fixtures_agent import SCRIPTED_MODEL, ScriptedServer
from tests.fixtures_browser import ARTIFACTS, RECORD_LABELS, serve_app, settled
from tests.pdfs import make_pdf

pytestmark = pytest.mark.browser

VAULT_SOURCE = re.compile(r"^\[1\] vault-handbook\.docx( › .+)?$")  # the file, and the heading of its passage


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    with serve_app(tmp_path, RAG_EMBEDDED_MODEL="qwen2.5-coder-1.5b") as url:  # the default model, end to end
        yield url


def test_upload_ask_read_sources_delete(app_url: str, page, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = make_pdf(tmp_path / "aurora-report.pdf", [
        "Aurora project report. Chapter one describes the team and the budget of the observatory.",
        "Chapter two. The launch code of the Aurora project is 7429. The rocket lifted off from Kiruna in March.",
        "Chapter three. The team thanks the people of the village for their patience.",
    ])
    page.goto(app_url)
    page.get_by_text("Ask your documents").first.wait_for()
    page.get_by_text("Your library is empty").wait_for()

    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('input[type="file"]').set_input_files(str(pdf))
    sidebar.get_by_text("aurora-report.pdf", exact=True).wait_for()
    sidebar.get_by_text("3 pages").wait_for()
    page.screenshot(path=str(ARTIFACTS / "browser-1-uploaded.png"), full_page=True)

    other_tab = page.context.browser.new_page()  # a second browser tab shares the library
    other_tab.goto(app_url)
    other_tab.locator('[data-testid="stSidebar"]').get_by_text("1 document(s), 3 passages").wait_for()

    page.evaluate(RECORD_LABELS)
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill("What is the launch code of the Aurora project?")
    box.press("Enter")

    answer = page.locator('[data-testid="stChatMessage"]').last
    settings_sections = sidebar.locator('[data-testid="stExpander"]', has_text="Model and search settings")
    seen: list[str] = []
    most_sections = 0
    deadline = time.monotonic() + 300  # the 1.5B model on two shared cores: load, prompt, answer
    while time.monotonic() < deadline:  # watch the text grow while the model writes
        text = answer.inner_text() if page.locator('[data-testid="stChatMessage"]').count() >= 2 else ""
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        most_sections = max(most_sections, settings_sections.count())
        if page.get_by_text("[1] aurora-report.pdf, page 2").count():
            break
        time.sleep(0.05)
    page.screenshot(path=str(ARTIFACTS / "browser-2-answered.png"), full_page=True)
    assert page.get_by_text("[1] aurora-report.pdf, page 2").count() == 1, "the first source is the file's page 2"
    assert len(seen) >= 3, f"the answer arrived in pieces, not at once: {seen}"
    # the upload's note leaves the sidebar on this run: what follows it must not shift and leave a greyed copy
    assert most_sections == 1, "one settings section while the answer is written, not a stale second one"
    assert page.get_by_text("Not found in your documents").count() == 0
    answer.locator("summary").get_by_text(re.compile(r"^Answered in \d+\.\d s$")).wait_for(timeout=60_000)
    labels = page.evaluate("window.seenLabels")
    checking = [i for i, label in enumerate(labels) if label == "Checking the answer against your sources…"]
    answered = [i for i, label in enumerate(labels) if label.startswith("Answered in")]
    assert checking and answered and checking[0] < answered[0], (
        f"the default model is asked again to check its answer, and the status line says so first: {labels}")

    page.get_by_text("[1] aurora-report.pdf, page 2").click()
    source = page.locator('[data-testid="stExpander"]', has_text="[1] aurora-report.pdf, page 2")
    source.locator('[data-testid="stExpanderDetails"]').get_by_text("lifted off from Kiruna").wait_for(state="visible")
    time.sleep(0.5)  # let the expander finish opening before the picture
    page.screenshot(path=str(ARTIFACTS / "browser-3-source.png"), full_page=True)

    source.get_by_text("Show page 2").click()  # the cited page itself, drawn by the PDF viewer
    source.locator("canvas").first.wait_for(state="visible")
    box_of_page = source.locator("canvas").first.bounding_box()
    assert box_of_page and box_of_page["width"] > 300 and box_of_page["height"] > 300, box_of_page
    time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "browser-3b-page.png"), full_page=True)

    confirm = page.locator('[class*="st-key-delete-aurora-report"] button').first
    for _ in range(3):  # a popover opened just as a run redraws the sidebar closes again: open it once more
        sidebar.locator('[class*="st-key-ask-delete-aurora-report"] button').first.click()  # it asks first
        try:
            confirm.wait_for(state="visible", timeout=20_000)
            break
        except PlaywrightTimeout:
            page.screenshot(path=str(ARTIFACTS / "browser-3c-delete-not-asked.png"), full_page=True)
    confirm.click()
    sidebar.get_by_text("0 document(s), 0 passages").wait_for()
    # Streamlit keeps stale elements on screen for a moment during a rerun: wait for the row to go.
    sidebar.get_by_text("aurora-report.pdf", exact=True).wait_for(state="detached", timeout=30_000)
    assert sidebar.get_by_text("aurora-report.pdf", exact=True).count() == 0
    page.screenshot(path=str(ARTIFACTS / "browser-4-deleted.png"), full_page=True)
    other_tab.reload()
    other_tab.locator('[data-testid="stSidebar"]').get_by_text("0 document(s), 0 passages").wait_for()


def test_word_upload_sources_and_a_conversation_that_survives_a_reload(app_url: str, page, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    docx = make_docx(tmp_path / "vault-handbook.docx", [
        ("heading1", "Vault handbook"),
        ("p", "Visitors sign the register at the front desk."),
        ("heading2", "Door codes"),
        ("table", [["Vault", "Door code"], ["North vault", "4711"], ["South vault", "9932"]]),
    ])
    page.goto(app_url)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('input[type="file"]').set_input_files(str(docx))
    sidebar.get_by_text("1 document(s),").wait_for()  # listed in the library: the upload's run is over

    question = "What is the door code of the north vault?"
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill(question)
    box.press("Enter")
    source = page.get_by_text(VAULT_SOURCE)
    source.wait_for(timeout=180_000)
    source.click()
    opened = page.locator('[data-testid="stExpander"]', has_text="[1] vault-handbook.docx")
    opened.locator('[data-testid="stExpanderDetails"]').get_by_text("North vault | 4711").wait_for(state="visible")
    page.screenshot(path=str(ARTIFACTS / "browser-5-docx-answered.png"), full_page=True)
    conversation = sidebar.get_by_role("button", name=question)
    conversation.wait_for()  # listed in the sidebar as soon as it is answered
    assert "c=" in page.url, "the address names the conversation"

    page.reload()  # the same address: the conversation is shown again, sources and all
    page.locator('[data-testid="stChatMessage"]', has_text=question).wait_for()
    page.get_by_text(VAULT_SOURCE).wait_for()
    page.locator('[data-testid="stChatInputTextArea"]').wait_for()
    settled(page)
    page.screenshot(path=str(ARTIFACTS / "browser-6-after-reload.png"), full_page=True)

    other_tab = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    other_tab.goto(app_url)  # a second tab without the address: the conversation is in its list, one click away
    other_sidebar = other_tab.locator('[data-testid="stSidebar"]')
    other_sidebar.get_by_role("button", name=question).click()
    other_tab.locator('[data-testid="stChatMessage"]', has_text=question).wait_for()
    settled(other_tab)

    export = other_tab.get_by_role("button", name="Export as Markdown")
    for _ in range(3):  # a popover opened just as a run redraws the sidebar closes again: open it once more
        other_sidebar.locator('[class*="st-key-menu-"] button').first.click()
        try:
            export.wait_for(state="visible", timeout=10_000)
            break
        except PlaywrightTimeout:
            settled(other_tab)
    with other_tab.expect_download() as download:
        export.click()
    exported = Path(download.value.path()).read_text()
    assert exported.startswith(f"# {question}")  # Markdown, with file names and passages escaped as text:
    assert "**vault-handbook.docx › Door codes**" in exported and "North vault \\| 4711" in exported
    other_tab.screenshot(path=str(ARTIFACTS / "browser-7-export-menu.png"), full_page=True)


def test_a_stopped_answer_keeps_its_question_and_words_and_nothing_leaves_the_machine(
    page, tmp_path: Path, scripted_server: ScriptedServer
) -> None:
    # A scripted, slow model (an OpenAI-compatible server on loopback): the real one writes a one-sentence answer
    # in well under a second, too fast to stop midway every time.
    words = "Tomatoes need six hours of sun [1]. " + "They want water twice a week and a stake [1]. " * 8
    scripted_server.play(words + "The last sentence of the answer.", piece_delay=0.1)
    requested: list[str] = []  # every request the page makes: none may leave 127.0.0.1 (a favicon from a CDN did)
    page.on("request", lambda request: requested.append(request.url))
    pdf = make_pdf(tmp_path / "garden-guide.pdf", [(
        "Garden guide. Tomatoes need six hours of sun, water twice a week, a stake for support, compost in spring, "
        "and pruning of side shoots every week from June to September; basil planted beside them keeps pests away."
    )])
    with serve_app(tmp_path, RAG_LLM="openai", RAG_LLM_URL=scripted_server.base_url,
                   RAG_LLM_MODEL=SCRIPTED_MODEL) as app_url:
        page.goto(app_url)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.locator('input[type="file"]').set_input_files(str(pdf))
        sidebar.get_by_text("1 document(s),").wait_for()
        settled(page)

        question = "What do tomatoes need: sun, water, stake, compost, pruning?"
        box = page.locator('[data-testid="stChatInputTextArea"]')
        box.fill(question)
        box.press("Enter")
        # The question is saved before the model is asked: it is listed while the answer is written.
        sidebar.get_by_role("button", name=question).wait_for(timeout=60_000)
        page.get_by_text("Tomatoes need six hours of sun").wait_for(timeout=60_000)
        page.locator('[data-testid="stChatInputStopButton"]').click()
        settled(page)
        assert "c=" in page.url, "the address names the conversation of the stopped answer"

        page.reload()
        page.locator('[data-testid="stChatMessage"]', has_text=question).wait_for()
        page.get_by_text("stopped before the end").wait_for()  # the answer was stopped, and says so
        answer = page.locator('[data-testid="stChatMessage"]', has_text="stopped before the end")
        assert "Tomatoes need six hours of sun" in answer.inner_text(), "the words written before the stop are kept"
        assert "The last sentence of the answer" not in answer.inner_text()
        sidebar.get_by_role("button", name=question).wait_for()
        settled(page)
        page.screenshot(path=str(ARTIFACTS / "browser-8-stopped-and-reloaded.png"), full_page=True)
    elsewhere = [url for url in requested if not url.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert not elsewhere, f"the page fetched from other hosts: {elsewhere}"
