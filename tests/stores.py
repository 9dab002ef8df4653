"""The index backends the store contract tests run against (``store_factory`` in ``tests/conftest.py``).

Each backend opens an index for a test and checks that its own search structures agree with its rows. A second
backend adds a class here (Milvus: made for the session's server by ``backend_for``): every test written against
the factory, or the ``store`` fixture built on it, then runs once per backend.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from rag.index.base import Index
from rag.index.milvus import MilvusStore
from rag.index.store import DensePolicy, Store

# The embedded store's policy for "merge often": every few writes folded into a new dense snapshot.
MERGE_OFTEN = DensePolicy(exact_limit=10**9, merge_rows=7, merge_share=0.0)


class Backend(Protocol):
    name: str

    def open(self, folder: Path, *, embed_model: str, dim: int, merge_often: bool = False) -> Index:
        """The index kept in (or for) ``folder``, made when there is none; ``merge_often`` folds writes into the
        search structures as often as the backend can (a backend without such a step ignores it)."""
        ...

    def assert_consistent(self, store: Index) -> None:
        """Fail unless the backend's search structures hold exactly the rows it stores."""
        ...

    def cli_env(self) -> dict[str, str]:
        """The environment a command in a child process needs to open this backend's index for the same folder."""
        ...


def keyword_index_matches_the_rows(db: sqlite3.Connection) -> bool:
    """FTS5's integrity check, against the chunk rows too (rank 1, for an external-content table): it raises on a
    missing or stale posting."""
    try:
        db.execute("INSERT INTO keyword(keyword, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError:
        return False
    return True


class Embedded:
    """FAISS + SQLite in one folder: ``rag.index.store.Store``."""

    name = "embedded"

    def cli_env(self) -> dict[str, str]:
        return {"RAG_STORE": "embedded"}

    def open(self, folder: Path, *, embed_model: str, dim: int, merge_often: bool = False) -> Index:
        return Store(folder, embed_model=embed_model, dim=dim, policy=MERGE_OFTEN if merge_often else None)

    def assert_consistent(self, store: Index) -> None:
        assert isinstance(store, Store)
        rows = {r[0] for r in store._db.execute("SELECT id FROM chunks")}
        assert store.dense_ids() == rows, "dense search returns exactly the stored chunks"
        assert keyword_index_matches_the_rows(store._db), "the keyword index disagrees with the chunk rows"


class Milvus:
    """Collections on a Milvus server (``rag.index.milvus.MilvusStore``), the session's ``milvus_server``; each
    folder names its own collections, so a test's indexes never meet another test's."""

    name = "milvus"

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def cli_env(self) -> dict[str, str]:
        return {"RAG_STORE": "milvus", "RAG_MILVUS_URI": self.uri}

    def open(self, folder: Path, *, embed_model: str, dim: int, merge_often: bool = False) -> Index:
        return MilvusStore(folder, uri=self.uri, embed_model=embed_model, dim=dim)  # no merge step to hurry

    def assert_consistent(self, store: Index) -> None:
        """Every chunk row in the collection is of a document's current version or of one retired for deletion (no
        orphan of an interrupted write), each document holds as many rows as it says, and both searches reach
        every current row."""
        assert isinstance(store, MilvusStore)
        retired = store.retired_versions()
        every = store.stored_chunks()
        rows = [r for r in every if r["version"] not in retired]
        with store.reading():
            docs = {d.id: d for d in store.documents()}
            versions = store._view().versions
            assert all(versions.get(r["doc_id"]) == r["version"] for r in rows), "rows of a version no document names"
            per_doc: dict[int, int] = {}
            for r in rows:
                per_doc[r["doc_id"]] = per_doc.get(r["doc_id"], 0) + 1
            assert per_doc == {i: d.chunks for i, d in docs.items() if d.chunks}, "rows per document"
            assert store.chunk_count() == len(rows)
            if rows:
                probe = np.ones(store.dim, dtype=np.float32) / np.sqrt(store.dim)
                assert {i for i, _ in store.search_dense(probe, len(rows))} == {r["id"] for r in rows}
                for term in sorted({t for r in rows[:20] for t in r["stems"].split()})[:10]:
                    holding = sum(term in r["stems"].split() for r in rows)
                    assert store._document_frequencies([term]) == {term: holding}, term


BACKENDS: dict[str, Backend] = {"embedded": Embedded()}


def stored_chunks(store: Index) -> list[tuple[int, str, str, str | None]]:
    """(id, document label, text, context) of every chunk the index stores, by id: what tests check searches
    against, read behind the interface's back in each backend's own way."""
    if isinstance(store, Store):
        return store._db.execute(
            "SELECT c.id, d.name, c.text, c.context FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id"
        ).fetchall()
    assert isinstance(store, MilvusStore)
    labels = {d.id: d.name for d in store.documents()}
    retired = store.retired_versions()  # replaced or removed, invisible, deleted a little later
    rows = [r for r in store.stored_chunks(["text", "context"]) if r["version"] not in retired]
    return sorted((r["id"], labels.get(r["doc_id"], ""), r["text"], r["context"]) for r in rows)


def chunk_ids(store: Index, name: str | None = None) -> set[int]:
    """The ids of the chunks stored (of the document labelled ``name``)."""
    return {i for i, label, _, _ in stored_chunks(store) if name is None or label == name}


def searchable_ids(store: Index) -> set[int]:
    """Every chunk id dense search can return now."""
    if isinstance(store, Store):
        return store.dense_ids()
    probe = np.ones(store.dim, dtype=np.float32) / np.sqrt(store.dim)
    return {i for i, _ in store.search_dense(probe, max(1, store.chunk_count()))}


def backend_for(name: str, request: pytest.FixtureRequest) -> Backend:
    """The backend called ``name``; Milvus's connects to the session's server (started on first use)."""
    if name == "milvus":
        return Milvus(request.getfixturevalue("milvus_server").uri)
    return BACKENDS[name]


class StoreFactory:
    """Opens indexes of one backend for a test, and closes them when it ends."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        self._opened: list[Index] = []

    def __call__(self, folder: Path, *, embed_model: str, dim: int, merge_often: bool = False) -> Index:
        store = self.backend.open(folder, embed_model=embed_model, dim=dim, merge_often=merge_often)
        self._opened.append(store)
        return store

    def assert_consistent(self, store: Index) -> None:
        self.backend.assert_consistent(store)

    def cli_env(self) -> dict[str, str]:
        """What ``run_cli`` passes for a command to open the same index as this factory's."""
        return self.backend.cli_env()

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
