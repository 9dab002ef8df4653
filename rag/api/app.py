"""The FastAPI application: the routes, the key and size guards around them, errors in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from rag.api import completions, documents
from rag.api.errors import ErrorBody, install_error_handlers
from rag.api.guards import BodyLimit, KeyGuard
from rag.api.state import ServerState, state
from rag.errors import RagError
from rag.settings import Settings

# Every route may answer these (the guards and the queue stand before all of them); each route adds its own.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in {
        400: "a malformed request (OpenAI's invalid_request_error)",
        401: "a missing or wrong API key",
        404: "no such model, document or endpoint",
        413: "a request body over the limit",
        429: "the queue for the model is full: retry after the Retry-After header's seconds",
        500: "an unexpected server error",
        503: "the chat model or the index is unavailable",
    }.items()
}


class IndexHealth(BaseModel):
    dir: str
    store: str  # "embedded" (FAISS + SQLite in ``dir``) or "milvus"
    milvus_uri: str | None  # the Milvus server, when the store is Milvus
    ok: bool  # False when the store cannot be read (a Milvus server down): ``detail`` says why
    detail: str
    documents: int | None
    chunks: int | None


class ModelHealth(BaseModel):
    backend: str
    model: str
    ok: bool
    detail: str


class QueueHealth(BaseModel):
    running: int
    waiting: int
    capacity: int
    cancelled: int


class Health(BaseModel):
    status: str  # "ok", or "degraded" when the chat model cannot answer or the index cannot be read
    index: IndexHealth
    model: ModelHealth
    queue: QueueHealth
    auth: bool  # whether API keys are required


def create_app(settings: Settings, server: ServerState | None = None) -> FastAPI:
    """The API on the index of ``settings`` (``server``: an already open one)."""
    server = server or ServerState.open(settings)
    keys = settings.api_key_list
    app = FastAPI(
        title="Document Q&A API",
        version="1",
        summary="OpenAI-compatible chat with citations over your documents, plus documents and search",
        description="Send `Authorization: Bearer KEY` when the server has keys (RAG_API_KEYS). Errors: "
                    '`{"error": {"message", "type", "code"}}`. See docs/api.md.',
        responses=COMMON_ERRORS,
        redoc_url=None,
    )
    app.state.rag = server
    app.include_router(completions.router)
    app.include_router(documents.router)
    install_error_handlers(app)

    @app.get("/health", response_model=Health, summary="The index, the chat model and the queue")
    async def health(request: Request) -> Health:
        return await run_in_threadpool(health_of, state(request), bool(keys))

    # Added last, so outermost: the key is checked first, before the body is read.
    app.add_middleware(BodyLimit, upload_bytes=settings.api_max_body_mb * 1024 * 1024,
                       other_bytes=settings.api_max_json_kb * 1024)
    app.add_middleware(KeyGuard, keys=keys)
    return app


def index_health(server: ServerState) -> IndexHealth:
    """The index's counts, or why it cannot be read (the store's own error names the server)."""
    s = server.settings
    where = {"dir": str(s.index_dir), "store": s.store, "milvus_uri": s.milvus_uri if s.store == "milvus" else None}
    try:
        docs = server.service.documents()
    except RagError as exc:
        return IndexHealth(**where, ok=False, detail=str(exc), documents=None, chunks=None)
    return IndexHealth(**where, ok=True, detail="", documents=len(docs), chunks=sum(d.chunks for d in docs))


def health_of(server: ServerState, auth: bool) -> Health:
    index = index_health(server)
    llm = server.llm
    ok, detail = llm.health()
    gate = server.answers.state()
    return Health(
        status="ok" if ok and index.ok else "degraded",
        index=index,
        model=ModelHealth(backend=llm.backend, model=llm.model, ok=ok, detail=detail),
        queue=QueueHealth(running=gate.running, waiting=gate.waiting, capacity=gate.capacity,
                          cancelled=gate.cancelled),
        auth=auth,
    )
