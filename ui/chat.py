"""The chat: answers with their sources (or a refusal), the agent's trace, and running a question."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import streamlit as st

from rag.answer.answerer import Answer, Checking, Delta, Event, Finished, Retrieved
from rag.answer.notes import answer_note
from rag.answer.result import AnswerResult, Citation, Step
from rag.answer.result import source_label
from rag.answer.safe_markdown import answer_markdown, text_markdown
from rag.llm import LLM
from rag.service import Service
from rag.settings import Settings
from ui.resources import cached_llm


def highlight(text: str, support: str) -> str:
    """The passage as Markdown, with the supporting sentence highlighted."""
    safe = text_markdown(text)
    sentence = text_markdown(support)
    if sentence and sentence in safe:
        return safe.replace(sentence, f":orange-background[{sentence}]", 1)
    return safe


def plural(n: int, word: str) -> str:
    """``1 page``, ``3 pages``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


NOTE_ICONS = {"withheld": ":material/report:", "not_found": ":material/search_off:",
              "unconfirmed": ":material/report:", "check": ":material/report:", "verified": ":material/verified:"}


def citation_label(citation: Citation) -> str:
    """``[1] report.pdf, page 2 › Results``: the file's label shows as written (a crafted name renders no link or
    image)."""
    return f"[{citation.n}] {text_markdown(citation.where)}"


def render_answer(message: dict, library: Service, *, status_on_screen: bool = False,
                  text_on_screen: bool = False) -> None:
    """An answer with its sources; a refusal looks different and shows the closest passages instead.

    Drawn the same way whether it is being answered (``run_answer`` and ``run_agent`` have drawn the status line,
    and the plain answer's text, already) or shown again later: a status line, the text, then the rest. Streamlit
    matches elements by position, so a sources panel a reader opened stays open when the page runs again."""
    answer = AnswerResult.load(message["answer"]) if message.get("answer") else AnswerResult(answer="")
    if not status_on_screen:
        with st.status(status_label(answer), state="complete", expanded=False):
            for c in answer.citations:
                st.caption(text_markdown(c.where))
    if not text_on_screen:
        if answer.refused and answer.mode == "answer":
            st.empty()  # where the answer's text stands: a refusal's note follows
        else:
            st.markdown(answer_markdown(message["content"]) or "…")
    if note := answer_note(answer):  # refused, unconfirmed, or (a short caption) checked against the sources
        if note.kind == "verified":
            st.caption(f"{NOTE_ICONS[note.kind]} {note.markdown}")
        else:
            st.warning(note.markdown, icon=NOTE_ICONS[note.kind])
    if answer.fallback:
        st.caption(f":material/info: The agent stopped without an answer ({answer.stopped_reason}), so this "
                   "is the plain answer from your documents.")
    if message.get("stopped"):
        st.caption(":material/stop_circle: stopped before the end")
    if answer.error:
        st.error(f"The model failed: {text_markdown(answer.error)}", icon=":material/error:")
    citations = answer.citations
    if citations:
        cited = answer.any_cited
        st.caption("Closest passages" if answer.refused else ("Sources" if cited else "Sources consulted"))
        for i, c in enumerate(citations):
            if cited and not c.cited and (i == 0 or citations[i - 1].cited):
                st.caption("Also given to the model, not cited")  # an answer its cited passages do not confirm
            with st.expander(citation_label(c)):
                st.markdown(highlight(c.text, c.support))
                if c.page and c.kind == "pdf":
                    show_page(library, c, key=f"page-{message.get('id', id(message))}-{c.n}")
    if answer.steps:
        ended = str(answer.stopped_reason or "").replace("_", " ")
        with st.expander(f"Agent trace ({plural(len(answer.steps), 'step')}, ended by {ended})"):
            for i, step in enumerate(answer.steps, start=1):
                render_step(i, step)


def status_label(answer: AnswerResult) -> str:
    """The status line of an answer shown again: how it was answered."""
    if answer.mode == "agent":
        ended = (answer.stopped_reason or "").replace("_", " ")
        return f"Agent finished ({ended}) in {answer.seconds:.0f} s"
    if answer.refused_by == "retrieval":
        return "No passage of your documents holds an answer"
    return f"Answered in {answer.seconds:.1f} s"


