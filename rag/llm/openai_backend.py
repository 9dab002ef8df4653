"""The ``openai`` backend: any OpenAI-compatible chat server, vLLM first.

Why the ``openai`` client: it already does SSE parsing, timeouts and bounded retries with back-off on connection
errors and 5xx/429. What this module adds is the translation of its exceptions into ``LLMError`` messages a user
can act on, the detection of a stream that ends before the model finished, and two vLLM extras used when
present: ``max_model_len`` in ``GET /v1/models`` (the context window) and ``POST /tokenize`` (exact counts).
"""

from __future__ import annotations

import errno
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import openai

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
    TokenProbs,
    Usage,
)
from .registry import register

if TYPE_CHECKING:
    from rag.settings import Settings

DEFAULT_CONTEXT_WINDOW = 2048  # the launcher's --max-model-len; used when the server does not report one
CHARS_PER_TOKEN_ESTIMATE = 3  # conservative: English BPE averages ~4 characters a token


def _root_url(base_url: str) -> str:
    """``http://h:8000/v1`` -> ``http://h:8000`` (vLLM serves /tokenize and /health beside /v1)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _connection_reason(exc: BaseException) -> str:
    """The lowest-level cause of a connection failure, in words ("connection refused", "name not known", ...)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    reason = ""
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        text = str(cause).strip()
        if "refused" in text.lower():
            return "connection refused"
        if text and text != "Connection error.":
            reason = text
        cause = cause.__cause__ or cause.__context__
    return reason or type(exc).__name__


