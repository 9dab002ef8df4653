"""The browser app: chat with your documents. Rendering only; the work is done in ``rag`` and ``ingest``.

    streamlit run app.py        (or: make run)
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ingest.library import SUPPORTED_SUFFIXES, Library, Upload
from ingest.report import IngestReport, Progress
from rag.answer.answerer import Answer, Answerer, Delta, Finished, Retrieved, answer_note
from rag.answer.safe_markdown import answer_markdown, text_markdown
from rag.conversations import ConversationStore, file_name, to_markdown
from rag.llm import EMBEDDED_MODELS, LLM, backend_names, get_llm, model_index, model_title
from rag.retrieval.retriever import Retriever
from rag.settings import Settings

FILE_TYPES = [s.lstrip(".") for s in SUPPORTED_SUFFIXES]

st.set_page_config(page_title="Ask your documents", page_icon=":material/menu_book:", layout="wide")


# --- heavy objects, shared by every browser tab -----------------------------------------------------------------


@st.cache_resource(show_spinner="Opening the index…")
def cached_library(index_dir: str) -> Library:
    return Library.open(Settings(index_dir=Path(index_dir)))  # re-reads itself whenever another writer changed it


@st.cache_resource(show_spinner=False)
def cached_llm(backend: str, url: str, model: str, api_key: str) -> LLM:
    chosen = {"embedded_model": model} if backend == "embedded" else {"llm_model": model}  # see Settings.chat_model
    return get_llm(Settings().model_copy(update={"llm": backend, "llm_url": url, "llm_api_key": api_key, **chosen}))


@st.cache_resource(show_spinner=False)
def cached_conversations(path: str) -> ConversationStore:
    return ConversationStore(Path(path))


@st.cache_data(ttl=15, show_spinner=False)
def llm_health(backend: str, url: str, model: str, api_key: str) -> tuple[bool, str]:
    return cached_llm(backend, url, model, api_key).health()


# --- sidebar: model and retrieval settings ----------------------------------------------------------------------


def sidebar_settings(base: Settings) -> Settings:
    st.sidebar.header("Model")
    backends = backend_names()
    backend = st.sidebar.selectbox("Backend", backends, index=backends.index(base.llm), key="backend",
                                   format_func=lambda b: "Embedded (in-process)" if b == "embedded" else "vLLM server")
    url, model, api_key, embedded = base.llm_url, base.llm_model, base.llm_api_key, base.embedded_model
    embedded = st.sidebar.selectbox("Model", list(EMBEDDED_MODELS), index=model_index(embedded), key="embedded_model",
                                    format_func=model_title) if backend == "embedded" else embedded
    if backend == "openai":
        url = st.sidebar.text_input("Server URL", base.llm_url, key="llm_url")
        model = st.sidebar.text_input("Model name", base.llm_model, key="llm_model")
        api_key = base.api_key_for(url) or st.sidebar.text_input(
            "API key for this server", "", type="password", key="llm_key",
            help="The configured key (RAG_LLM_API_KEY) is only ever sent to the configured server (RAG_LLM_URL)")
    ok, detail = llm_health(backend, url, embedded if backend == "embedded" else model, api_key)
    (st.sidebar.success if ok else st.sidebar.error)(detail, icon=":material/check_circle:" if ok else ":material/error:")
    temperature = st.sidebar.slider("Temperature", 0.0, 1.5, base.temperature, 0.05, key="temperature")

    st.sidebar.header("Retrieval")
    modes = ["hybrid", "dense", "keyword"]
    mode = st.sidebar.selectbox("Search mode", modes, index=modes.index(base.retrieval_mode), key="mode",
                                help="hybrid: meaning and keywords together; dense: meaning only; keyword: BM25")
    top_k = st.sidebar.slider("Passages per answer (top-k)", 1, 10, base.top_k, key="top_k")
    return base.model_copy(update={"llm": backend, "llm_url": url, "llm_model": model, "llm_api_key": api_key,
                                   "embedded_model": embedded, "temperature": temperature,
                                   "retrieval_mode": mode, "top_k": top_k})


# --- sidebar: the library ---------------------------------------------------------------------------------------


def ingest_with_progress(label: str, run) -> IngestReport:  # noqa: ANN001 - run(on_progress) -> IngestReport
    """Run an ingest under a status box with a progress bar and one line per finished file."""
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0)

        def on_progress(event: Progress) -> None:
            share = event.chunks_done / event.chunks_total if event.chunks_total else 0.0
            bar.progress(min((event.file_index + share) / max(event.files_total, 1), 1.0),
                         text=f"{event.path.name}: {event.stage} {event.chunks_done}/{event.chunks_total} chunks"
                         if event.stage == "embedding" else f"{event.path.name}: {event.stage}")
            if event.stage == "done":
                note = f" ({text_markdown(event.message)})" if event.message else ""
                st.write(f":material/check: {text_markdown(event.path.name)}: {event.chunks_total} chunks{note}")
            elif event.stage == "unchanged":
                st.write(f":material/check: {text_markdown(event.path.name)}: already in the library")

        report = run(on_progress)
        bar.progress(1.0, text="done")
        for failure in report.failed:
            st.write(f":material/close: {text_markdown(Path(failure.path).name)}: {text_markdown(failure.error)}")
        state = "error" if report.failed and not (report.added or report.updated or report.unchanged) else "complete"
        status.update(label=summary(report), state=state, expanded=bool(report.failed))
    return report


def summary(report: IngestReport) -> str:
    parts = [f"{len(report.added)} added" if report.added else "", f"{len(report.updated)} updated" if
             report.updated else "", f"{len(report.unchanged)} unchanged" if report.unchanged else "",
             f"{len(report.failed)} failed" if report.failed else ""]
    return "Documents: " + (", ".join(p for p in parts if p) or "nothing to do")


def add_files(library: Library, files: list) -> None:  # noqa: ANN001 - Streamlit UploadedFile objects
    uploads = [Upload(f.name, f.getvalue()) for f in files]
    report = ingest_with_progress(f"Adding {len(uploads)} file(s)…", lambda cb: library.add(uploads, cb))
    st.session_state.messages.append({"role": "assistant", "kind": "upload", "content": upload_note(report)})


def upload_note(report: IngestReport) -> str:
    lines = [f":material/attach_file: **{summary(report)}**"]
    lines += [f"- {text_markdown(name)}: added" for name in report.added]
    lines += [f"- {text_markdown(name)}: updated" for name in report.updated]
    lines += [f"- {text_markdown(name)}: already in the library" for name in report.unchanged]
    lines += [f"- {text_markdown(Path(n.path).name)}: {text_markdown(n.note)}" for n in report.notes]
    lines += [f"- :material/close: {text_markdown(Path(f.path).name)}: {text_markdown(f.error)}" for f in report.failed]
    return "\n".join(lines)


def sidebar_library(library: Library) -> None:
    st.sidebar.header("Library")
    key = f"uploader-{st.session_state.uploader_round}"
    files = st.sidebar.file_uploader("Add documents (PDF, Word, PowerPoint, HTML, TXT, MD)", type=FILE_TYPES, accept_multiple_files=True,
                                     key=key, help=f"Up to {library.settings.max_upload_mb} MB a file")
    if files:
        with st.sidebar:
            add_files(library, files)
        st.session_state.uploader_round += 1  # a fresh uploader: the same files are not added again
        st.rerun()

    docs = library.documents()
    chunks = sum(d.chunks for d in docs)
    st.sidebar.caption(f"{len(docs)} document(s), {chunks} passages")
    for doc in docs:
        pages = f"{doc.pages} pages · " if doc.pages else ""
        left, right = st.sidebar.columns([5, 1], vertical_alignment="center")
        left.markdown(f"**{text_markdown(doc.name)}**  \n:gray[{pages}{doc.chunks} chunks · added {doc.added_at[:10]}]")
        if right.button("", icon=":material/delete:", key=f"delete-{doc.name}", help=f"Delete {doc.name}"):
            library.delete(doc.name)
            st.toast(f"Deleted {doc.name}")
            st.rerun()
    if docs and st.sidebar.button("Re-index all", help="Read every document again and rebuild its passages"):
        with st.sidebar:
            ingest_with_progress("Re-indexing…", library.reindex)


# --- sidebar: kept conversations --------------------------------------------------------------------------------


def open_conversation(store: ConversationStore, conversation_id: str | None) -> None:
    """Show a saved conversation (None: a new one) in this tab; the address names it, so a reload reopens it."""
    chat = store.open(conversation_id)
    st.session_state.update(chat=chat, messages=chat.messages)
    st.query_params.from_dict({"c": chat.id} if chat.id else {})


def delete_conversation(store: ConversationStore, conversation_id: str) -> None:
    store.delete(conversation_id)
    if st.session_state.chat.id == conversation_id:
        open_conversation(store, None)


def sidebar_conversations(store: ConversationStore) -> None:
    st.header("Conversations")
    st.button("New conversation", icon=":material/add_comment:", on_click=open_conversation, args=(store, None))
    for info in store.list(limit=30):
        left, right = st.columns([5, 1], vertical_alignment="center")
        current = info.id == st.session_state.chat.id
        left.button(text_markdown(info.title), key=f"open-{info.id}", type="primary" if current else "tertiary",
                    on_click=open_conversation, args=(store, info.id), width="stretch")
        with right.popover("", icon=":material/more_vert:", key=f"menu-{info.id}"):
            st.text_input("Rename", info.title, key=f"name-{info.id}",
                          on_change=lambda i=info.id: store.rename(i, st.session_state[f"name-{i}"]))
            st.download_button("Export as Markdown", lambda i=info.id: to_markdown(store.open(i)),
                               file_name=file_name(info.title), mime="text/markdown", icon=":material/download:",
                               key=f"export-{info.id}", on_click="ignore")
            st.button("Delete", icon=":material/delete:", key=f"forget-{info.id}", on_click=delete_conversation,
                      args=(store, info.id))


# --- chat -------------------------------------------------------------------------------------------------------


def highlight(text: str, support: str) -> str:
    """The passage as Markdown, with the supporting sentence highlighted."""
    safe = text_markdown(text)
    sentence = text_markdown(support)
    if sentence and sentence in safe:
        return safe.replace(sentence, f":orange-background[{sentence}]", 1)
    return safe




def source_label(citation: dict) -> str:
    unit = "slide" if citation["source"].lower().endswith(".pptx") else "page"
    page = f", {unit} {citation['page']}" if citation.get("page") else ""
    return f"[{citation['n']}] {citation['source']}{page}"


def render_answer(message: dict, library: Library, *, text_on_screen: bool = False) -> None:
    """An answer with its sources; a refusal looks different and shows the closest passages instead."""
    answer = message.get("answer") or {}
    if not answer.get("refused") and not text_on_screen:
        st.markdown(answer_markdown(message["content"]) or "…")
    if note := answer_note(answer):  # refused, or stating a name or number that none of its passages holds
        st.warning(note[0], icon=note[1])
    if answer.get("fallback"):
        st.caption(f":material/info: The agent stopped without an answer ({answer.get('stopped_reason')}), so this "
                   "is the plain answer from your documents.")
    if message.get("stopped"):
        st.caption(":material/stop_circle: stopped before the end")
    if answer.get("error"):
        st.error(f"The model failed: {answer['error']}", icon=":material/error:")
    citations = answer.get("citations") or []
    if citations:
        cited = any(c.get("cited") for c in citations)
        st.caption("Closest passages" if answer.get("refused") else ("Sources" if cited else "Sources consulted"))
        for c in citations:
            with st.expander(source_label(c)):
                st.markdown(highlight(c["text"], c.get("support", "")))
                if c.get("page") and c["source"].lower().endswith(".pdf"):
                    show_page(library, c, key=f"page-{message.get('id', id(message))}-{c['n']}")
    if answer.get("steps"):
        with st.expander(f"Agent trace ({len(answer['steps'])} steps, {answer.get('stopped_reason', '')})"):
            for i, step in enumerate(answer["steps"], start=1):
                render_step(i, step)


def show_page(library: Library, citation: dict, *, key: str) -> None:
    """The cited PDF page itself, on demand, so the passage can be checked in its place."""
    if st.toggle(f"Show page {citation['page']}", key=key):
        data = library.page_pdf(citation["source"], citation["page"])
        if data is None:
            st.caption(f"Page {citation['page']} of {citation['source']} cannot be shown: the file has changed, "
                       "is no longer on disk or cannot be read.")
        else:
            st.pdf(data, height=560, key=f"{key}-pdf")  # the same page cited twice must not share an element id


def render_step(i: int, step: dict) -> None:
    st.markdown(f"**{i}. {step.get('action') or 'thought'}** — {text_markdown(step.get('thought') or '')}")
    if step.get("input"):
        st.code(step["input"])
    st.text(step.get("observation") or "")


def history_for_model(messages: list[dict]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages if m.get("kind") in ("question", "answer")]


def answer_question(question: str, settings: Settings, library: Library) -> None:
    history = history_for_model(st.session_state.messages)
    st.session_state.messages.append({"role": "user", "kind": "question", "content": question})
    with st.chat_message("user"):
        st.markdown(answer_markdown(question))
    message = {"role": "assistant", "kind": "answer", "content": "", "answer": None, "stopped": True,
               "id": len(st.session_state.messages)}
    st.session_state.messages.append(message)  # kept even if the user stops the stream midway
    llm = cached_llm(settings.llm, settings.llm_url, settings.chat_model, settings.llm_api_key)
    with st.chat_message("assistant"):
        if st.session_state.get("agent_mode"):
            run_agent(question, settings, library, llm, message)
        else:
            run_answer(question, history, settings, library, llm, message)


def run_answer(question: str, history: list, settings: Settings, library: Library, llm: LLM, message: dict) -> None:
    answerer = Answerer(Retriever(library.store, settings=settings), llm, settings)
    events = answerer.run(question, history)
    with st.spinner("Searching your documents…"):
        retrieved = next(events)
    assert isinstance(retrieved, Retrieved)
    done: list[Answer] = []

    def deltas():
        for event in events:
            if isinstance(event, Delta) and not retrieved.refused:
                message["content"] += event.text
                yield event.text
            elif isinstance(event, Finished):
                done.append(event.answer)

    if retrieved.refused:
        list(deltas())
    else:
        with st.spinner("Writing the answer…"):
            shown = st.empty()  # the growing answer, made safe to render at every step (not st.write_stream)
            for _ in deltas():
                shown.markdown(answer_markdown(message["content"]))
    answer = done[0]
    message.update(content=answer.answer, answer=answer.to_json(), stopped=False)
    render_answer(message, library, text_on_screen=not retrieved.refused)


def run_agent(question: str, settings: Settings, library: Library, llm: LLM, message: dict) -> None:
    from rag.agent.events import AgentFinished, AgentStep, AgentText
    from rag.agent.loop import Agent

    agent = Agent(Retriever(library.store, settings=settings), llm, settings)
    result = None
    with st.status("Agent at work…", expanded=True) as status:
        live, written, shown = st.empty(), "", 0  # the current turn, as the model writes it
        live.caption("Step 1: reading the question…")
        for event in agent.run(question):
            if isinstance(event, AgentText):
                written += event.text
                live.text(written)
            elif isinstance(event, AgentStep):
                live.empty()
                shown += 1
                render_step(shown, {"thought": event.thought, "action": event.action, "input": event.input,
                                    "observation": event.observation})
                live, written = st.empty(), ""
                live.caption("Thinking…")
            elif isinstance(event, AgentFinished):
                live.empty()
                result = event.result
        status.update(label=f"Agent finished ({result.stopped_reason})" if result else "Agent stopped",
                      state="complete", expanded=False)
    if result is not None:
        message.update(content=result.answer, answer=result.to_json(), stopped=False)
        render_answer(message, library)


def main() -> None:
    base = Settings()  # read from the environment on every run, so RAG_* changes apply without a restart
    st.session_state.setdefault("uploader_round", 0)
    library = cached_library(str(base.index_dir)).configured(base)
    conversations = cached_conversations(str(base.conversations_path))
    if "chat" not in st.session_state:  # a new tab, or a reload: the address may name a conversation
        open_conversation(conversations, st.query_params.get("c"))
    conversations_slot = st.sidebar.container()  # filled last, once this run's question is saved
    settings = sidebar_settings(base)
    sidebar_library(library)

    st.title(":material/menu_book: Ask your documents")
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    llm = cached_llm(settings.llm, settings.llm_url, settings.chat_model, settings.llm_api_key)
    left.caption(f"Answers come only from your {len(library.documents())} document(s), with sources you can check. "
                 f"Model: {settings.llm} · {llm.model}")
    st.session_state.setdefault("agent_mode", False)
    right.toggle("Agent mode", key="agent_mode", help="Reason step by step with tools: document search, "
                 "a calculator and small Python programs for arithmetic")

    for message in st.session_state.messages:
        with st.chat_message(message["role"]):
            if message.get("kind") == "answer":
                render_answer(message, library)
            else:
                st.markdown(answer_markdown(message["content"]))

    # Read the chat box first (it is pinned to the bottom wherever it is called), so that suggestions are not
    # drawn above a question that is being answered in this same run.
    submitted = st.chat_input("Ask a question, or drop files here", accept_file="multiple", file_type=FILE_TYPES,
                              max_upload_size=settings.max_upload_mb, submit_mode="stop")
    pending = st.session_state.pop("pending", None)
    if not st.session_state.messages and not pending and not submitted:
        # One container: on the next run the question takes its place at once, instead of the buttons staying
        # on screen, greyed out, until the answer is done.
        with st.container():
            questions = library.suggested_questions()
            if questions:
                st.caption("Try one of these:")
                for i, question in enumerate(questions):
                    if st.button(question, key=f"suggest-{i}"):
                        st.session_state.pending = question
                        st.rerun()
            else:
                st.info("Your library is empty. Drop PDF, Word, PowerPoint, HTML, TXT or Markdown files on the chat "
                        "box or in the sidebar.")

    if submitted is not None and submitted.files:
        with st.chat_message("assistant"):
            add_files(library, submitted.files)
        if not (submitted.text or "").strip():
            st.rerun()
    question = (submitted.text if submitted is not None else "") or pending
    if question and question.strip():
        answer_question(question.strip(), settings, library)
    if conversations.keep(st.session_state.chat):
        st.query_params["c"] = st.session_state.chat.id
    with conversations_slot:
        sidebar_conversations(conversations)


main()
