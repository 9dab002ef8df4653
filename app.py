"""The browser app: chat with your documents. Rendering only (the parts are in ``ui/``); the work is done by the
application service, ``rag.service.Service``.

    streamlit run app.py        (or: make run)
"""

from __future__ import annotations

import streamlit as st

from rag.answer.safe_markdown import answer_markdown
from ui.chat import answer_question, render_answer
from ui.prefs import KEPT, load_prefs, prefs_path, save_prefs
from ui.resources import cached_conversations, cached_llm, cached_service, environment_settings, warmed_llm
from ui.sidebar import (
    FILE_TYPES,
    add_files,
    keep_conversation,
    open_conversation,
    sidebar_conversations,
    sidebar_library,
    sidebar_settings,
    upload_message,
    with_kept_choices,
)

# No page_icon: Streamlit's page turns a ":material/...:" or emoji icon into an image fetched from another host,
# and nothing this app shows may reach one; its own favicon is served from this machine.
st.set_page_config(page_title="Ask your documents", layout="wide")

def main() -> None:
    environment = environment_settings()  # read again when a RAG_* variable changed: no restart needed
    prefs = prefs_path(environment.conversations_path)
    kept = st.session_state.setdefault("kept_choices", load_prefs(prefs))  # this page's choices of an earlier visit
    base = with_kept_choices(environment, kept)
    st.session_state.setdefault("uploader_round", 0)
    st.session_state.setdefault("agent_mode", bool(kept.get("agent_mode", False)))
    service = cached_service(str(base.index_dir)).configured(base)
    conversations = cached_conversations(str(base.conversations_path))
    if "chat" not in st.session_state:  # a new tab, or a reload: the address may name a conversation
        open_conversation(conversations, st.query_params.get("c"))
    sidebar_library(service)  # the reader's documents first
    conversations_slot = st.sidebar.container()  # filled last, once this run's question is saved
    settings = sidebar_settings(base)
    save_prefs(prefs, {**settings.model_dump(include=set(KEPT)), "agent_mode": st.session_state.agent_mode})

    st.title(":material/menu_book: Ask your documents")
    llm = cached_llm(settings.llm, settings.llm_url, settings.chat_model, settings.llm_api_key)
    warmed_llm(settings.llm, settings.llm_url, settings.chat_model, settings.llm_api_key)
    st.caption(f"Answers come only from your {len(service.documents())} document(s), with sources you can check. "
               f"Model: {settings.llm} · {llm.model}")

    for message in st.session_state.messages:
        with st.chat_message(message["role"]):
            if message.get("kind") == "answer":
                render_answer(message, service)
            elif message.get("kind") == "upload":  # the app's own note: its file names and reasons are escaped
                st.markdown(f":material/attach_file: {message['content']}")
            else:
                st.markdown(answer_markdown(message["content"]))

    # Read the chat box first (it is pinned to the bottom wherever it is called), so that suggestions are not
    # drawn above a question that is being answered in this same run.
    with st.bottom:  # the chat box and, beside it, the switch for how the question is answered
        box, mode = st.columns([5, 1], vertical_alignment="center")
        submitted = box.chat_input("Ask a question, or drop files here", accept_file="multiple",
                                   file_type=FILE_TYPES, max_upload_size=settings.max_upload_mb, submit_mode="stop")
        mode.toggle("Agent mode", key="agent_mode", help="Reason step by step with tools: document search, a "
                    "calculator and small Python programs for arithmetic")
    pending = st.session_state.pop("pending", None)
    if not st.session_state.messages and not pending and not submitted:
        # One container: on the next run the question takes its place at once, instead of the buttons staying
        # on screen, greyed out, until the answer is done.
        with st.container():
            questions = service.suggested_questions()
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
            st.session_state.messages.append(upload_message(add_files(service, submitted.files)))
        if (submitted.text or "").strip():  # asked on the rerun, with the library above as it is now
            st.session_state.pending = submitted.text
        st.rerun()

    def show_conversations() -> None:  # this tab's conversation saved, then the list drawn with it
        keep_conversation(conversations)
        with conversations_slot:
            sidebar_conversations(conversations)

    question = ((submitted.text if submitted is not None else "") or pending or "").strip()
    if question:
        chat = st.session_state.chat
        try:
            answer_question(question, settings, service, asked=show_conversations)
        finally:  # also when the reader stops the answer (every st call raises then) or opens another conversation
            conversations.keep(chat)
    else:
        show_conversations()


main()
