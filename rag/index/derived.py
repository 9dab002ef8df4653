"""The search structures derived from the rows: a FAISS index of the vectors and a BM25 index of the texts.

They are a cache of SQLite, never the truth. Each is saved under the generation it was built from
(``dense-<gen>.faiss``, ``sparse-<gen>/``), written aside and renamed into place; one that is missing, damaged or
of another size is rebuilt in memory from the rows, so a reader always sees structures that match the rows.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from rag.index.keyword import SparseIndex

# One query searches at a time; FAISS's OpenMP threads would otherwise stay spinning after each search and take
# the CPU from the next query's embedding (measured: p50 21 ms -> 14.5 ms per query on 2 cores).
faiss.omp_set_num_threads(1)


class Rows(Protocol):
    """What the derived structures are built from (the store's rows)."""

    def chunk_count(self) -> int: ...

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, float32 matrix of their vectors), by id."""
        ...

    def all_texts(self) -> tuple[list[int], list[str]]:
        """(chunk ids, indexed texts), by id."""
        ...


class DerivedIndexes:
    """The dense and keyword indexes of one generation of ``rows``, loaded or built when first needed."""

    def __init__(self, folder: Path, dim: int, rows: Rows) -> None:
        self.folder = folder
        self.dim = dim
        self.rows = rows
        self.generation = -1
        self._dense: faiss.IndexIDMap2 | None = None
        self._sparse: SparseIndex | None = None

    def reset(self, generation: int) -> None:
        """Forget what is in memory: the rows are now at ``generation``."""
        self.generation = generation
        self._dense = None
        self._sparse = None

    def path(self, kind: str, generation: int) -> Path:
        return self.folder / (f"dense-{generation}.faiss" if kind == "dense" else f"{kind}-{generation}")

    # --- reading -----------------------------------------------------------------------------------------------------

    def dense(self) -> faiss.IndexIDMap2:
        if self._dense is None:
            self._dense = self._read_dense() or self._build_dense()
        return self._dense

    def sparse(self) -> SparseIndex:
        if self._sparse is None:
            self._sparse = self._read_sparse() or self._build_sparse()
        return self._sparse

    def _read_dense(self) -> faiss.IndexIDMap2 | None:
        try:
            index = faiss.read_index(str(self.path("dense", self.generation)))
        except RuntimeError:  # missing or damaged: fall back to SQLite
            return None
        if index.ntotal != self.rows.chunk_count() or index.d != self.dim:
            return None
        return index

    def _build_dense(self) -> faiss.IndexIDMap2:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        ids, vectors = self.rows.all_vectors()
        if len(ids):
            index.add_with_ids(vectors, ids)
        return index

    def _read_sparse(self) -> SparseIndex | None:
        try:
            index = SparseIndex.load(self.path("sparse", self.generation))
        except (OSError, ValueError):
            return None
        return index if len(index.ids) == self.rows.chunk_count() else None

    def _build_sparse(self) -> SparseIndex:
        return SparseIndex.build(*self.rows.all_texts())

    # --- writing -----------------------------------------------------------------------------------------------------

    def apply(self, removed: list[int], added: list[int], vectors: np.ndarray | None) -> None:
        """Bring the in-memory structures in line with a committed change."""
        self._sparse = None  # rebuilt from the rows when next needed
        dense = self.dense()
        if removed:
            dense.remove_ids(np.asarray(removed, dtype=np.int64))
        if added:
            dense.add_with_ids(vectors, np.asarray(added, dtype=np.int64))

    def persist(self) -> None:
        """Save both structures of the current generation aside, rename them into place, drop older ones."""
        dense_path = self.path("dense", self.generation)
        if not dense_path.exists():
            tmp = dense_path.with_name(dense_path.name + ".tmp")
            faiss.write_index(self.dense(), str(tmp))
            _fsync_file(tmp)
            os.replace(tmp, dense_path)
        sparse_path = self.path("sparse", self.generation)
        if not sparse_path.exists():
            tmp = sparse_path.with_name(sparse_path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.sparse().save(tmp)
            for written in tmp.rglob("*"):
                if written.is_file():
                    _fsync_file(written)
            os.replace(tmp, sparse_path)
        _fsync_dir(self.folder)
        for old in [*self.folder.glob("dense-*"), *self.folder.glob("sparse-*")]:
            if old not in (dense_path, sparse_path):
                shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
