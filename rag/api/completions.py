"""``GET /v1/models`` and ``POST /v1/chat/completions``: the answering pipeline and agent mode as two models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from rag.answer.result import AnswerResult
from rag.api.chat import (
    AGENT_MODEL,
    DONE,
    MODELS,
    ChatRequest,
    Completion,
    question_and_history,
    request_settings,
    sse_error,
)
from rag.api.errors import APIError, log
from rag.api.gate import Busy, Ticket
from rag.api.state import state
from rag.llm import LLMError
from rag.service import AgentFinished, AgentStep, Delta, Finished
from rag.settings import Settings

router = APIRouter()

CREATED = 1_700_000_000  # the models' "created" (OpenAI's clients require the field; these models have no date)


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = CREATED
    owned_by: str = "rag"
    description: str = ""
    chat_model: str = ""  # the language model behind it (RAG_LLM, RAG_EMBEDDED_MODEL or RAG_LLM_MODEL)


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


def model_cards(settings: Settings) -> list[ModelCard]:
    return [ModelCard(id=name, description=text, chat_model=f"{settings.llm}:{settings.chat_model}")
            for name, text in MODELS.items()]


@router.get("/v1/models", response_model=ModelList, summary="The two models: the answering pipeline and agent mode")
def list_models(request: Request) -> ModelList:
    return ModelList(data=model_cards(state(request).settings))


@router.get("/v1/models/{model_id}", response_model=ModelCard, summary="One model")
def get_model(model_id: str, request: Request) -> ModelCard:
    for card in model_cards(state(request).settings):
        if card.id == model_id:
            return card
    raise APIError(404, f"no model {model_id!r}; the models are {', '.join(MODELS)}", "model_not_found")


@router.post(
    "/v1/chat/completions",
    summary="An answer from your documents, in OpenAI's shape (stream: server-sent events)",
    responses={200: {"description": "chat.completion, or with stream: chat.completion.chunk events ending with "
                                    "data: [DONE]; the extra field `rag` holds the citations and checks",
                     "content": {"application/json": {"schema": {"type": "object"}},
                                 "text/event-stream": {"schema": {"type": "string"}}}}},
)
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    server = state(request)
    if body.model not in MODELS:
        raise APIError(404, f"no model {body.model!r}; the models are {', '.join(MODELS)}", "model_not_found",
                       param="model")
    question, history = question_and_history(body.messages)
    settings = request_settings(server.settings, body)
    ok, detail = await run_in_threadpool(server.model_check)  # never block the event loop on the model server
    if not ok:
        raise APIError(503, f"the chat model is unavailable: {detail}", "model_unavailable")
    try:
        ticket: Ticket[Any] = server.answers.admit()
    except Busy as busy:
        raise APIError(429, str(busy), "rate_limit_exceeded", headers={"Retry-After": str(busy.retry_after)}) \
            from None
    completion = Completion(body.model)
    agent = body.model == AGENT_MODEL

    def events() -> Iterator[Any]:
        service = server.service.configured(settings)
        if agent:
            return service.run_agent(question, history, server.llm)
        return service.ask(question, history, server.llm)

    if body.stream:
        with_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(ticket, events, completion, settings, with_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    result = await _result(ticket, events)
    if result.error and not result.answer.strip():
        raise APIError(503, f"the chat model failed: {result.error}", "model_unavailable")
    return JSONResponse(completion.whole(result, settings))


def _final(event: Any) -> AnswerResult | None:
    if isinstance(event, Finished):
        return event.answer.result()
    if isinstance(event, AgentFinished):
        return event.result.result()
    return None


async def _result(ticket: Ticket[Any], events: Any) -> AnswerResult:
    result: AnswerResult | None = None
    try:
        async for event in ticket.events(events):
            result = _final(event) or result
    except LLMError as exc:
        raise APIError(503, f"the chat model failed: {exc}", "model_unavailable") from exc
    if result is None:
        raise APIError(500, "the answer ended without a result", "internal_error")
    return result


async def _stream(ticket: Ticket[Any], events: Any, completion: Completion, settings: Settings,
                  with_usage: bool) -> AsyncIterator[str]:
    """Chunks as the answer is written; agent steps as chunks with an empty delta and ``rag.step``; the sources
    and checks in the last chunk. A client that goes away closes this generator, which stops the answer."""
    yield completion.chunk({"role": "assistant", "content": ""})
    result: AnswerResult | None = None
    try:
        async for event in ticket.events(events):
            if isinstance(event, Delta) and event.text:
                yield completion.chunk({"content": event.text})
            elif isinstance(event, AgentStep):
                step = event.record().model_dump()
                yield completion.chunk({}, rag={"step": step})
            elif (final := _final(event)) is not None:
                result = final
                if isinstance(event, AgentFinished) and final.answer:
                    yield completion.chunk({"content": final.answer})
    except LLMError as exc:
        yield sse_error(503, f"the chat model failed: {exc}", "model_unavailable")
        yield DONE
        return
    except Exception:  # noqa: BLE001 - the status line is sent: the error goes in the stream
        log.exception("answer failed mid-stream")
        yield sse_error(500, "internal server error; the server's log has the details", "internal_error")
        yield DONE
        return
    if result is None:
        yield sse_error(500, "the answer ended without a result", "internal_error")
    elif result.error and not result.answer.strip():
        yield sse_error(503, f"the chat model failed: {result.error}", "model_unavailable")
    else:
        yield completion.last(result, settings, with_usage)
    yield DONE