def show_page(library: Service, citation: Citation, *, key: str) -> None:
    """The cited PDF page itself, on demand, so the passage can be checked in its place."""
    if st.toggle(f"Show page {citation.page}", key=key):
        data = library.page_pdf(citation.source, citation.page or 0)
        if data is None:
            st.caption(f"Page {citation.page} of {text_markdown(citation.source)} cannot be shown: the file has "
                       "changed, is no longer on disk or cannot be read.")
        else:
            st.pdf(data, height=560, key=f"{key}-pdf")  # the same page cited twice must not share an element id


def render_step(i: int, step: Step) -> None:
    """One agent step. Everything in it is model-written (an invalid action is kept as the model wrote it), so it
    shows as text: no link, image or HTML."""
    st.markdown(f"**{i}. {text_markdown(step.action or 'thought')}** — {text_markdown(step.thought)}")
    if step.input:
        st.code(step.input)
    st.text(step.observation)


def history_for_model(messages: list[dict]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages if m.get("kind") in ("question", "answer")]


class Ahead:
    """An answer's events made in a worker thread from the moment the question is asked, so that retrieval and the
    model's first token are under way while the page draws the question and its status line (``bench/page.py``
    measures the time to the first word); the page reads them in order. ``close`` (when the reader stops the
    answer, or the page fails) ends the worker at its next event, and the answer's own ``finally`` frees the
    model."""

    _END, _NONE = object(), object()

    def __init__(self, events: Iterator[Event]) -> None:
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._next: object = self._NONE  # an event taken by ``ready``, not yet read
        self._stop = threading.Event()
        threading.Thread(target=self._work, args=(events,), name="answer-ahead", daemon=True).start()

    def _work(self, events: Iterator[Event]) -> None:
        try:
            for event in events:
                self._events.put(event)
                if self._stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - raised again in the page's thread, where it is shown
            self._events.put(exc)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            self._events.put(self._END)

    def ready(self, timeout: float) -> bool:
        """Whether the next event is here, waiting up to ``timeout`` seconds for it."""
        if self._next is self._NONE:
            try:
                self._next = self._events.get(timeout=timeout)
            except queue.Empty:
                return False
        return True

    def __iter__(self) -> Iterator[Event]:
        while True:
            item = self._events.get() if self._next is self._NONE else self._next
            self._next = self._NONE
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()


def answer_question(question: str, settings: Settings, library: Service, asked: Callable[[], None]) -> None:
    """Show the question and answer it as it streams; call ``asked`` once meanwhile (the app saves the conversation
    and lists it there, so a question whose answer is stopped, or left for another conversation, is not lost). A
    plain answer is begun first (``Ahead``): the model works while the page draws, and ``asked`` waits for the
    first word when that comes at once (``run_answer``)."""
    history = history_for_model(st.session_state.messages)
    llm = cached_llm(settings.llm, settings.llm_url, settings.chat_model, settings.llm_api_key)
    agent = bool(st.session_state.get("agent_mode"))
    started = time.perf_counter()
    ahead = None if agent else Ahead(library.configured(settings).ask(question, history, llm))
    listed: list[bool] = []

    def list_once() -> None:
        if not listed:
            listed.append(True)
            asked()

    try:
        st.session_state.messages.append({"role": "user", "kind": "question", "content": question})
        with st.chat_message("user"):
            st.markdown(answer_markdown(question))
        message = {"role": "assistant", "kind": "answer", "content": "", "answer": None, "stopped": True,
                   "id": len(st.session_state.messages)}
        st.session_state.messages.append(message)  # "stopped" until the answer is complete
        with st.chat_message("assistant"):
            if ahead is None:
                list_once()
                run_agent(question, history, settings, library, llm, message)
            else:
                run_answer(ahead, started, settings, library, message, list_once)
    finally:
        if ahead is not None:
            ahead.close()
        list_once()


def reading_label(retrieved: Retrieved, settings: Settings) -> str:
    """What the model is given, in words: "Reading 3 passages of tea-guide.md and report.pdf (page 2)…"."""
    hits = retrieved.hits[: settings.top_k]
    where = list(dict.fromkeys(source_label(h.chunk.source, h.chunk.page, h.chunk.kind) for h in hits))
    files = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
    return f"Reading {plural(len(hits), 'passage')} of {text_markdown(files)}…"


