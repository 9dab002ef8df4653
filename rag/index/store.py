"""The on-disk index: SQLite holds documents, chunks and their vectors; search structures are derived copies.

Why this shape:
- SQLite is the source of truth. Each document is written in one transaction, so a crash leaves either the old
  version or the new one, never half of each. Every committed change bumps ``generation``.
- Search structures (the FAISS index and the BM25 index, ``rag.index.derived``) are *derived* from SQLite and saved
  under the generation they were built from. A reader that finds none for the current generation (a crash, or a
  writer still at work) rebuilds them in memory from the rows, so readers always see a consistent index.
- One writer at a time: ``Store.writer()`` holds a file lock for the whole ingest or removal.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from rag.index.derived import DerivedIndexes
from rag.index.keyword import SparseIndex
from rag.index.records import ChunkRecord, DocumentInfo, NewChunk, StoreError, indexed_text

__all__ = ["ChunkRecord", "DocumentInfo", "NewChunk", "Store", "StoreError", "open_store"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    path TEXT,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    pages INTEGER,
    recipe TEXT NOT NULL,
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    page INTEGER,
    section TEXT,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    text TEXT NOT NULL,
    context TEXT,
    sha256 TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_sha ON chunks(sha256);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """Documents, chunks and vectors of one index folder. Safe to share between threads of one process."""

    def __init__(self, index_dir: Path, *, embed_model: str, dim: int) -> None:
        self.dir = Path(index_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._mutex = threading.RLock()
        self._db = sqlite3.connect(self.dir / "index.sqlite", check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = FileLock(str(self.dir / "write.lock"))
        self._writing = False
        self._derived = DerivedIndexes(self.dir, dim, self)
        with self._mutex:
            self._db.executescript(_SCHEMA)
            self._check_meta(embed_model, dim)

    # --- setup -------------------------------------------------------------------------------------------------------

    def _check_meta(self, embed_model: str, dim: int) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                [("schema", str(SCHEMA_VERSION)), ("embed_model", embed_model), ("dim", str(dim)), ("generation", "0")],
            )
            self._db.execute("COMMIT")
            return
        if meta.get("embed_model") != embed_model or int(meta.get("dim", -1)) != dim:
            raise StoreError(
                f"the index in {self.dir} was built with embedding model {meta.get('embed_model')} "
                f"({meta.get('dim')} dims), not {embed_model} ({dim}); use another --index folder or rebuild it"
            )

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    # --- reading -----------------------------------------------------------------------------------------------------

    def generation(self) -> int:
        with self._mutex:
            return int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def documents(self, name: str | None = None) -> list[DocumentInfo]:
        """All documents by name, or the one called ``name`` (an empty list if there is none)."""
        where, args = ("WHERE d.name = ?", (name,)) if name is not None else ("", ())
        with self._mutex:
            rows = self._db.execute(
                "SELECT d.id, d.name, d.path, d.kind, d.sha256, d.size, d.pages, COUNT(c.id), d.recipe, d.added_at,"
                f" d.updated_at FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id {where}"
                " GROUP BY d.id ORDER BY d.name",
                args,
            ).fetchall()
        return [DocumentInfo(*row) for row in rows]

    def document(self, name: str) -> DocumentInfo | None:
        found = self.documents(name)
        return found[0] if found else None

    def chunk_count(self) -> int:
        with self._mutex:
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]:
        """The chunks with these ids, in the order asked (ids no longer stored are left out)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._mutex:
            rows = self._db.execute(
                "SELECT c.id, d.name, c.page, c.section, c.start, c.end, c.ordinal, c.text, c.context FROM chunks c"
                f" JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                list(ids),
            ).fetchall()
        by_id = {row[0]: ChunkRecord(*row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def neighbours(self, chunk: ChunkRecord, distance: int = 1) -> list[ChunkRecord]:
        """Chunks of the same document within ``distance`` positions of ``chunk``, in reading order."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id"
                " WHERE d.name = ? AND c.ordinal BETWEEN ? AND ? ORDER BY c.ordinal",
                (chunk.source, chunk.ordinal - distance, chunk.ordinal + distance),
            ).fetchall()
        return self.chunks([row[0] for row in rows])

    def vectors_by_sha(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors for chunk texts already embedded once, so an edited document re-embeds only what changed."""
        found: dict[str, np.ndarray] = {}
        with self._mutex:
            for start in range(0, len(hashes), 500):
                part = list(hashes[start : start + 500])
                marks = ",".join("?" * len(part))
                for sha, blob in self._db.execute(
                    f"SELECT sha256, embedding FROM chunks WHERE sha256 IN ({marks})", part
                ):
                    found[sha] = np.frombuffer(blob, dtype=np.float32)
        return found

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, float32 matrix of their vectors), by id: what the dense index is built from."""
        with self._mutex:
            rows = self._db.execute("SELECT id, embedding FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), self.dim)
        return ids, vectors

    def all_texts(self) -> tuple[list[int], list[str]]:
        """(chunk ids, indexed texts), by id: what the keyword index is built from."""
        with self._mutex:
            rows = self._db.execute("SELECT id, text, context FROM chunks ORDER BY id").fetchall()
        return [r[0] for r in rows], [indexed_text(r[1], r[2]) for r in rows]

    def search_dense(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks."""
        with self._mutex:
            self._refresh()
            index = self._derived.dense()
            if index.ntotal == 0:
                return []
            scores, ids = index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), min(k, index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def search_sparse(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best keyword matches."""
        return self.sparse_index().search(query, k)

    def sparse_index(self) -> SparseIndex:
        """The BM25 index for the current generation (loaded from disk, or rebuilt from the rows)."""
        with self._mutex:
            self._refresh()
            return self._derived.sparse()

    def _refresh(self) -> None:
        generation = self.generation()
        if generation != self._derived.generation and not self._writing:
            self._derived.reset(generation)

    # --- writing -----------------------------------------------------------------------------------------------------

    @contextmanager
    def writer(self, timeout: float = 600) -> Iterator[Store]:
        """Hold the index's write lock; on exit save the search structures for the final generation."""
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise StoreError(f"another process is writing to the index in {self.dir}; try again when it is done") from exc
        try:
            with self._mutex:
                self._refresh()
                self._derived.dense()  # bring the in-memory index up to date before changing it
                self._writing = True
            try:
                yield self
            finally:
                with self._mutex:
                    self._writing = False
                    self._derived.generation = self.generation()
                    self._derived.persist()
        finally:
            self._lock.release()

    def _require_writer(self) -> None:
        if not self._writing:
            raise StoreError("writes need `with store.writer():`")

    def put_document(
        self,
        *,
        name: str,
        path: str | None,
        kind: str,
        sha256: str,
        size: int,
        pages: int | None,
        recipe: str,
        chunks: Sequence[NewChunk],
    ) -> bool:
        """Store a document and its chunks, replacing any earlier version of the same name. True if it replaced one."""
        self._require_writer()
        vectors = np.vstack([c.vector for c in chunks]).astype(np.float32) if chunks else np.zeros((0, self.dim))
        with self._mutex:
            old = self._db.execute("SELECT id, added_at FROM documents WHERE name = ?", (name,)).fetchone()
            with self._change():
                old_ids = self._delete_rows(old[0]) if old else []
                now = _now()
                doc_id = self._db.execute(
                    "INSERT INTO documents(name, path, kind, sha256, size, pages, recipe, added_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, path, kind, sha256, size, pages, recipe, old[1] if old else now, now),
                ).lastrowid
                new_ids = [
                    self._db.execute(
                        "INSERT INTO chunks(doc_id, ordinal, page, section, start, end, n_tokens, text, context,"
                        " sha256, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (doc_id, ordinal, chunk.page, chunk.section, chunk.start, chunk.end, chunk.n_tokens,
                         chunk.text, chunk.context, chunk.sha256, vector.tobytes()),
                    ).lastrowid
                    for ordinal, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
                ]
            self._derived.apply(old_ids, new_ids, vectors)
        return old is not None

    def remove_document(self, name: str) -> bool:
        """Delete a document with its chunks and vectors. False if no document has that name."""
        self._require_writer()
        with self._mutex:
            row = self._db.execute("SELECT id FROM documents WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            with self._change():
                old_ids = self._delete_rows(row[0])
            self._derived.apply(old_ids, [], None)
        return True

    @contextmanager
    def _change(self) -> Iterator[None]:
        """One committed change: a write transaction that bumps the generation, or rolls back on any error.
        (Reads just before it are safe: the file lock makes this the only writer.)"""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._bump_generation()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _delete_rows(self, doc_id: int) -> list[int]:
        """Delete a document's rows; returns the ids its chunks had."""
        old_ids = self._chunk_ids(doc_id)
        self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return old_ids

    def _chunk_ids(self, doc_id: int) -> list[int]:
        return [row[0] for row in self._db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]

    def _bump_generation(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")


def open_store(index_dir: Path) -> Store:
    """Open (or create) the index in ``index_dir`` for the bundled embedding model."""
    from rag.index.embedder import get_embedder

    embedder = get_embedder()
    return Store(index_dir, embed_model=embedder.name, dim=embedder.dim)
