"""The one interface every LLM backend offers, and the errors it raises.

The answer step and the UI talk only to this: they stream text deltas from a ``Generation`` (which also carries that
request's token usage once it ends, so two browser sessions sharing one model never read each other's counts),
budget the prompt with ``count_tokens``/``context_window`` and show ``health()`` in the sidebar. Backends differ (llama.cpp
in-process, an OpenAI-compatible server such as vLLM), but their failures are translated into the ``LLMError``
subclasses below, whose messages are written for a person reading the UI, not for a stack trace.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rag.errors import LLMError  # the model's family, defined with the others; imported from here too

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


@dataclass(frozen=True)
class TokenProbs:
    """How sure the model was of each token it wrote: (token text, probability it had), in order. Backends that
    can tell (llama.cpp in-process, vLLM through ``logprobs``) send it once the stream ends;
    ``rag.answer.confidence`` reads it."""

    tokens: tuple[tuple[str, float], ...]


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


class Generation(Iterator[str]):
    """One request's answer: iterate it for the text deltas; ``usage`` (and ``token_probs`` where the backend can
    tell) are set when the stream has ended.

    The caller owns it, so the usage it reads is its own request's, whoever else uses the same model meanwhile.
    Backends feed it from a generator that yields ``str`` deltas and, last, a ``TokenProbs`` and one ``Usage``.
    """

    def __init__(self, chunks: Iterator[str | Usage | TokenProbs]) -> None:
        self._chunks = chunks
        self.usage: Usage | None = None
        self.token_probs: TokenProbs | None = None

    def __next__(self) -> str:
        while True:
            item = next(self._chunks)
            if isinstance(item, Usage):
                self.usage = item
                continue
            if isinstance(item, TokenProbs):
                self.token_probs = item
                continue
            return item

    def text(self) -> str:
        """Read the rest of the answer and return it whole."""
        return "".join(self)

    def close(self) -> None:
        """Stop early (a user pressed stop): the backend frees the model for other requests."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class LLM(ABC):
    """What the answer step calls. ``stream`` returns a ``Generation`` (text deltas, then that request's usage);
    ``complete`` joins it. Each backend implements ``_generate`` and the other abstract methods."""

    backend: str = ""  # set by ``@register``
    model: str = ""
    # What the app's settings show for a backend, so a new one needs no change there:
    title: ClassVar[str] = ""  # its name in the backend picker
    remote: ClassVar[bool] = False  # True: reached at a URL, with a model name and an API key to type in
    rewrites_queries: ClassVar[bool] = True  # able to make a follow-up question standalone ("auto" rewrite mode)

    def __init__(self, *, temperature: float = 0.1) -> None:
        self.temperature = temperature

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> LLM:
        """The backend configured from the ``RAG_*`` settings."""

    @property
    @abstractmethod
    def context_window(self) -> int: ...

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 512,
        temperature: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> Generation:
        """The answer to ``messages`` as it is written. Malformed messages fail here, before any request.
        ``seed``: a sampled answer (temperature above 0) drawn the same way each time."""
        check_messages(messages)
        return Generation(self._generate(messages, max_tokens=max_tokens, temperature=self._temperature(temperature),
                                         stop=list(stop or []), seed=seed))

    @abstractmethod
    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str], seed: int | None = None) -> Iterator[str | Usage | TokenProbs]:
        """Text deltas, then (optionally) one ``TokenProbs``, then one ``Usage`` (omitted only when the backend cannot
        tell)."""

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 512,
        temperature: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> str:
        """The whole answer at once (tests, evaluation, the agent's tool calls)."""
        return self.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop, seed=seed).text()

    def reply_logprobs(self, messages: list[Message], reply: str) -> list[float] | None:
        """The log-probability of each token of ``reply`` as the model's turn after ``messages`` (the model reads
        ``reply``, it does not write it). None: this backend cannot tell (the default)."""
        return None

    def warm(self, head: list[Message]) -> None:
        """Get ready for prompts that open with ``head``: load the model, evaluate ``head``. Backends with nothing
        to prepare (a server caches prefixes on its own) do nothing."""

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
