"""The index on a Milvus server: the same ``rag.index.base.Index`` as the embedded store, for libraries that outgrow
one machine (several app instances and ingest workers writing into one Milvus cluster). ``RAG_STORE=milvus`` picks
it (``rag.index.store.open_store``); ``docs/milvus.md`` has the measurements and what a cluster changes.

Three collections per index, named ``PREFIX_chunks``, ``PREFIX_docs`` and ``PREFIX_meta``:
- chunks: id, doc_id, version, the unit vector (FLOAT_VECTOR, AUTOINDEX, inner product = cosine), the chunk's
  stems (``rag.index.keyword.tokenize`` of its indexed text, space-joined) in a VARCHAR analysed for Milvus's
  full-text search, whose ``Function(BM25)`` fills a sparse field, then text, context, page, section, offsets,
  ordinal and sha256. Milvus tokenizes the stems only by splitting them again, so its BM25 sees the very terms the
  embedded store's FTS5 sees.
- docs: one row per document, keyed by its file's key (``rag.index.identity``; ``rag.index.milvus.keys``), with the
  local path the last writer read it from, the document's id, its *current version*, label,
  base, kind, sha256, size, pages, recipe, times, and its chunk and token counts (BM25's collection statistics).
- meta: the embedding model and dimension (an index refuses vectors of another model), the generation (bumped by
  every committed change), the writer's lease, and the writes in flight.

How writes stay safe without transactions: ``rag.index.milvus.writer``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.index.identity import document_key, is_key
from rag.index.keyword import bm25, idf, tokenize
from rag.index.milvus import keys
from rag.index.milvus.common import _CHUNK_FIELDS, _DOC_FIELDS, _MAX_LIMIT, _PLACEHOLDER, T, _quote, schemas
from rag.index.milvus.writer import MilvusWriter
from rag.index.records import ChunkRecord, DocumentInfo, NoIndexError, StoreError

_EXTRA_CANDIDATES = 20  # BM25 candidates beyond k, rescored (as the embedded store does with FTS5's)
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}
_NOT_LOADED = 101  # Milvus's "collection not loaded" (after a restart, a collection waits to be loaded again)


def collection_prefix(index_dir: Path) -> str:
    """The collections' prefix for an index named by a local folder: each ``--index`` folder is its own index."""
    digest = hashlib.sha256(os.path.abspath(index_dir).encode("utf-8")).hexdigest()[:16]
    return f"rag_{digest}"


@dataclass
class _Snapshot:
    """The documents as one read saw them: which version of each is current, and BM25's collection statistics."""

    generation: int
    rows: dict[str, dict[str, Any]]  # key -> docs row (rag.index.milvus.keys.by_key)
    versions: dict[int, int] = field(default_factory=dict)  # doc_id -> current version
    by_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    chunks: int = 0
    tokens: int = 0

    def __post_init__(self) -> None:
        for row in self.rows.values():
            self.versions[row["doc_id"]] = row["version"]
            self.by_id[row["doc_id"]] = row
            self.chunks += row["chunks"]
            self.tokens += row["tokens"]

    def visible(self, doc_id: int, version: int) -> bool:
        return self.versions.get(doc_id) == version


