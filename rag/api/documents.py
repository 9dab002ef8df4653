"""``/v1/documents`` (upload, list, delete) and ``/v1/search``: the page's library through the same service.

Uploads go through ``Service.upload`` exactly as the page's do: the same per-file limit (``RAG_MAX_UPLOAD_MB``), the
same sanitised names in the upload folder, the same report. A document is named in a path by its label (as listed,
e.g. ``report.pdf`` or ``notes/a.md``) or by its numeric ``id``; a label wins over an id that reads the same.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rag.api.errors import APIError
from rag.api.gate import Busy
from rag.api.state import ServerState, state
from rag.service import DocumentInfo, IngestReport, StoreError, Upload

router = APIRouter()


class FailureModel(BaseModel):
    path: str
    error: str
    type: str | None = None


class NoteModel(BaseModel):
    path: str
    note: str


class ReportModel(BaseModel):
    """``python -m ingest --json``'s report."""

    added: int
    updated: int
    unchanged: int
    removed: int
    failed: list[FailureModel]
    chunks: int
    seconds: float
    ocr_pages: int
    notes: list[NoteModel]


class DocumentModel(BaseModel):
    """``python -m ingest --list --json``'s row, with the document's numeric id."""

    id: int
    name: str
    kind: str
    pages: int | None
    chunks: int
    size: int
    path: str | None
    added_at: str
    updated_at: str


class DocumentList(BaseModel):
    object: str = "list"
    data: list[DocumentModel]


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=500)


class SearchRow(BaseModel):
    """``python -m rag.search --json``'s row."""

    rank: int
    score: float
    source: str
    page: int | None
    chunk_id: int
    text: str
    kind: str | None = None  # the document's kind (pdf, pptx, ...): names its pages or slides
    section: str | None = None  # the heading the passage sits under, when the document has one


def document_row(d: DocumentInfo) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "kind": d.kind, "pages": d.pages, "chunks": d.chunks, "size": d.size,
            "path": d.path, "added_at": d.added_at, "updated_at": d.updated_at}


@router.get("/v1/documents", response_model=DocumentList, summary="The documents in the index")
async def list_documents(request: Request) -> dict[str, Any]:
    docs = await run_in_threadpool(state(request).service.documents)
    return {"object": "list", "data": [document_row(d) for d in docs]}


@router.post("/v1/documents", response_model=ReportModel,
             summary="Upload and ingest files (multipart field `files`, one or more); returns the ingest report")
async def upload_documents(request: Request, files: list[UploadFile] = File(..., min_length=1)) -> Any:
    server = state(request)
    try:
        ticket = server.uploads.admit()
    except Busy as busy:
        raise APIError(429, f"another upload is being ingested; retry after {busy.retry_after} s",
                       "rate_limit_exceeded", headers={"Retry-After": str(busy.retry_after)}) from None

    def ingest() -> Any:  # the files were spooled to disk by the parser: read them only when it is their turn
        uploads = [Upload(f.filename or "upload", f.file.read()) for f in files]
        yield server.service.upload(uploads)

    report: IngestReport | None = None
    try:
        async for done in ticket.events(ingest):
            report = done
    except StoreError as exc:
        raise APIError(503, f"the index is busy: {exc}", "index_busy") from exc
    finally:
        for f in files:
            await f.close()
    assert report is not None
    return upload_response(report)


def upload_response(report: IngestReport) -> Any:
    """The report; when no file could be kept, an error (413 when every file was over the size limit) that
    carries it."""
    if report.failed and not (report.added or report.updated or report.unchanged):
        too_big = all("MB limit" in f.error for f in report.failed)
        status = 413 if too_big else 400
        reasons = "; ".join(f"{f.path}: {f.error}" for f in report.failed)
        raise APIError(status, f"no file was ingested: {reasons}", "file_too_large" if too_big else "upload_failed",
                       param="files", extra={"report": report.to_json()})
    return JSONResponse(report.to_json())


def find_document(server: ServerState, doc_id: str) -> str:
    docs = server.service.documents()
    for d in docs:
        if d.name == doc_id:
            return d.name
    if doc_id.isdigit():
        for d in docs:
            if d.id == int(doc_id):
                return d.name
    raise APIError(404, f"no document {doc_id!r} (name it by its label or id, as GET /v1/documents lists them)",
                   "document_not_found", param="id")


@router.delete("/v1/documents/{doc_id:path}", response_model=ReportModel,
               summary="Delete a document (by label or numeric id) from the index and its uploaded copy")
async def delete_document(doc_id: str, request: Request) -> Any:
    server = state(request)
    name = await run_in_threadpool(find_document, server, doc_id)
    try:
        report = await run_in_threadpool(server.service.delete, [name])
    except StoreError as exc:
        raise APIError(503, f"the index is busy: {exc}", "index_busy") from exc
    if not report.removed:
        reasons = "; ".join(f.error for f in report.failed) or "not removed"
        raise APIError(404, f"{name}: {reasons}", "document_not_found", param="id")
    return JSONResponse(report.to_json())


@router.post("/v1/search", response_model=list[SearchRow], summary="The passages the retriever finds (rag.search)")
async def search(body: SearchRequest, request: Request) -> Any:
    rows = await run_in_threadpool(state(request).service.search, body.query, body.k)
    return JSONResponse(rows)
