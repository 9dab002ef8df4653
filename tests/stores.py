"""The index backends the store contract tests run against (``store_factory`` in ``tests/conftest.py``).

Each backend opens an index for a test and checks that its own search structures agree with its rows. A second
backend (Milvus) adds a class here and its name to ``BACKENDS``: every test written against the factory, or the
``store`` fixture built on it, then runs once per backend.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

from rag.index.base import Index
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

    def open(self, folder: Path, *, embed_model: str, dim: int, merge_often: bool = False) -> Index:
        return Store(folder, embed_model=embed_model, dim=dim, policy=MERGE_OFTEN if merge_often else None)

    def assert_consistent(self, store: Index) -> None:
        assert isinstance(store, Store)
        rows = {r[0] for r in store._db.execute("SELECT id FROM chunks")}
        assert store.dense_ids() == rows, "dense search returns exactly the stored chunks"
        assert keyword_index_matches_the_rows(store._db), "the keyword index disagrees with the chunk rows"


BACKENDS: dict[str, Backend] = {"embedded": Embedded()}


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

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
