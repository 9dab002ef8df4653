"""The on-disk index: one SQLite file holds documents, chunks, vectors and the keyword index; FAISS snapshots sit beside.

Why this shape:
- SQLite is the source of truth. Each document is written in one transaction, together with its keyword postings
  (FTS5, ``rag.index.keyword``) and the tombstones of the chunks it replaces, so a crash leaves either the old
  version or the new one, never half of each. Every committed change bumps ``generation``.
- A write costs the change, not the index: dense search reads a FAISS snapshot plus the rows written since, minus
  the ids deleted since (``rag.index.dense``); the writer folds that delta into a new snapshot only once it has
  grown, written aside and renamed, then named in the database.
- A reader sees one generation: ``reading()`` holds a SQLite read transaction for a whole search (dense, keyword,
  term statistics and the chunks' rows), so a concurrent write is either wholly seen or not at all, and a reader
  never gets an id deleted before its read began.
- One writer at a time: ``Store.writer()`` holds a file lock for the whole ingest or removal.
- Documents are identified by their file's key (``rag.index.identity``: the same on every machine), keep the local
  path the last writer read them from, and are shown under a short unique label (``rag.index.labels``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from filelock import FileLock, Timeout

from rag.index import schema
from rag.index.base import Index
from rag.index.schema import has_index, recorded_embed_model
from rag.index.dense import DenseIndex, DensePolicy, snapshot_meta
from rag.index.identity import document_key, is_key
from rag.index.keyword import KeywordIndex, idf, tokenize
from rag.index.records import ChunkRecord, DocumentInfo, NewChunk, NoIndexError, StoreError, Stored, indexed_text

__all__ = ["ChunkRecord", "DensePolicy", "DocumentInfo", "NewChunk", "NoIndexError", "Store", "StoreError", "Stored",
           "has_index", "open_store", "recorded_embed_model"]

_DOCUMENT_COLUMNS = (
    "d.id, d.name, d.path, d.kind, d.sha256, d.size, d.pages,"
    " (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id), d.recipe, d.added_at, d.updated_at, d.base, d.key"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """Documents, chunks and vectors of one index folder: the embedded ``rag.index.base.Index``. Safe to share between threads of one process.
    ``create=False`` opens an existing index only (else ``NoIndexError``): a read never makes an empty index."""

    def __init__(
        self, index_dir: Path, *, embed_model: str, dim: int, policy: DensePolicy | None = None, create: bool = True
    ) -> None:
        self.dir = Path(index_dir)
        self.embed_model = embed_model
        if not create and not has_index(self.dir):
            raise NoIndexError(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._mutex = threading.RLock()
        self._db = sqlite3.connect(self.dir / "index.sqlite", check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = FileLock(str(self.dir / "write.lock"))
        self._writing = False
        self._keyword = KeywordIndex(self._db)
        self._dense = DenseIndex(self.dir, dim, policy or DensePolicy())
        with self._mutex:
            self._check_model(embed_model, dim)
            if schema.needs_work(self._db):
                with self._locked(600, "upgrading or creating"):
                    if schema.needs_work(self._db):
                        schema.prepare(self._db, self.dir, embed_model, dim)

    def _check_model(self, embed_model: str, dim: int) -> None:
        try:
            meta = schema.meta(self._db)
        except sqlite3.OperationalError:
            return  # a new file
        if meta and (meta.get("embed_model") != embed_model or int(meta.get("dim", -1)) != dim):
            raise StoreError(
                f"the index in {self.dir} was built with embedding model {meta.get('embed_model')} "
                f"({meta.get('dim')} dims), not {embed_model} ({dim}); use another --index folder or rebuild it"
            )

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    # --- reading -----------------------------------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view of the index for every read inside (nested uses share it)."""
        with self._mutex:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def _meta_int(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def generation(self) -> int:
        with self._mutex:
            return self._meta_int("generation")

    def chunk_count(self) -> int:
        with self._mutex:
            return self._meta_int("chunks")

    def documents(self, name: str | None = None) -> list[DocumentInfo]:
        """All documents by label, or the one labelled ``name`` (an empty list if there is none)."""
        where, args = ("WHERE d.name = ?", (name,)) if name is not None else ("", ())
        with self._mutex:
            rows = self._db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents d {where} ORDER BY d.name", args)
            return [DocumentInfo(*row) for row in rows.fetchall()]

    def document(self, name: str) -> DocumentInfo | None:
        """The document labelled ``name``."""
        found = self.documents(name)
        return found[0] if found else None

    def document_at(self, path: str | Path) -> DocumentInfo | None:
        """The document of the file at ``path`` (or of a key), wherever it was read from."""
        key = str(path) if is_key(str(path)) else document_key(path)
        with self._mutex:
            row = self._db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.key = ?", (key,)).fetchone()
        return DocumentInfo(*row) if row else None

    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]:
        """The chunks with these ids, in the order asked (ids no longer stored are left out)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._mutex:
            rows = self._db.execute(
                "SELECT c.id, d.name, c.page, c.section, c.start, c.end, c.ordinal, c.text, c.context, d.kind FROM chunks c"
                f" JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                list(ids),
            ).fetchall()
        by_id = {row[0]: ChunkRecord(*row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def neighbours(self, chunk: ChunkRecord, distance: int = 1) -> list[ChunkRecord]:
        """Chunks of the same document within ``distance`` positions of ``chunk``, in reading order."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT c.id FROM chunks c WHERE c.doc_id = (SELECT doc_id FROM chunks WHERE id = ?)"
                " AND c.ordinal BETWEEN ? AND ? ORDER BY c.ordinal",
                (chunk.id, chunk.ordinal - distance, chunk.ordinal + distance),
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

    def search_dense(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks."""
        with self.reading():
            self._dense.refresh(self._db, self._meta_int("generation"))
            return self._dense.search(vector, k, self._db)

    def search_sparse(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best keyword matches."""
        with self.reading():
            documents, tokens = self._meta_int("chunks"), self._meta_int("keyword_tokens")
            return self._keyword.search(query, k, documents=documents, tokens=tokens)

    def idf(self, terms: list[str]) -> list[float]:
        """Inverse document frequency of stemmed terms over the chunks (the evidence signal's word weights)."""
        with self.reading():
            documents = self._meta_int("chunks")
            frequencies = self._keyword.document_frequencies(terms)
        return [idf(documents, frequencies.get(t, 0)) if documents else 0.0 for t in terms]

    def dense_ids(self) -> set[int]:
        """Every chunk id dense search can return now (checks compare it with the rows)."""
        with self.reading():
            self._dense.refresh(self._db, self._meta_int("generation"))
            return self._dense.ids()

    # --- writing -----------------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, timeout: float, doing: str) -> Iterator[None]:
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise StoreError(
                f"the index in {self.dir} is busy: another process is writing to it; try again when it is done"
                f" ({doing} waited {timeout:g} s)"
            ) from exc
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def writer(self, timeout: float = 600) -> Iterator[Store]:
        """Hold the index's write lock; on the way out fold a grown delta into a new dense snapshot."""
        with self._locked(timeout, "writing"):
            self._writing = True
            try:
                yield self
                self.merge(force=False)
            finally:
                self._writing = False

    def merge(self, *, force: bool = True) -> bool:
        """Fold the rows and deletions since the dense snapshot into a new one (when due, or ``force``d).
        The writer calls it; the readers go on with the old snapshot until the new one is named."""
        self._require_writer()
        with self._mutex:
            if not force and not self._dense.merge_due(self._db):
                return False
            generation = self._meta_int("generation")
        info, index = self._dense.build_snapshot(self.dir / "index.sqlite", generation)
        with self._mutex:
            previous = self._db.execute("SELECT value FROM meta WHERE key = 'dense_snapshot'").fetchone()
            with self._change():
                self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", snapshot_meta(info))
                self._db.execute("DELETE FROM tombstones WHERE chunk_id <= ?", (info.max_id,))
            self._dense.adopt(info, index, self._meta_int("generation"))
            self._dense.remove_stale_files({info.name, previous[0] if previous else ""})
        return True

    def _require_writer(self) -> None:
        if not self._writing:
            raise StoreError("writes need `with store.writer():`")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several writes in one transaction (bulk loads): one commit instead of one per document."""
        self._require_writer()
        with self._mutex, self._change():
            yield

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
        """Store the document read from ``path`` and its chunks, replacing an earlier version of the same file (the
        same key, read from any path). ``base`` is the shortest label it may have (its path relative to the folder
        it was ingested from)."""
        self._require_writer()
        key, path = document_key(path), os.path.abspath(path)
        vectors = np.vstack([c.vector for c in chunks]).astype(np.float32) if chunks else np.zeros((0, self.dim))
        with self._mutex:
            with self._change():
                old = self._db.execute("SELECT id, added_at FROM documents WHERE key = ?", (key,)).fetchone()
                if old:
                    schema.delete_document(self._db, old[0])
                now = _now()
                doc_id = self._db.execute(
                    "INSERT INTO documents(name, path, key, base, kind, sha256, size, pages, recipe, added_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ("\0" + key, path, key, base, kind, sha256, size, pages, recipe, old[1] if old else now, now),
                ).lastrowid
                stems = [tokenize(indexed_text(c.text, c.context)) for c in chunks]
                self._db.executemany(
                    "INSERT INTO chunks(doc_id, ordinal, page, section, start, end, n_tokens, text, context,"
                    " sha256, embedding, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (doc_id, ordinal, c.page, c.section, c.start, c.end, c.n_tokens, c.text, c.context,
                         c.sha256, vector.tobytes(), " ".join(words))
                        for ordinal, (c, vector, words) in enumerate(zip(chunks, vectors, stems, strict=True))
                    ],
                )
                self._keyword.add_document(doc_id)
                schema.count(self._db, len(chunks), sum(len(words) for words in stems))
                label = schema.relabel(self._db, PurePosixPath(base).name)[key]
        return Stored(label, old is not None)

    def remove_document(self, name: str) -> bool:
        """Delete a document (by label, key, or the path of its file) with its chunks, vectors and postings.
        False if there is none."""
        self._require_writer()
        key = name if is_key(name) else document_key(name)
        with self._mutex:
            row = self._db.execute(
                "SELECT id, base FROM documents WHERE name = ? OR key = ? ORDER BY name = ? DESC LIMIT 1",
                (name, key, name),
            ).fetchone()
            if row is None:
                return False
            with self._change():
                schema.delete_document(self._db, row[0])
                schema.relabel(self._db, PurePosixPath(row[1] or "").name)
        return True

    @contextmanager
    def _change(self) -> Iterator[None]:
        """One committed change: a write transaction that bumps the generation, or rolls back on any error.
        Inside ``batch()`` it joins the batch's transaction. (The file lock makes this the only writer.)"""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise


def open_store(index_dir: Path, *, create: bool = True, scratch: bool = False) -> Index:
    """Open (or, with ``create``, create) the index named by ``index_dir`` for the embedding model it was built with
    (``embedder_for``); without ``create``, no index there is a ``NoIndexError``, raised before the model loads.
    ``RAG_STORE`` picks the backend: this folder's FAISS + SQLite store (the default), or collections on the Milvus
    server at ``RAG_MILVUS_URI`` (``RAG_MILVUS_COLLECTION``, else named after the folder; a ``scratch`` index, made
    to be thrown away, is always named after its folder)."""
    from rag.index.embedder import embedder_for
    from rag.settings import get_settings

    s = get_settings()
    if s.store == "milvus":
        from rag.index.milvus import MilvusStore

        embedder = embedder_for(index_dir)
        return MilvusStore(index_dir, uri=s.milvus_uri, token=s.milvus_token, embed_model=embedder.name,
                           dim=embedder.dim, collection=None if scratch else s.milvus_collection,
                           timeout=s.milvus_timeout, create=create)
    if not create and not has_index(index_dir):
        raise NoIndexError(Path(index_dir))
    embedder = embedder_for(index_dir)
    policy = DensePolicy(exact_limit=s.dense_exact_limit, merge_rows=s.dense_merge_rows, min_nprobe=s.dense_nprobe)
    return Store(index_dir, embed_model=embedder.name, dim=embedder.dim, policy=policy, create=create)
