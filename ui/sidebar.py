"""The sidebar: the document library first, then the kept conversations, then model and search settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from pydantic import ValidationError

from rag.answer.result import page_unit
from rag.answer.safe_markdown import text_markdown
from rag.conversations import ConversationStore, file_name, to_markdown
from rag.llm import EMBEDDED_MODELS, backend_class, backend_names, model_index, model_title
from rag.service import SUPPORTED_SUFFIXES, IngestReport, Progress, Service, StoreError, Upload
from rag.settings import Settings
from ui.chat import plural
from ui.resources import llm_health

FILE_TYPES = [s.lstrip(".") for s in SUPPORTED_SUFFIXES]


# --- sidebar: model and search settings, in plain words and out of the way ----------------------------------------

SEARCH_MODES = {"hybrid": "Meaning and keywords (best)", "dense": "Meaning only", "keyword": "Keywords only"}


def with_kept_choices(base: Settings, kept: dict[str, Any]) -> Settings:
    """The settings with the page's choices from an earlier visit applied (``ui.prefs``); a choice no longer valid
    (a model or backend that went away) is dropped, not an error."""
    choices = {k: v for k, v in kept.items() if k != "agent_mode"}
    if choices.get("llm") not in backend_names():
        choices.pop("llm", None)
    try:
        return base.changed(**choices)
    except ValidationError:
        return base


def sidebar_settings(base: Settings) -> Settings:
    """Model and search settings, collapsed under the library: a reader rarely needs them. A model that cannot be
    reached says so outside the section."""
    section = st.sidebar.expander("Model and search settings", icon=":material/tune:")
    backends = backend_names()
    backend = section.selectbox("Where the model runs", backends, index=backends.index(base.llm), key="backend",
                                format_func=lambda b: backend_class(b).title or b)
    url, model, api_key, embedded = base.llm_url, base.llm_model, base.llm_api_key, base.embedded_model
    remote = backend_class(backend).remote  # a server to reach, or a bundled model to pick
    embedded = embedded if remote else section.selectbox(
        "Model", list(EMBEDDED_MODELS), index=model_index(embedded), key="embedded_model", format_func=model_title)
    if remote:
        url = section.text_input("Server address", base.llm_url, key="llm_url")
        model = section.text_input("Model name on the server", base.llm_model, key="llm_model")
        api_key = base.api_key_for(url) or section.text_input(
            "API key for this server", "", type="password", key="llm_key",
            help="The configured key (RAG_LLM_API_KEY) is only ever sent to the configured server (RAG_LLM_URL)")
    ok, detail = llm_health(backend, url, model if remote else embedded, api_key)
    if ok:
        section.success(detail, icon=":material/check_circle:")
    else:
        st.sidebar.error(detail, icon=":material/error:")
    temperature = section.slider("Creativity (0: keep to the passages)", 0.0, 1.5, base.temperature, 0.05,
                                 key="temperature")
    withhold = section.toggle("Withhold unconfirmed answers", base.unverified_answers == "withhold", key="withhold",
                              help="An answer the checks cannot confirm from your documents is not given as the "
                                   "answer; the note still shows what the model wrote")
    modes = list(SEARCH_MODES)
    mode = section.selectbox("How to search", modes, index=modes.index(base.retrieval_mode), key="mode",
                             format_func=SEARCH_MODES.__getitem__)
    top_k = section.slider("Passages given to the model", 1, max(10, base.top_k), base.top_k, key="top_k")
    # The one way a change applies: validated like the environment (Settings.changed), used from this run on.
    return base.changed(llm=backend, llm_url=url, llm_model=model, llm_api_key=api_key, embedded_model=embedded,
                        temperature=temperature, unverified_answers="withhold" if withhold else "show",
                        retrieval_mode=mode, top_k=top_k)


# --- sidebar: the library ---------------------------------------------------------------------------------------


def ingest_with_progress(label: str, run) -> IngestReport:  # noqa: ANN001 - run(on_progress) -> IngestReport
    """Run an ingest under a status box with a progress bar and one line per finished file."""
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0)

        def on_progress(event: Progress) -> None:
            share = event.chunks_done / event.chunks_total if event.chunks_total else 0.0
            bar.progress(min((event.file_index + share) / max(event.files_total, 1), 1.0),
                         text=f"{event.path.name}: {event.stage} {event.chunks_done}/{event.chunks_total} passages"
                         if event.stage == "embedding" else f"{event.path.name}: {event.stage}")
            if event.stage == "done":
                note = f" ({text_markdown(event.message)})" if event.message else ""
                st.write(f":material/check: {text_markdown(event.path.name)}: {event.chunks_total} chunks{note}")
            elif event.stage == "unchanged":
                st.write(f":material/check: {text_markdown(event.path.name)}: already in the library")
            elif event.stage == "waiting":
                st.write(":material/hourglass_top: Another session is adding documents; waiting for it to finish…")

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


def add_files(service: Service, files: list) -> IngestReport:  # noqa: ANN001 - Streamlit UploadedFile objects
    uploads = [Upload(f.name, f.getvalue()) for f in files]
    return ingest_with_progress(f"Adding {len(uploads)} file(s)…", lambda cb: service.upload(uploads, cb))


def upload_message(report: IngestReport) -> dict[str, Any]:
    """Files dropped on the chat box, as the conversation keeps them: the note, and the files' names (a
    conversation that starts with them is named after them)."""
    names = [*report.added, *report.updated, *report.unchanged]
    return {"role": "assistant", "kind": "upload", "content": upload_note(report), "files": names}


def upload_note(report: IngestReport) -> str:
    lines = [f"**{summary(report)}**"]
    lines += [f"- {text_markdown(name)}: added" for name in report.added]
    lines += [f"- {text_markdown(name)}: updated" for name in report.updated]
    lines += [f"- {text_markdown(name)}: already in the library" for name in report.unchanged]
    lines += [f"- {text_markdown(Path(n.path).name)}: {text_markdown(n.note)}" for n in report.notes]
    lines += [f"- {text_markdown(Path(f.path).name)}: not added: {text_markdown(f.error)}" for f in report.failed]
    return "\n".join(lines)


def sidebar_library(service: Service) -> None:
    """The library in a container of its own, with a place always kept for the note of the last files added: what
    follows it in the sidebar (the conversations, the settings) keeps its position from one run to the next, so
    Streamlit does not show the last run's copy of it, greyed, while a question is being answered."""
    with st.sidebar.container():
        _library(service)


