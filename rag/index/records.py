"""What the index stores and hands back: documents, chunks on their way in and out, and the errors it raises."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import StoreError  # the storage family, defined with the others; imported from here too


class NoIndexError(StoreError):
    """A read was asked of a folder that holds no index (a mistyped ``--index``): nothing is created there."""

    def __init__(self, index_dir: Path) -> None:
        super().__init__(
            f"{index_dir}: there is no index at this path (`python -m ingest PATH --index {index_dir}` creates one)"
        )
        self.index_dir = index_dir


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    name: str  # its label: short, unique in the index (its path relative to the folder it was ingested from)
    path: str | None  # the local path the last writer read its file from (another host's, for a file of another)
    kind: str
    sha256: str
    size: int
    pages: int | None
    chunks: int
    recipe: str
    added_at: str
    updated_at: str
    base: str | None = None  # the shortest label it may have (the label grows when another document shares it)
    key: str | None = None  # its identity, the same on every machine (rag.index.identity.document_key)


@dataclass(frozen=True)
class Stored:
    """What a document's write did."""

    label: str  # the document's label right after the write
    replaced: bool  # an earlier version of the same file was replaced


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    source: str  # the document's label
    page: int | None
    section: str | None
    start: int
    end: int
    ordinal: int
    text: str
    context: str | None = None  # indexed with the text, e.g. its section heading
    kind: str | None = None  # its document's kind (pdf, pptx, ...): names its pages (rag.answer.result.source_label)


@dataclass(frozen=True)
class NewChunk:
    """A chunk ready to store: its text, where it came from and its vector."""

    text: str
    page: int | None
    section: str | None
    start: int
    end: int
    n_tokens: int
    context: str | None  # indexed with the text (e.g. its section heading) but not part of it
    sha256: str
    vector: np.ndarray


def indexed_text(text: str, context: str | None) -> str:
    """What both search structures see for a chunk: its context line (if any), then its text."""
    return f"{context}\n{text}" if context else text


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
