"""Language-model backends behind one interface: ``get_llm()`` returns the one the settings choose.

    llm = get_llm()
    for delta in llm.stream([{"role": "user", "content": "Hi"}], max_tokens=64):
        print(delta, end="")
    print(llm.last_usage)

``RAG_LLM=embedded`` (default): llama.cpp in-process on the bundled SmolLM2 GGUF, no network.
``RAG_LLM=openai``: an OpenAI-compatible server (vLLM: ``make vllm``) at ``RAG_LLM_URL`` with ``RAG_LLM_MODEL``
and ``RAG_LLM_API_KEY``. Every failure is an ``LLMError`` whose message can be shown to the user as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    LLM,
    LLMAuthError,
    LLMError,
    LLMModelNotFound,
    LLMRequestError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
    Message,
    Usage,
)
from .embedded import EmbeddedLLM
from .openai_backend import OpenAILLM

if TYPE_CHECKING:
    from rag.settings import Settings

__all__ = [
    "LLM",
    "EmbeddedLLM",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFound",
    "LLMRequestError",
    "LLMStreamBroken",
    "LLMTimeout",
    "LLMUnavailable",
    "Message",
    "OpenAILLM",
    "Usage",
    "get_llm",
]


def get_llm(settings: Settings | None = None) -> LLM:
    """The backend the settings name. Cheap: nothing loads or connects until the first request.

    Settings used: ``llm``, ``llm_url``, ``llm_model``, ``llm_api_key``, ``temperature``, ``llm_timeout``,
    ``llm_max_retries``, ``llm_context_window`` (None: ask the server), ``llm_n_ctx``, ``llm_threads``,
    ``llm_model_path`` (None: the bundled GGUF).
    """
    if settings is None:
        from rag.settings import get_settings

        settings = get_settings()
    if settings.llm == "openai":
        return OpenAILLM(
            settings.llm_url,
            settings.llm_model,
            settings.llm_api_key,
            temperature=settings.temperature,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            context_window=settings.llm_context_window,
        )
    if settings.llm == "embedded":
        return EmbeddedLLM(
            settings.llm_model_path,
            n_ctx=settings.llm_n_ctx,
            n_threads=settings.llm_threads,
            temperature=settings.temperature,
        )
    raise LLMError(f"unknown LLM backend {settings.llm!r}; set RAG_LLM to 'embedded' or 'openai'")