def _library(service: Service) -> None:
    st.header("Your documents")
    key = f"uploader-{st.session_state.uploader_round}"
    files = st.file_uploader("Add documents (PDF, Word, PowerPoint, HTML, TXT, MD)", type=FILE_TYPES,
                             accept_multiple_files=True, key=key,
                             help=f"Up to {service.settings.max_upload_mb} MB a file")
    note = st.empty()
    if files:
        report = add_files(service, files)
        st.session_state.uploader_round += 1  # a fresh uploader: the same files are not added again
        st.session_state.upload_result = (upload_note(report), bool(report.failed))
        st.rerun()
    if result := st.session_state.pop("upload_result", None):  # shown where the files were added, once
        text, failed = result
        (note.warning if failed else note.success)(text, icon=":material/attach_file:")

    docs = service.documents()
    chunks = sum(d.chunks for d in docs)
    st.caption(f"{len(docs)} document(s), {plural(chunks, 'passage')}")
    for doc in docs:
        pages = f"{plural(doc.pages, page_unit(doc.kind))} · " if doc.pages else ""
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.markdown(f"**{text_markdown(doc.name)}**  \n"
                      f":gray[{pages}{plural(doc.chunks, 'passage')} · added {doc.added_at[:10]}]")
        name = text_markdown(doc.name)
        # A deletion cannot be undone (the uploaded file goes too): it asks first, in a popover.
        confirm = right.popover("", icon=":material/delete:", help=f"Delete {name}", key=f"ask-delete-{doc.name}")
        confirm.markdown(f"Delete **{name}**? Its passages leave the index and the uploaded file is removed.")
        if confirm.button("Delete", icon=":material/delete:", type="primary", key=f"delete-{doc.name}"):
            try:
                service.delete([doc.name])
            except StoreError as exc:  # another session kept the index busy: nothing was deleted
                st.error(f"{name} was not deleted: {text_markdown(str(exc))}", icon=":material/error:")
            else:
                st.toast(f"Deleted {name}")
                st.rerun()
    if docs and st.button("Re-index all", help="Read every document again and rebuild its passages"):
        ingest_with_progress("Re-indexing…", service.reindex)


# --- sidebar: kept conversations --------------------------------------------------------------------------------


def open_conversation(store: ConversationStore, conversation_id: str | None) -> None:
    """Show a saved conversation (None: a new one) in this tab; the address names it, so a reload reopens it."""
    chat = store.open(conversation_id)
    st.session_state.update(chat=chat, messages=chat.messages)
    st.query_params.from_dict({"c": chat.id} if chat.id else {})


def keep_conversation(store: ConversationStore) -> None:
    """Save this tab's conversation if it changed (a new one gets its id, which the address then names)."""
    if store.keep(st.session_state.chat):
        st.query_params["c"] = st.session_state.chat.id


def delete_conversation(store: ConversationStore, conversation_id: str) -> None:
    st.session_state.pop(f"confirm-forget-{conversation_id}", None)
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
            # Deleting cannot be undone: it asks first, in the same menu.
            if st.session_state.get(f"confirm-forget-{info.id}"):
                st.markdown(f"Delete **{text_markdown(info.title)}** and its answers? This cannot be undone.")
                yes, no = st.columns(2)
                yes.button("Delete", icon=":material/delete:", type="primary", key=f"forget-yes-{info.id}",
                           on_click=delete_conversation, args=(store, info.id))
                no.button("Keep", key=f"forget-no-{info.id}", on_click=st.session_state.pop,
                          args=(f"confirm-forget-{info.id}", None))
            else:
                st.button("Delete…", icon=":material/delete:", key=f"forget-{info.id}",
                          on_click=st.session_state.__setitem__, args=(f"confirm-forget-{info.id}", True))
