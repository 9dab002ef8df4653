"""The index on a Milvus server: the same ``rag.index.base.Index`` as the embedded store, for libraries that outgrow
one machine (several app instances and ingest workers writing into one Milvus cluster). ``RAG_STORE=milvus`` picks
it (``rag.index.store.open_store``); ``docs/milvus.md`` has the measurements and what a cluster changes.

Three collections per index, named ``PREFIX_chunks``, ``PREFIX_docs`` and ``PREFIX_meta``:
- chunks: id, doc_id, version, the unit vector (FLOAT_VECTOR, AUTOINDEX, inner product = cosine), the chunk's
  stems (``rag.index.keyword.tokenize`` of its indexed text, space-joined) in a VARCHAR analysed for Milvus's
  full-text search, whose ``Function(BM25)`` fills a sparse field, then text, context, page, section, offsets,
  ordinal and sha256. Milvus tokenizes the stems only by splitting them again, so its BM25 sees the very terms the
  embedded store's FTS5 sees.
- docs: one row per document, keyed by its file's absolute path: the document's id, its *current version*, label,
  base, kind, sha256, size, pages, recipe, times, and its chunk and token counts (BM25's collection statistics).
- meta: the embedding model and dimension (an index refuses vectors of another model), the generation (bumped by
  every committed change), the writer's lease, and the writes in flight.

Why it is safe without transactions (Milvus has none across rows):
- A document is swapped whole by versions. A write inserts the new chunks under a fresh version, then upserts the
  document's one row to name that version (a single-row upsert is atomic), then retires the old version.
  Readers keep only chunks whose (doc_id, version) is the current one in their snapshot of the docs rows
  (``reading()``), so before the upsert they see the old version whole and after it the new one whole; never half.
  A retired version's chunks are deleted by a writer ``RETIRE_SECONDS`` later, so a read that took its snapshot
  before the switch still finds every chunk of the version it sees.
- A writer killed midway leaves chunks of a version no row names: invisible, and deleted by the next writer, which
  finds them through the "pending" record the dead writer left in meta.
- Keyword scores are Lucene's BM25 as in the embedded store: Milvus's BM25 search picks the candidates, which are
  then scored with ``rag.index.keyword.bm25`` on their stems, with document frequencies counted from Milvus's
  inverted index (a BM25 search per term lists the chunks holding it; cached per generation) and the chunk and
  token totals of the snapshot. So fusion
  and the evidence gate (``idf``) get the same numbers from either store.
- The writer lock is a lease row in meta (owner, expiry), taken by writing it and reading it back after a pause,
  renewed while held. Milvus offers no compare-and-swap, so two writers racing for a free lease in the same few
  milliseconds could both win; that can cost nothing worse than last-writer-wins on one document (random 52-bit
  ids never collide, and each writer deletes only the version it replaced). A Milvus cluster runs etcd: a
  deployment that wants a strict lock takes it there (see docs/milvus.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rag.index.keyword import bm25, idf, tokenize
from rag.index.labels import unique_labels
from rag.index.records import ChunkRecord, DocumentInfo, NewChunk, NoIndexError, StoreError, Stored, indexed_text

T = TypeVar("T")

_EXTRA_CANDIDATES = 20  # BM25 candidates beyond k, rescored (as the embedded store does with FTS5's)
_MAX_LIMIT = 16_384  # Milvus's largest top-k and query page
_LEASE_SECONDS = 30.0  # a writer's lease lasts this long unless renewed (every third of it)
_SETTLE_SECONDS = 0.05  # between writing the lease and reading it back: a racing writer's write lands in between
_INSERT_ROWS = 500  # chunks per insert request
# A replaced or removed version's chunks stay this long (invisible to new reads) before a writer deletes them, so
# that a read which began before the switch still finds the version it is reading whole.
RETIRE_SECONDS = 120.0
_TEXT = 65_535  # Milvus's longest VARCHAR
_DOC_FIELDS = ["path", "doc_id", "version", "name", "base", "file_name", "kind", "sha256", "size", "pages", "recipe",
               "added_at", "updated_at", "chunks", "tokens"]
_CHUNK_FIELDS = ["id", "doc_id", "version", "page", "section", "start", "end", "ordinal", "text", "context"]
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}
_NOT_LOADED = 101  # Milvus's "collection not loaded" (after a restart, a collection waits to be loaded again)
_PLACEHOLDER = [1.0, 0.0]  # docs and meta rows carry a 2-d vector: Milvus wants one in every collection


def collection_prefix(index_dir: Path) -> str:
    """The collections' prefix for an index named by a local folder: each ``--index`` folder is its own index."""
    digest = hashlib.sha256(os.path.abspath(index_dir).encode("utf-8")).hexdigest()[:16]
    return f"rag_{digest}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_id() -> int:
    """A random positive id below 2**52 (exact in JSON numbers): writers on any machine need no shared counter."""
    return secrets.randbits(52) | 1


