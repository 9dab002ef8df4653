"""The heavy objects every browser tab shares: the application service (documents and index), the chat models, the
kept conversations."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import streamlit as st

from rag.answer.answerer import warm_up
from rag.conversations import ConversationStore
from rag.llm import LLM, get_llm
from rag.service import Service
from rag.settings import Settings


def environment_settings() -> Settings:
    """The settings the environment gives, read again whenever a ``RAG_*`` variable changed (so a change applies
    without a restart), not on every run: reading them takes about 5 ms, on the way to every answer."""
    return _settings_of(tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("RAG_"))))


@st.cache_resource(show_spinner=False, max_entries=8)
def _settings_of(environment: tuple[tuple[str, str], ...]) -> Settings:  # noqa: ARG001 - the cache's key
    return Settings()


@st.cache_resource(show_spinner="Opening the index…")
def cached_service(index_dir: str) -> Service:
    return Service.open(Settings(index_dir=Path(index_dir)))  # re-reads itself whenever another writer changed it


@st.cache_resource(show_spinner=False)
def cached_llm(backend: str, url: str, model: str, api_key: str) -> LLM:
    return get_llm(Settings().changed(llm=backend, llm_url=url, llm_api_key=api_key,
                                      **{Settings.chat_model_field(backend): model}))


@st.cache_resource(show_spinner=False)
def warmed_llm(backend: str, url: str, model: str, api_key: str) -> threading.Thread:
    """Once per process and model: load it and evaluate the answer prompt's head in the background, while the
    person reads the page, so the first question is answered as fast as the next ones."""
    thread = threading.Thread(target=warm_up, args=(cached_llm(backend, url, model, api_key),), daemon=True,
                              name=f"warm-{model}")
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def cached_conversations(path: str) -> ConversationStore:
    return ConversationStore(Path(path))


@st.cache_data(ttl=15, show_spinner=False)
def llm_health(backend: str, url: str, model: str, api_key: str) -> tuple[bool, str]:
    return cached_llm(backend, url, model, api_key).health()