# How long the page waits for the first word before it lists the conversation: a model with the prompt at hand
# answers within this, and the word then comes first; a slower one has the conversation listed while it reads.
FIRST_WORD_WAIT_S = 0.3


def run_answer(ahead: Ahead, started: float, settings: Settings, library: Service, message: dict,
               asked: Callable[[], None]) -> None:
    """The answer with what is happening shown as it happens: searching, which passages of which files the model
    reads, writing (with the seconds so far), and the time it took (from ``started``, when it was asked). ``asked``
    is called once the first word is on screen, or after ``FIRST_WORD_WAIT_S`` without one."""
    events = iter(ahead)
    status = st.status("Searching your documents…", expanded=False)
    retrieved = next(events)
    assert isinstance(retrieved, Retrieved)
    done: list[Answer] = []

    def deltas():
        for event in events:
            if isinstance(event, Delta) and not retrieved.refused:
                message["content"] += event.text
                yield event.text
            elif isinstance(event, Checking):
                status.update(label="Checking the answer against your sources…")
            elif isinstance(event, Finished):
                done.append(event.answer)

    shown = st.empty()  # the growing answer, made safe to render at every step (not st.write_stream)
    if retrieved.refused:
        asked()
        list(deltas())
        status.update(label="No passage of your documents holds an answer", state="complete")
    else:
        status.update(label=reading_label(retrieved, settings))
        for hit in retrieved.hits[: settings.top_k]:  # the sources, as soon as they are known (not "with status":
            c = hit.chunk  # leaving a running status sleeps 50 ms, and the first word would wait for it)
            status.caption(text_markdown(source_label(c.source, c.page, c.kind, c.section)))
        if not ahead.ready(FIRST_WORD_WAIT_S):
            asked()
        shown_at = None
        for _ in deltas():
            shown.markdown(answer_markdown(message["content"]))
            elapsed = time.perf_counter() - started
            if shown_at is None or elapsed - shown_at >= 1:  # at the first word, then once a second
                status.update(label=f"Writing the answer… {elapsed:.0f} s")
                shown_at = elapsed
            asked()
        status.update(label=f"Answered in {time.perf_counter() - started:.1f} s", state="complete")
    answer = done[0]
    if answer.refused_by == "check":  # withheld: the note says what the model wrote and why it is not the answer
        shown.markdown(answer_markdown(answer.answer))
    message.update(content=answer.answer, answer=answer.to_json(), stopped=False)
    render_answer(message, library, status_on_screen=True, text_on_screen=True)


def run_agent(question: str, history: list, settings: Settings, library: Service, llm: LLM, message: dict) -> None:
    from rag.agent.events import AgentFinished, AgentStep, AgentText

    result = None
    started, labelled = time.perf_counter(), 0.0
    with st.status("Agent at work: step 1, reading the question…", expanded=True) as status:
        live, written, shown = st.empty(), "", 0  # the current turn, as the model writes it
        live.caption("Step 1: reading the question…")
        for event in library.configured(settings).run_agent(question, history, llm):
            elapsed = time.perf_counter() - started
            if isinstance(event, AgentText):
                written += event.text
                live.text(written)
            elif isinstance(event, AgentStep):
                live.empty()
                shown += 1
                render_step(shown, event.record())
                live, written = st.empty(), ""
                live.caption(f"Step {shown + 1}: thinking…")
            if elapsed - labelled >= 1 and not isinstance(event, AgentFinished):  # once a second
                status.update(label=f"Agent at work: step {shown + 1}, {elapsed:.0f} s")
                labelled = elapsed
            elif isinstance(event, AgentFinished):
                live.empty()
                result = event.result
        ended = result.stopped_reason.replace("_", " ") if result else ""
        took = f" in {time.perf_counter() - started:.0f} s"
        status.update(label=f"Agent finished ({ended}){took}" if result else "Agent stopped",
                      state="complete", expanded=False)
    if result is not None:
        message.update(content=result.answer, answer=result.to_json(), stopped=False)
        render_answer(message, library, status_on_screen=True)