def _error_message(exc: openai.APIStatusError) -> str:
    """The server's own error text from an HTTP error body (vLLM and OpenAI nest it differently)."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner)
        if isinstance(inner, str):
            return inner
        if body.get("message"):
            return str(body["message"])
    return exc.message


@register("openai")
class OpenAILLM(LLM):
    """Chat over an OpenAI-compatible HTTP API (vLLM's ``api_server``, llama.cpp's server, OpenAI itself)."""

    title = "vLLM server (OpenAI-compatible)"
    remote = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        *,
        temperature: float = 0.1,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        context_window: int | None = None,
    ) -> None:
        super().__init__(temperature=temperature)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._root = _root_url(self.base_url)
        self._timeout = timeout
        # max_retries: the client retries connection errors, 408/409/429 and 5xx with back-off, then gives up.
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or "none",
            timeout=openai.Timeout(timeout, connect=connect_timeout),
            max_retries=max_retries,
        )
        # Cheap calls (health, tokenize, model list) must not sit through retries and long timeouts.
        self._quick = self._client.with_options(max_retries=0, timeout=openai.Timeout(5.0, connect=2.0))
        self._context_window = context_window
        self._server_context: int | None = None
        self._tokenize_works: bool | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAILLM:
        """Settings used: ``llm_url``, ``llm_model``, ``llm_api_key``, ``temperature``, ``llm_timeout``,
        ``llm_max_retries``, ``llm_context_window`` (None: ask the server)."""
        return cls(settings.llm_url, settings.llm_model, settings.llm_api_key, temperature=settings.temperature,
                   timeout=settings.llm_timeout, max_retries=settings.llm_max_retries,
                   context_window=settings.llm_context_window)

    # ---------------------------------------------------------------- model facts
    @property
    def context_window(self) -> int:
        """The server's ``max_model_len`` for this model, else the configured or default window.

        A configured value wins (the operator knows best); a server that is down yields the default rather
        than an error, since this is read while building a prompt, before the request that will report it.
        """
        if self._context_window is not None:
            return self._context_window
        if self._server_context is None:
            try:
                card = self._model_card(self._quick)
            except LLMError:
                return DEFAULT_CONTEXT_WINDOW
            length = card.get("max_model_len") if card else None
            self._server_context = int(length) if isinstance(length, int) and length > 0 else DEFAULT_CONTEXT_WINDOW
        return self._server_context

    def served_models(self) -> list[dict[str, Any]]:
        """``GET /v1/models`` as plain dicts (vLLM adds ``max_model_len``)."""
        return self._served(self._quick)

    def _served(self, client: openai.OpenAI) -> list[dict[str, Any]]:
        try:
            return [m.model_dump() for m in client.models.list().data]
        except openai.APIError as exc:
            raise self._translate(exc) from exc

    def _model_card(self, client: openai.OpenAI) -> dict[str, Any] | None:
        return next((m for m in self._served(client) if m.get("id") == self.model), None)

    def _not_served(self) -> LLMError:
        """After a 404 naming no known route: the "unknown model" error, listing what the server does serve.

        If even the model list is missing, the URL is not an OpenAI-compatible API (say, /v1 left off).
        """
        try:
            served = tuple(str(m.get("id")) for m in self._served(self._quick))
        except LLMUnavailable as exc:
            return exc
        except LLMError:
            served = ()
        if served and self.model in served:  # the model exists, so the 404 was about the path
            return LLMUnavailable(f"{self.base_url} answered 404 for a served model; check RAG_LLM_URL")
        listed = ", ".join(served) if served else "none listed"
        return LLMModelNotFound(
            f"model '{self.model}' is not served at {self.base_url} (served: {listed}); "
            "set RAG_LLM_MODEL to one of those",
            model=self.model,
            served=served,
        )

    # ---------------------------------------------------------------- errors
    def _translate(self, exc: openai.APIError, *, request_model: bool = False) -> LLMError:
        """Map an ``openai`` exception to the ``LLMError`` a user can act on."""
        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeout(
                f"the model server at {self.base_url} did not answer in time "
                f"(limit {self._timeout:.0f} s per request, 5 s for checks)"
            )
        if isinstance(exc, openai.APIConnectionError):
            return LLMUnavailable(f"cannot reach the model server at {self.base_url}: {_connection_reason(exc)}")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return LLMAuthError(
                f"the server at {self.base_url} rejected the API key (HTTP {exc.status_code}); check RAG_LLM_API_KEY"
            )
        if isinstance(exc, openai.NotFoundError):
            if request_model:
                return self._not_served()
            return LLMUnavailable(
                f"{self.base_url} has no OpenAI-compatible API here (HTTP 404); RAG_LLM_URL should end in /v1"
            )
        if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            message = _error_message(exc)
            if request_model and "model" in message.lower() and "not exist" in message.lower():
                return self._not_served()
            return LLMRequestError(f"the model server refused the request: {message}")
        if isinstance(exc, openai.APIStatusError):
            return LLMError(f"the model server at {self.base_url} failed (HTTP {exc.status_code}): {_error_message(exc)}")
        return LLMError(f"the model server at {self.base_url} failed: {exc}")

    # ---------------------------------------------------------------- generation
    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str], seed: int | None = None) -> Iterator[str | Usage | TokenProbs]:
        """Yield text deltas, then each token's probability (``logprobs``, which vLLM and OpenAI report; servers that
        do not are simply not checked for confidence), then the usage from the server's final usage chunk.

        A stream must end with a ``finish_reason``: one that raises mid-way (server killed, connection cut) or
        stops short of it becomes ``LLMStreamBroken`` with the number of deltas already received, so the UI can
        keep the partial text and say it is incomplete.
        """
        try:
            chunks = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop or None,
                stream=True,
                stream_options={"include_usage": True},
                logprobs=True,
                **({"seed": seed} if seed is not None else {}),  # vLLM draws a sampled answer alike for one seed
            )
        except openai.APIError as exc:
            raise self._translate(exc, request_model=True) from exc

        received = 0
        finish_reason: str | None = None
        usage: Usage | None = None
        probs: list[tuple[str, float]] = []
        try:
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        if choice.logprobs is not None and choice.logprobs.content:  # not the end-of-turn token's
                            probs += [(t.token, math.exp(t.logprob)) for t in choice.logprobs.content]
                        received += 1
                        yield choice.delta.content
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except openai.APIError as exc:
            if finish_reason is not None:  # only the trailing usage chunk was lost; the answer is whole
                if usage is not None:
                    yield usage
                return
            if received == 0 and isinstance(exc, openai.APITimeoutError):  # headers came, no token in time
                raise self._translate(exc) from exc
            reason = _connection_reason(exc) if isinstance(exc, openai.APIConnectionError) else str(exc)
            raise LLMStreamBroken(
                f"the answer stream broke off after {received} tokens ({reason}); the answer is incomplete",
                tokens=received,
            ) from exc
        finally:
            chunks.close()
        if finish_reason is None:
            raise LLMStreamBroken(
                f"the answer stream broke off after {received} tokens (it ended without a finish reason); "
                "the answer is incomplete",
                tokens=received,
            )
        if probs:
            yield TokenProbs(tuple(probs))
        if usage is not None:
            yield usage

    # ---------------------------------------------------------------- tokens, health
    def count_tokens(self, text: str) -> int:
        """Exact count from vLLM's ``POST /tokenize`` when the server has it; else a conservative estimate.

        Never raises: prompt budgeting must not fail because the server is briefly away.
        """
        if not text:
            return 0
        if self._tokenize_works is not False:
            try:
                result = self._quick.post(
                    f"{self._root}/tokenize",
                    cast_to=object,
                    body={"model": self.model, "prompt": text, "add_special_tokens": False},
                )
                count = result.get("count") if isinstance(result, dict) else None
                if isinstance(count, int):
                    self._tokenize_works = True
                    return count
                self._tokenize_works = False
            except openai.APIStatusError as exc:
                if exc.status_code in (404, 405):  # not vLLM: stop asking
                    self._tokenize_works = False
            except openai.APIError:
                pass  # server briefly unreachable: estimate this time, ask again next time
        return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)

    def health(self) -> tuple[bool, str]:
        """``(ok, detail)`` from one quick ``GET /v1/models``; never raises."""
        try:
            card = self._model_card(self._quick)
        except LLMError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the sidebar must render whatever happens
            return False, f"model server check failed: {exc}"
        if card is None:
            return False, str(self._not_served())
        length = card.get("max_model_len")
        window = f", context {length} tokens" if isinstance(length, int) else ""
        return True, f"'{self.model}' served at {self.base_url}{window}"
