"""The storage interface: what the retriever, the answerer and ingest ask of an index, whatever holds it.

``rag.index.store.Store`` (FAISS + SQLite in one folder) is the embedded implementation; another backend (Milvus)
implements the same members. The contract every implementation keeps (``tests/test_store.py`` runs it against each
through the ``store_factory`` fixture):
- Documents in and out: ``put_document`` stores a file's chunks with their vectors, replacing an earlier version of
  the same file (its identity is its key, ``rag.index.identity.document_key``: the same on every machine, whatever
  path or link it was read through; the document keeps the local path it was last read from);
  ``remove_document`` deletes by label, key or path; ``documents``, ``document`` and ``document_at`` read them
  back. An index written before keys (plain absolute paths) reads as this host's files. Each write is all or nothing, and happens inside ``writer()``.
- Search: ``search_dense`` (cosine similarity of unit vectors) and ``search_sparse`` (BM25 over the stems of
  ``rag.index.keyword.tokenize``) return ``(chunk id, score)``, best first; ``chunks`` turns ids into rows.
- Term statistics: ``idf`` of stemmed terms over the chunks (the evidence signal's word weights).
- A read snapshot: every read inside ``with reading():`` sees one committed state; a concurrent write is wholly seen
  or not at all, and no id deleted before the read began comes back.
- The writer lock: ``with writer(timeout):`` is the only writer (across processes); a busy index raises
  ``StoreError`` after ``timeout`` seconds.
- Identity: ``embed_model`` and ``dim`` of the vectors it holds (an index refuses others), ``dir`` the local folder
  it lives in or keeps its state in (``rag.index.embedder.embedder_for`` reads the recorded model there).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.index.records import ChunkRecord, DocumentInfo, NewChunk, Stored


@runtime_checkable
class Index(Protocol):
    """An index of documents, their chunks and vectors (see the module's docstring for the contract)."""

    dir: Path
    embed_model: str
    dim: int

    # --- reading -------------------------------------------------------------------------------------------------
    def reading(self) -> AbstractContextManager[None]:
        """One consistent view of the index for every read inside (nested uses share it)."""
        ...

    def documents(self, name: str | None = None) -> list[DocumentInfo]:
        """All documents by label, or the one labelled ``name`` (an empty list if there is none)."""
        ...

    def document(self, name: str) -> DocumentInfo | None:
        """The document labelled ``name``."""
        ...

    def document_at(self, path: str | Path) -> DocumentInfo | None:
        """The document of the file at ``path`` (through its key; a key is taken as it is)."""
        ...

    def chunk_count(self) -> int:
        """How many chunks the index holds."""
        ...

    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]:
        """The chunks with these ids, in the order asked (ids no longer stored are left out)."""
        ...

    def search_dense(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks."""
        ...

    def search_sparse(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best keyword matches."""
        ...

    def idf(self, terms: list[str]) -> list[float]:
        """Inverse document frequency of stemmed terms over the chunks."""
        ...

    def vectors_by_sha(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunk texts already embedded once (by the text's sha256), so that an edited document
        re-embeds only what changed."""
        ...

    # --- writing -------------------------------------------------------------------------------------------------
    def writer(self, timeout: float = 600) -> AbstractContextManager[Index]:
        """Hold the index's write lock (``StoreError`` when another writer keeps it longer than ``timeout``)."""
        ...

    def put_document(
        self,
        *,
        path: str | Path,
        base: str,
        kind: str,
        sha256: str,
        size: int,
        pages: int | None,
        recipe: str,
        chunks: Sequence[NewChunk],
    ) -> Stored:
        """Store the document read from ``path`` and its chunks, replacing an earlier version of the same file;
        ``base`` is the shortest label it may have."""
        ...

    def remove_document(self, name: str) -> bool:
        """Delete a document (by label, key, or the path of its file); False if there is none."""
        ...

    def close(self) -> None:
        ...
