"""The one interface every LLM backend offers, and the errors it raises.

The answer step and the UI talk only to this: they stream text deltas, read ``last_usage`` afterwards, budget the
prompt with ``count_tokens``/``context_window`` and show ``health()`` in the sidebar. Backends differ (llama.cpp
in-process, an OpenAI-compatible server such as vLLM), but their failures are translated into the ``LLMError``
subclasses below, whose messages are written for a person reading the UI, not for a stack trace.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.settings import Settings

Message = dict[str, str]
ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True)
class Usage:
    """Token counts of one finished request (as the backend counted them)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMError(RuntimeError):
    """Any failure of the language model, with a message fit to show a user."""


class LLMUnavailable(LLMError):
    """The model cannot be reached or loaded: server down, refused connection, model file or library missing."""


class LLMTimeout(LLMUnavailable):
    """The server did not answer in time."""


class LLMAuthError(LLMError):
    """The server rejected the API key."""


class LLMModelNotFound(LLMError):
    """The requested model is not served by this server."""

    def __init__(self, message: str, *, model: str = "", served: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.model = model
        self.served = served


class LLMRequestError(LLMError):
    """The backend refused this request (e.g. the prompt does not fit the context window)."""


class LLMStreamBroken(LLMError):
    """The answer stream ended before the model finished."""

    def __init__(self, message: str, *, tokens: int = 0) -> None:
        super().__init__(message)
        self.tokens = tokens


class LLM(ABC):
    """What the answer step calls. ``stream`` yields text deltas and sets ``last_usage`` once it finishes;
    ``complete`` joins ``stream``. Each backend implements the abstract methods."""

    backend: str = ""  # set by ``@register``
    model: str = ""

    def __init__(self, *, temperature: float = 0.1) -> None:
        self.temperature = temperature
        self.last_usage: Usage | None = None

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> LLM:
        """The backend configured from the ``RAG_*`` settings."""

    @property
    @abstractmethod
    def context_window(self) -> int: ...

    @abstractmethod
    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 512,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str]: ...

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 512,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> str:
        """The whole answer at once (tests, evaluation, the agent's tool calls)."""
        return "".join(self.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop))

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abstractmethod
    def health(self) -> tuple[bool, str]: ...

    def _temperature(self, temperature: float | None) -> float:
        return self.temperature if temperature is None else temperature

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r} model={self.model!r}>"


def check_messages(messages: list[Message]) -> None:
    """Fail early and clearly on a malformed chat (a typo here otherwise surfaces as a server 400)."""
    if not messages:
        raise LLMRequestError("no messages to send to the model")
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise LLMRequestError(
                f"message {i} must be {{'role': 'system'|'user'|'assistant'|'tool', 'content': str}}, got {message!r}"
            )
