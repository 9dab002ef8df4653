"""OpenAI's chat completion shapes, and an answer (``AnswerResult``) in them.

The message content is the answer as the pipeline wrote it, ``[n]`` markers kept. The extra field ``rag`` (which
OpenAI's clients ignore, and keep in ``model_extra``) carries what the page shows beside it: the citations, whether
and why it was refused, whether the checks confirmed it. When streaming, it arrives in the last chunk before
``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.answer.result import AnswerResult
from rag.api.errors import APIError, error_body
from rag.llm import Message
from rag.settings import Settings

ANSWER_MODEL = "rag"  # the answering pipeline: retrieve, answer from the passages, check
AGENT_MODEL = "rag-agent"  # agent mode: the model searches and reasons in steps with tools
MODELS = {ANSWER_MODEL: "answers from your documents with citations, checked against them",
          AGENT_MODEL: "agent mode: searches your documents in steps, with a calculator and sandboxed Python"}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's request; fields it has that the pipeline has no use for (``n``, ``top_p``, ``user``...) are
    accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description=f"{ANSWER_MODEL!r} or {AGENT_MODEL!r} (GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1, description="the last one is the question; the user and "
                                        "assistant turns before it make follow-ups understood, as in the page")
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def question_and_history(messages: list[ChatMessage]) -> tuple[str, list[Message]]:
    """The question (the last message, a user's) and the conversation before it as the page keeps it: the user's
    questions and the answers (the pipeline's own system prompt replaces the client's)."""
    last = messages[-1]
    if last.role != "user" or not last.text.strip():
        raise APIError(400, "the last message must be the user's question, with text", "invalid_messages",
                       param="messages")
    history: list[Message] = [{"role": m.role, "content": m.text} for m in messages[:-1]
                              if m.role in ("user", "assistant") and m.text.strip()]
    return last.text.strip(), history


def request_settings(settings: Settings, request: ChatRequest) -> Settings:
    """The settings for one request: its temperature, and its token limit under the server's cap."""
    updates: dict[str, object] = {}
    if request.temperature is not None:
        updates["temperature"] = request.temperature
    wanted = request.max_completion_tokens or request.max_tokens
    cap = settings.api_max_tokens
    limit = max(16, min(wanted or settings.max_answer_tokens, cap))
    updates["max_answer_tokens"] = limit
    updates["agent_max_tokens"] = max(64, min(wanted or settings.agent_max_tokens, max(cap, 64)))
    return settings.changed(**updates)


def rag_field(result: AnswerResult) -> dict[str, Any]:
    """The extra field: the answer's sources and checks."""
    return {
        "mode": result.mode,
        "answer": result.answer,  # the final text (a withheld answer's differs from what was streamed)
        "citations": [{"n": c.n, "source": c.source, "page": c.page, "text": c.text, "support": c.support,
                       "cited": c.cited, "kind": c.kind, "section": c.section} for c in result.citations],
        "refused": result.refused,
        "refused_by": result.refused_by,
        "verified": result.verified,
        "checks": [*result.checks, *(f"not in its sources: {u}" for u in result.unverified)],
        "unverified": result.unverified,
        "confidence": result.confidence,
        "error": result.error,
        "backend": result.backend,
        "model": result.model,
        "seconds": round(result.seconds, 3),
    }


def finish_reason(result: AnswerResult, settings: Settings) -> str:
    if result.stopped_reason == "max_tokens":
        return "length"
    if result.usage and result.usage.completion_tokens >= settings.max_answer_tokens:
        return "length"
    return "stop"


def usage(result: AnswerResult) -> dict[str, int]:
    prompt = result.usage.prompt_tokens if result.usage else 0
    completion = result.usage.completion_tokens if result.usage else (result.tokens or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Completion:
    """One response's identity: its id, time and model, shared by all its chunks."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def whole(self, result: AnswerResult, settings: Settings) -> dict[str, Any]:
        """The non-streamed response."""
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                         "finish_reason": finish_reason(result, settings), "logprobs": None}],
            "usage": usage(result),
            "rag": rag_field(result),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        """One server-sent event of the stream."""
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return sse(body)

    def last(self, result: AnswerResult, settings: Settings, with_usage: bool) -> str:
        extra: dict[str, Any] = {"rag": rag_field(result)}
        if with_usage:
            extra["usage"] = usage(result)
        return self.chunk({}, finish_reason(result, settings), **extra)


def sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def sse_error(status: int, message: str, code: str) -> str:
    """An error after the stream began (the status line is sent): the ``openai`` client raises it as an
    ``APIError``."""
    return sse(error_body(status, message, code))


DONE = "data: [DONE]\n\n"
