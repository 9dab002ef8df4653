"""Language-model backends behind one interface: ``get_llm()`` returns the one the settings choose.

    llm = get_llm()
    answer = llm.stream([{"role": "user", "content": "Hi"}], max_tokens=64)
    for delta in answer:
        print(delta, end="")
    print(answer.usage)                         # this request's token counts, once the stream has ended

``base`` holds the interface and its errors, ``registry`` the backends by name, ``models`` the embedded models and
how their GGUF files are assembled. ``RAG_LLM=embedded`` (default): llama.cpp in-process on
``RAG_EMBEDDED_MODEL`` (Qwen2.5-Coder-1.5B, or smollm2-135m), no network. ``RAG_LLM=openai``: an OpenAI-compatible server (vLLM:
``make vllm``) at ``RAG_LLM_URL`` with ``RAG_LLM_MODEL`` and ``RAG_LLM_API_KEY``. Every failure is an ``LLMError``
whose message can be shown to the user as is.
"""

from __future__ import annotations

from .base import (
    LLM,
    Generation,
    LLMAuthError,
    LLMError,
    LLMModelNotFound,
    LLMRequestError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
    Message,
    TokenProbs,
    Usage,
)
from .embedded import EmbeddedLLM
from .models import EMBEDDED_MODELS, model_index, model_title
from .openai_backend import OpenAILLM
from .registry import backend_class, backend_names, get_llm, register

__all__ = [
    "LLM",
    "EMBEDDED_MODELS",
    "EmbeddedLLM",
    "Generation",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFound",
    "LLMRequestError",
    "LLMStreamBroken",
    "LLMTimeout",
    "LLMUnavailable",
    "Message",
    "OpenAILLM",
    "TokenProbs",
    "Usage",
    "backend_class",
    "backend_names",
    "get_llm",
    "model_index",
    "model_title",
    "register",
]