class MilvusStore(MilvusWriter):
    """Documents, chunks and vectors in collections of a Milvus server: an ``rag.index.base.Index``. ``dir`` is the
    local folder that names it (``collection_prefix``) unless ``collection`` is given. Safe to share between
    threads; ``create=False`` opens an existing index only (else ``NoIndexError``)."""

    def __init__(
        self,
        index_dir: Path,
        *,
        uri: str,
        embed_model: str,
        dim: int,
        token: str = "",
        collection: str | None = None,
        timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        self.dir = Path(index_dir)
        self.embed_model = embed_model
        self.dim = dim
        self.uri = uri
        self.prefix = collection or collection_prefix(self.dir)
        self._chunks_name, self._docs_name, self._meta_name = (f"{self.prefix}_{n}" for n in ("chunks", "docs", "meta"))
        self._timeout = timeout
        self._owner = uuid.uuid4().hex
        self._local = threading.local()
        self._cache_lock = threading.Lock()
        self._snapshot_cache: _Snapshot | None = None
        self._df_cache: tuple[int, dict[str, int]] = (-1, {})
        self._writing = 0
        self._local_writer = threading.Lock()  # one writing thread per process; the lease covers the others
        self._renewer: threading.Thread | None = None
        self._renewing = threading.Event()
        self._client = self._call("connecting", self._connect, token)
        if not self._call("opening the index", self._client.has_collection, self._meta_name):
            if not create:
                raise NoIndexError(self.dir)
            self._create_collections()
        self._check_model()
        fields = self._call("opening the index", self._client.describe_collection, self._docs_name)["fields"]
        self._sourced = any(f["name"] == "source" for f in fields)  # not in a collection of the previous release
        self._doc_fields = [*_DOC_FIELDS, "source"] if self._sourced else list(_DOC_FIELDS)

    # --- talking to the server -----------------------------------------------------------------------------------

    def _connect(self, token: str) -> Any:
        from pymilvus import MilvusClient

        # pymilvus pings every 10 s even when idle; a gRPC server with the library's defaults (Milvus Lite) takes
        # that for abuse ("too many pings") and drops the connection: ping every 5 minutes, and only during calls.
        # A dedicated connection: pymilvus shares one per address otherwise, made with whoever's options came first.
        return MilvusClient(uri=self.uri, token=token, timeout=self._timeout, grpc_options=GRPC_OPTIONS,
                            dedicated=True)

    def _call(self, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one request; any failure of the server or the connection is a ``StoreError`` naming the server."""
        from pymilvus.exceptions import MilvusException

        try:
            try:
                return fn(*args, **kwargs)
            except MilvusException as exc:
                if exc.code != _NOT_LOADED:
                    raise
                self._load()  # a restarted server holds the collections released: load them, ask again
                return fn(*args, **kwargs)
        except MilvusException as exc:
            raise StoreError(
                f"the Milvus server at {self.uri} failed while {doing} (index {self.prefix}): {exc.message}"
            ) from exc
        except Exception as exc:  # grpc errors, timeouts, refused connections
            if type(exc).__module__.startswith(("grpc", "pymilvus")) or isinstance(exc, (OSError, TimeoutError)):
                raise StoreError(
                    f"the Milvus server at {self.uri} is not reachable ({doing}, index {self.prefix}): {exc}"
                ) from exc
            raise

    def _query_all(self, collection: str, filter: str, fields: list[str], doing: str,  # noqa: A002
                   batch: int = 4_000) -> Iterator[list[dict[str, Any]]]:
        """Every row matching ``filter``, a page at a time (a single query returns at most ``_MAX_LIMIT``)."""
        iterator = self._call(doing, self._client.query_iterator, collection, batch_size=batch, filter=filter,
                              output_fields=fields, timeout=self._timeout)
        try:
            while page := self._call(doing, iterator.next):
                yield list(page)
        finally:
            iterator.close()

    def _load(self) -> None:
        for name in (self._chunks_name, self._docs_name, self._meta_name):
            self._client.load_collection(name, timeout=self._timeout)

    def _query(self, collection: str, filter: str, fields: list[str], doing: str) -> list[dict[str, Any]]:  # noqa: A002
        return list(self._call(doing, self._client.query, collection, filter=filter, output_fields=fields,
                               limit=_MAX_LIMIT, timeout=self._timeout))

    def _create_collections(self) -> None:
        for suffix, schema, params in schemas(self._client, self.dim):
            name = f"{self.prefix}_{suffix}"
            if not self._call("creating the index", self._client.has_collection, name):
                self._call("creating the index", self._client.create_collection, name, schema=schema,
                           index_params=params, consistency_level="Strong")
        if self._meta("model") is None:
            self._set_meta("model", json.dumps({"embed_model": self.embed_model, "dim": self.dim}))
            self._set_meta("generation", "0")
            self._set_meta("identity", keys.KEYED)

    def _meta(self, key: str) -> str | None:
        rows = self._query(self._meta_name, f"key == {_quote(key)}", ["value"], "reading the index's state")
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self._call("writing the index's state", self._client.upsert, self._meta_name,
                   [{"key": key, "value": value, "placeholder": _PLACEHOLDER}], timeout=self._timeout)

    def _check_model(self) -> None:
        recorded = json.loads(self._meta("model") or "{}")
        if recorded and (recorded.get("embed_model") != self.embed_model or int(recorded.get("dim", -1)) != self.dim):
            raise StoreError(
                f"the index {self.prefix} on the Milvus server at {self.uri} was built with embedding model "
                f"{recorded.get('embed_model')} ({recorded.get('dim')} dims), not {self.embed_model} ({self.dim});"
                " use another index (RAG_MILVUS_COLLECTION or --index) or rebuild it"
            )

    def close(self) -> None:
        self._stop_renewing()
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a connection to a server that is gone
            pass

    def drop(self) -> None:
        """Delete the index's collections (a scratch index, e.g. ``rag.eval``'s)."""
        for name in (self._chunks_name, self._docs_name, self._meta_name):
            self._call("dropping the index", self._client.drop_collection, name)

    # --- reading -----------------------------------------------------------------------------------------------------

    def _generation(self) -> int:
        return int(self._meta("generation") or 0)

    def _take_snapshot(self) -> _Snapshot:
        """The docs rows now (reused while the generation stands: the generation is read first, so a cached view
        is never older than the generation it is filed under)."""
        generation = self._generation()
        with self._cache_lock:
            cached = self._snapshot_cache
        if cached is not None and cached.generation == generation and not self._writing:
            return cached
        rows = self._query(self._docs_name, "doc_id > 0", self._doc_fields, "reading the documents")
        if len(rows) >= _MAX_LIMIT:
            rows = [r for page in self._query_all(self._docs_name, "doc_id > 0", self._doc_fields,
                                                  "reading the documents") for r in page]
        snapshot = _Snapshot(generation, keys.by_key(rows))
        with self._cache_lock:
            self._snapshot_cache = snapshot
        return snapshot

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One view of the documents for every read inside (nested uses share it): chunks of a version other than
        the one current when it began are never returned, so a concurrent replace is seen wholly or not at all."""
        if getattr(self._local, "snapshot", None) is not None:
            yield
            return
        self._local.snapshot = self._take_snapshot()
        try:
            yield
        finally:
            self._local.snapshot = None

    def _view(self) -> _Snapshot:
        snapshot = getattr(self._local, "snapshot", None)
        return snapshot if snapshot is not None else self._take_snapshot()

    @staticmethod
    def _info(row: dict[str, Any]) -> DocumentInfo:
        return DocumentInfo(row["doc_id"], row["name"], row["source"], row["kind"], row["sha256"], row["size"],
                            row["pages"], row["chunks"], row["recipe"], row["added_at"], row["updated_at"], row["base"],
                            row["key"])

    def documents(self, name: str | None = None) -> list[DocumentInfo]:
        """All documents by label, or the one labelled ``name`` (an empty list if there is none)."""
        with self.reading():
            rows = self._view().rows.values()
        return sorted((self._info(r) for r in rows if name is None or r["name"] == name), key=lambda d: d.name)

    def document(self, name: str) -> DocumentInfo | None:
        found = self.documents(name)
        return found[0] if found else None

    def document_at(self, path: str | Path) -> DocumentInfo | None:
        row = self._view().rows.get(str(path) if is_key(str(path)) else document_key(path))
        return self._info(row) if row else None

    def chunk_count(self) -> int:
        with self.reading():
            return self._view().chunks

    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]:
        """The chunks with these ids, in the order asked (ids no longer stored, or of a version not current in this
        read, are left out)."""
        if not ids:
            return []
        with self.reading():
            view = self._view()
            rows = self._query(self._chunks_name, f"id in {list(map(int, ids))}", _CHUNK_FIELDS, "reading chunks")
        by_id = {}
        for r in rows:
            doc = view.by_id.get(r["doc_id"])
            if doc is not None and view.visible(r["doc_id"], r["version"]):
                by_id[r["id"]] = ChunkRecord(r["id"], doc["name"], r["page"], r["section"], r["start"], r["end"],
                                             r["ordinal"], r["text"], r["context"], doc["kind"])
        return [by_id[i] for i in ids if i in by_id]

    def neighbours(self, chunk: ChunkRecord, distance: int = 1) -> list[ChunkRecord]:
        """Chunks of the same document within ``distance`` positions of ``chunk``, in reading order."""
        rows = self._query(self._chunks_name, f"id == {int(chunk.id)}", ["doc_id", "version"], "reading chunks")
        if not rows:
            return []
        near = self._query(
            self._chunks_name,
            f"doc_id == {rows[0]['doc_id']} and version == {rows[0]['version']}"
            f" and ordinal >= {chunk.ordinal - distance} and ordinal <= {chunk.ordinal + distance}",
            ["id", "ordinal"], "reading chunks")
        return self.chunks([r["id"] for r in sorted(near, key=lambda r: r["ordinal"])])

    def vectors_by_sha(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors for chunk texts already embedded once, so an edited document re-embeds only what changed."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            part = list(hashes[start : start + 500])
            for row in self._query(self._chunks_name, f"sha256 in {json.dumps(part)}", ["sha256", "vector"],
                                   "reading vectors"):
                found[row["sha256"]] = np.asarray(row["vector"], dtype=np.float32)
        return found

    def _search_visible(self, data: list[Any], field_name: str, k: int, fields: list[str],
                        doing: str) -> list[dict[str, Any]]:
        """The best ``k`` hits of the current versions: asks for more while hidden versions crowd the answer."""
        view = self._view()
        limit = min(k, _MAX_LIMIT)
        while True:
            result = self._call(doing, self._client.search, self._chunks_name, data=data, anns_field=field_name,
                                limit=limit, output_fields=["doc_id", "version", *fields],
                                timeout=self._timeout)
            hits = list(result[0]) if result else []
            visible = [h for h in hits if view.visible(h["entity"]["doc_id"], h["entity"]["version"])]
            if len(visible) >= k or len(hits) < limit or limit >= _MAX_LIMIT:
                return visible[:k]
            limit = min(limit * 4, _MAX_LIMIT)

    def search_dense(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks."""
        with self.reading():
            if k < 1 or not self._view().chunks:
                return []
            data = [np.asarray(vector, dtype=np.float32).tolist()]
            hits = self._search_visible(data, "vector", k, [], "searching vectors")
        return [(int(h["id"]), float(h["distance"])) for h in hits]

    def search_sparse(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best keyword matches: Milvus's full-text search finds the candidates,
        Lucene's BM25 over the whole index's statistics scores them (as in the embedded store)."""
        terms = tokenize(query)
        with self.reading():
            view = self._view()
            if not terms or k < 1 or not view.chunks:
                return []
            hits = self._search_visible([" ".join(sorted(set(terms)))], "sparse", k + _EXTRA_CANDIDATES, ["stems"],
                                        "searching keywords")
            weights = dict(zip(sorted(set(terms)), self.idf(sorted(set(terms))), strict=True))
        average = view.tokens / view.chunks
        scored = sorted(((int(h["id"]), bm25(terms, h["entity"]["stems"].split(), weights, average)) for h in hits),
                        key=lambda hit: (-hit[1], hit[0]))
        return [(i, float(s)) for i, s in scored[:k] if s > 0]

    def _document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks of the current versions hold each stem, once per term and generation: one BM25 search
        per term (all in one request) lists the chunks holding it from the inverted index, and those of the
        versions this read sees are counted. A term held by more chunks than a search returns is counted by a
        ``text_match`` query over every row instead (capped at the chunks there are: rows of a write in flight
        could inflate it), exact enough for a word that common."""
        view = self._view()
        generation = view.generation
        with self._cache_lock:
            cached_generation, cache = self._df_cache
            if cached_generation != generation:
                cache = {}
                self._df_cache = (generation, cache)
        missing = [t for t in dict.fromkeys(terms) if t not in cache]
        if missing:
            found = self._call("counting term frequencies", self._client.search, self._chunks_name, data=missing,
                               anns_field="sparse", limit=_MAX_LIMIT, output_fields=["doc_id", "version"],
                               timeout=self._timeout)
            for term, hits in zip(missing, found, strict=True):
                hits = list(hits)
                if len(hits) < _MAX_LIMIT:
                    cache[term] = sum(view.visible(h["entity"]["doc_id"], h["entity"]["version"]) for h in hits)
                else:
                    rows = self._query(self._chunks_name, f"text_match(stems, {_quote(term)})", ["count(*)"],
                                       "counting term frequencies")
                    cache[term] = min(int(rows[0]["count(*)"]), view.chunks)
        return {t: cache[t] for t in terms}

    def idf(self, terms: list[str]) -> list[float]:
        """Inverse document frequency of stemmed terms over the chunks (the evidence signal's word weights)."""
        with self.reading():
            documents = self._view().chunks
            if not documents:
                return [0.0 for _ in terms]
            frequencies = self._document_frequencies(terms)
        return [idf(documents, frequencies[t]) for t in terms]

    # --- checks (tests) ----------------------------------------------------------------------------------------------

    def stored_chunks(self, fields: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every chunk row in the collection, current or not (the tests and benchmarks read them)."""
        return [r for page in self._query_all(self._chunks_name, "id > 0", ["id", "doc_id", "version", "stems",
                                                                             *fields], "reading chunks") for r in page]