def _quote(text: str) -> str:
    return json.dumps(text)  # a Milvus filter's string literal: double quotes, backslash escapes


@dataclass
class _Snapshot:
    """The documents as one read saw them: which version of each is current, and BM25's collection statistics."""

    generation: int
    rows: dict[str, dict[str, Any]]  # path -> docs row
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


class MilvusStore:
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
        self._renewer: threading.Thread | None = None
        self._renewing = threading.Event()
        self._client = self._call("connecting", self._connect, token)
        if not self._call("opening the index", self._client.has_collection, self._meta_name):
            if not create:
                raise NoIndexError(self.dir)
            self._create_collections()
        self._check_model()

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
        from pymilvus import DataType, Function, FunctionType

        c = self._client
        chunks = c.create_schema(auto_id=False)
        chunks.add_field("id", DataType.INT64, is_primary=True)
        chunks.add_field("doc_id", DataType.INT64)
        chunks.add_field("version", DataType.INT64)
        chunks.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        chunks.add_field("stems", DataType.VARCHAR, max_length=_TEXT, enable_analyzer=True, enable_match=True,
                         analyzer_params={"tokenizer": "standard"})
        chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        chunks.add_field("text", DataType.VARCHAR, max_length=_TEXT)
        chunks.add_field("context", DataType.VARCHAR, max_length=_TEXT, nullable=True)
        chunks.add_field("section", DataType.VARCHAR, max_length=_TEXT, nullable=True)
        chunks.add_field("page", DataType.INT64, nullable=True)
        for name in ("start", "end", "ordinal", "n_tokens"):
            chunks.add_field(name, DataType.INT64)
        chunks.add_field("sha256", DataType.VARCHAR, max_length=64)
        chunks.add_function(Function(name="stems_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["stems"], output_field_names=["sparse"]))
        index = c.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": 1.5, "bm25_b": 0.75})

        docs = c.create_schema(auto_id=False)
        docs.add_field("path", DataType.VARCHAR, is_primary=True, max_length=4096)
        for name in ("doc_id", "version", "size", "chunks", "tokens"):
            docs.add_field(name, DataType.INT64)
        docs.add_field("pages", DataType.INT64, nullable=True)
        for name in ("name", "base", "file_name", "recipe"):
            docs.add_field(name, DataType.VARCHAR, max_length=4096)
        for name in ("kind", "sha256", "added_at", "updated_at"):
            docs.add_field(name, DataType.VARCHAR, max_length=128)
        docs.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)

        meta = c.create_schema(auto_id=False)
        meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
        meta.add_field("value", DataType.VARCHAR, max_length=_TEXT)
        meta.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)

        def placeholder_index() -> Any:
            params = c.prepare_index_params()
            params.add_index("placeholder", index_type="AUTOINDEX", metric_type="IP")
            return params

        for name, schema, params in ((self._chunks_name, chunks, index), (self._docs_name, docs, placeholder_index()),
                                     (self._meta_name, meta, placeholder_index())):  # meta last: it marks "made"
            if not self._call("creating the index", c.has_collection, name):
                self._call("creating the index", c.create_collection, name, schema=schema, index_params=params,
                           consistency_level="Strong")
        if self._meta("model") is None:
            self._set_meta("model", json.dumps({"embed_model": self.embed_model, "dim": self.dim}))
            self._set_meta("generation", "0")

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
        rows = self._query(self._docs_name, "doc_id > 0", _DOC_FIELDS, "reading the documents")
        if len(rows) >= _MAX_LIMIT:
            rows = [r for page in self._query_all(self._docs_name, "doc_id > 0", _DOC_FIELDS, "reading the documents")
                    for r in page]
        snapshot = _Snapshot(generation, {row["path"]: row for row in rows})
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
        return DocumentInfo(row["doc_id"], row["name"], row["path"], row["kind"], row["sha256"], row["size"],
                            row["pages"], row["chunks"], row["recipe"], row["added_at"], row["updated_at"], row["base"])

    def documents(self, name: str | None = None) -> list[DocumentInfo]:
        """All documents by label, or the one labelled ``name`` (an empty list if there is none)."""
        with self.reading():
            rows = self._view().rows.values()
        return sorted((self._info(r) for r in rows if name is None or r["name"] == name), key=lambda d: d.name)

    def document(self, name: str) -> DocumentInfo | None:
        found = self.documents(name)
        return found[0] if found else None

    def document_at(self, path: str | Path) -> DocumentInfo | None:
        row = self._view().rows.get(os.path.abspath(path))
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

    # --- writing -----------------------------------------------------------------------------------------------------

    def _lease(self) -> dict[str, Any] | None:
        value = self._meta("writer")
        return json.loads(value) if value else None

    @staticmethod
    def _holder_alive(lease: dict[str, Any]) -> bool:
        """False when the lease's holder was a process of this host that is gone (killed writers free it at once;
        a holder on another host keeps it until it expires)."""
        if lease.get("host") != os.uname().nodename:
            return True
        try:
            os.kill(int(lease["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _try_lease(self) -> bool:
        lease = self._lease()
        if lease and lease["owner"] != self._owner and lease["expires"] > time.time() and self._holder_alive(lease):
            return False
        self._set_meta("writer", json.dumps({"owner": self._owner, "expires": time.time() + _LEASE_SECONDS,
                                             "host": os.uname().nodename, "pid": os.getpid()}))
        time.sleep(_SETTLE_SECONDS)  # a writer that read the lease free at the same moment has written by now
        lease = self._lease()
        return bool(lease and lease["owner"] == self._owner)

    def _renew(self) -> None:
        while not self._renewing.wait(_LEASE_SECONDS / 3):
            try:
                self._set_meta("writer", json.dumps({"owner": self._owner, "expires": time.time() + _LEASE_SECONDS,
                                                     "host": os.uname().nodename, "pid": os.getpid()}))
            except StoreError:
                pass  # the server is away: the write in progress fails on its own

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewing.set()
            self._renewer.join()
            self._renewer = None

    @contextmanager
    def writer(self, timeout: float = 600) -> Iterator[MilvusStore]:
        """Hold the index's writer lease (``StoreError`` when another writer keeps it longer than ``timeout``)."""
        if self._writing:
            self._writing += 1
            try:
                yield self
            finally:
                self._writing -= 1
            return
        deadline = time.monotonic() + timeout
        while not self._try_lease():
            if time.monotonic() >= deadline:
                holder = self._lease() or {}
                raise StoreError(
                    f"the index {self.prefix} on the Milvus server at {self.uri} is busy:"
                    " another process is writing to it"
                    f" ({holder.get('host')}, pid {holder.get('pid')}); try again when it is done"
                    f" (waited {timeout:g} s)"
                )
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        self._renewing.clear()
        self._renewer = threading.Thread(target=self._renew, name="milvus-lease", daemon=True)
        self._renewer.start()
        self._writing = 1
        try:
            self._finish_interrupted_writes()
            self._sweep_retired()
            yield self
        finally:
            self._writing = 0
            self._stop_renewing()
            try:
                if (self._lease() or {}).get("owner") == self._owner:
                    self._call("releasing the writer lease", self._client.delete, self._meta_name,
                               filter='key == "writer"', timeout=self._timeout)
            except StoreError:
                pass  # the lease runs out by itself

    def _require_writer(self) -> None:
        if not self._writing:
            raise StoreError("writes need `with store.writer():`")

    def _finish_interrupted_writes(self) -> None:
        """Delete the chunks of versions a killed writer left behind (recorded as pending before it wrote them)."""
        pending = self._query(self._meta_name, 'key like "pending:%"', ["key", "value"], "reading the index's state")
        if not pending:
            return
        current = {row["doc_id"]: row["version"] for row in self._take_snapshot().rows.values()}
        for row in pending:
            work = json.loads(row["value"])
            if work["new"] is not None and current.get(work["doc_id"]) != work["new"]:
                self._delete_chunks(work["doc_id"], work["new"])  # never named: never seen
            if work["old"] is not None and current.get(work["doc_id"]) != work["old"]:
                self._retire(work["doc_id"], work["old"])  # seen until the switch: a read may still hold it
            self._call("writing the index's state", self._client.delete, self._meta_name,
                       filter=f"key == {_quote(row['key'])}", timeout=self._timeout)
        self._bump()

    def _retire(self, doc_id: int, version: int) -> None:
        self._set_meta(f"retired:{doc_id}:{version}", json.dumps({"doc_id": doc_id, "version": version,
                                                                  "at": time.time()}))

    def retired_versions(self) -> set[int]:
        """The versions replaced or removed but not yet deleted (their chunks are invisible to new reads)."""
        rows = self._query(self._meta_name, 'key like "retired:%"', ["value"], "reading the index's state")
        return {json.loads(r["value"])["version"] for r in rows}

    def _sweep_retired(self) -> None:
        """Delete the chunks of versions retired more than ``RETIRE_SECONDS`` ago."""
        rows = self._query(self._meta_name, 'key like "retired:%"', ["key", "value"], "reading the index's state")
        for row in rows:
            work = json.loads(row["value"])
            if work["at"] <= time.time() - RETIRE_SECONDS:
                self._delete_chunks(work["doc_id"], work["version"])
                self._call("writing the index's state", self._client.delete, self._meta_name,
                           filter=f"key == {_quote(row['key'])}", timeout=self._timeout)

    def _delete_chunks(self, doc_id: int, version: int) -> None:
        self._call("deleting chunks", self._client.delete, self._chunks_name,
                   filter=f"doc_id == {int(doc_id)} and version == {int(version)}", timeout=self._timeout)

    def _bump(self) -> None:
        self._set_meta("generation", str(self._generation() + 1))

    def _relabelled(self, file_name: str, path: str, row: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The docs rows whose labels change when ``row`` (for ``path``; None: removed) joins the documents with the
        same file name, ``row`` first (with its label) when given."""
        same = {r["path"]: r for r in self._query(self._docs_name, f"file_name == {_quote(file_name)}", _DOC_FIELDS,
                                                  "reading the documents")}
        same.pop(path, None)
        if row is not None:
            same[path] = row
        labels = unique_labels({p: r["base"] for p, r in same.items()})
        changed = [{**r, "name": labels[p]} for p, r in same.items() if p != path and labels[p] != r["name"]]
        return ([{**row, "name": labels[path]}] if row is not None else []) + changed

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
        """Store the document read from ``path`` and its chunks, replacing an earlier version of the same file:
        the new version's chunks first, then the document's row names it, then the old version's chunks go."""
        self._require_writer()
        path = os.path.abspath(path)
        old = self._query(self._docs_name, f"path == {_quote(path)}", _DOC_FIELDS, "reading the documents")
        previous = old[0] if old else None
        doc_id = previous["doc_id"] if previous else _new_id()
        version = _new_id()
        pending = f"pending:{doc_id}:{version}"
        self._set_meta(pending, json.dumps({"doc_id": doc_id, "new": version,
                                            "old": previous["version"] if previous else None}))
        stems = [tokenize(indexed_text(c.text, c.context)) for c in chunks]
        rows = [
            {"id": _new_id(), "doc_id": doc_id, "version": version,
             "vector": np.asarray(c.vector, dtype=np.float32).tolist(), "stems": " ".join(words), "text": c.text,
             "context": c.context, "section": c.section, "page": c.page, "start": c.start, "end": c.end,
             "ordinal": ordinal, "n_tokens": c.n_tokens, "sha256": c.sha256}
            for ordinal, (c, words) in enumerate(zip(chunks, stems, strict=True))
        ]
        for start in range(0, len(rows), _INSERT_ROWS):
            self._call("writing chunks", self._client.insert, self._chunks_name, rows[start : start + _INSERT_ROWS],
                       timeout=self._timeout)
        now = _now()
        row = {"path": path, "doc_id": doc_id, "version": version, "name": base, "base": base,
               "file_name": Path(path).name, "kind": kind, "sha256": sha256, "size": size, "pages": pages,
               "recipe": recipe, "added_at": previous["added_at"] if previous else now, "updated_at": now,
               "chunks": len(rows), "tokens": sum(len(words) for words in stems)}
        changed = self._relabelled(Path(path).name, path, row)
        # the switch: one upsert names the new version (and gives the labels it changes)
        self._call("writing the document", self._client.upsert, self._docs_name,
                   [{**r, "placeholder": _PLACEHOLDER} for r in changed], timeout=self._timeout)
        if previous:
            self._retire(doc_id, previous["version"])
        self._call("writing the index's state", self._client.delete, self._meta_name,
                   filter=f"key == {_quote(pending)}", timeout=self._timeout)
        self._bump()
        return Stored(changed[0]["name"], previous is not None)

    def remove_document(self, name: str) -> bool:
        """Delete a document (by label, or by its file's absolute path) with its chunks. False if there is none."""
        self._require_writer()
        rows = self._query(self._docs_name, f"name == {_quote(name)} or path == {_quote(name)}", _DOC_FIELDS,
                           "reading the documents")
        if not rows:
            return False
        row = sorted(rows, key=lambda r: r["name"] != name)[0]
        pending = f"pending:{row['doc_id']}:{row['version']}"
        self._set_meta(pending, json.dumps({"doc_id": row["doc_id"], "new": None, "old": row["version"]}))
        self._call("deleting the document", self._client.delete, self._docs_name,
                   filter=f"path == {_quote(row['path'])}", timeout=self._timeout)
        changed = self._relabelled(row["file_name"], row["path"], None)
        if changed:
            self._call("relabelling documents", self._client.upsert, self._docs_name,
                       [{**r, "placeholder": _PLACEHOLDER} for r in changed], timeout=self._timeout)
        self._retire(row["doc_id"], row["version"])
        self._call("writing the index's state", self._client.delete, self._meta_name,
                   filter=f"key == {_quote(pending)}", timeout=self._timeout)
        self._bump()
        return True

    # --- checks (tests) ----------------------------------------------------------------------------------------------

    def stored_chunks(self, fields: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every chunk row in the collection, current or not (the tests and benchmarks read them)."""
        return [r for page in self._query_all(self._chunks_name, "id > 0", ["id", "doc_id", "version", "stems",
                                                                             *fields], "reading chunks") for r in page]
