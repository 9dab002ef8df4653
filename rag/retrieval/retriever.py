"""Find the passages that answer a question: dense and keyword search, fused; and judge whether any of them can."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from rag.index.base import Index
from rag.index.embedder import Embedder, embedder_for
from rag.index.records import ChunkRecord, indexed_text
from rag.retrieval.evidence import Evidence, coverage, judge, unmentioned_role
from rag.retrieval.fusion import convex, reciprocal_rank
from rag.settings import Settings, get_settings


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # the fused score that ordered the hits
    chunk: ChunkRecord
    dense: float | None = None  # cosine similarity to the query, when dense search found the chunk
    sparse: float | None = None  # BM25 score, when keyword search found the chunk

    def to_json(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "source": self.chunk.source,
            "page": self.chunk.page,
            "chunk_id": self.chunk.id,
            "text": self.chunk.text,
            "kind": self.chunk.kind,
            "section": self.chunk.section,
        }


@dataclass(frozen=True)
class Retrieval:
    query: str
    hits: list[Hit]
    evidence: Evidence

    def relevant(self, share: float) -> list[Hit]:
        """The hits scoring at least ``share`` of the best one (so the best always stays): what is worth showing a
        model and a reader, rather than the weak tail that fills up the top k."""
        if not self.hits:
            return []
        floor = share * self.hits[0].score  # (a negative best cosine would put the floor above it)
        return [self.hits[0], *(h for h in self.hits[1:] if h.score >= floor)]


class Retriever:
    def __init__(self, store: Index, *, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.store = store
        self.settings = settings or get_settings()
        self.embedder = embedder or embedder_for(store.dir)

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        return self.retrieve(query, k).hits

    def retrieve(self, query: str, k: int | None = None) -> Retrieval:
        """The ``k`` best passages for ``query`` and whether they hold evidence for an answer."""
        s = self.settings
        k = k or s.top_k
        pool = max(s.candidates, k)
        vector = self.embedder.embed_query(query)
        with self.store.reading():  # every read below sees the same generation of the index
            # Dense search always runs: its best similarity is half of the evidence signal.
            dense = self.store.search_dense(vector, pool if s.retrieval_mode != "keyword" else 1)
            sparse = self.store.search_sparse(query, pool) if s.retrieval_mode != "dense" else []
            if s.retrieval_mode == "dense":
                fused = dense
            elif s.retrieval_mode == "keyword":
                fused = sparse
            elif s.fusion == "rrf":
                fused = reciprocal_rank([dense, sparse], [s.dense_weight, s.sparse_weight], s.rrf_k)
            else:
                fused = convex(dense, sparse, s.dense_weight / (s.dense_weight + s.sparse_weight))
            dense_scores, sparse_scores = dict(dense), dict(sparse)
            hits = [
                Hit(rank, score, chunk, dense_scores.get(chunk.id), sparse_scores.get(chunk.id))
                for rank, (chunk, score) in enumerate(islice(self._distinct(fused, 2 * k), k), start=1)
            ]
            passages = [indexed_text(h.chunk.text, h.chunk.context) for h in hits]
            best_dense = dense[0][1] if dense else 0.0
            evidence = judge(best_dense, coverage(query, passages, self.store.idf))
            role = unmentioned_role(query, passages) if evidence.found else None
            if role is not None:  # the topic is there, the thing asked for is not: nothing to answer from
                evidence = Evidence(False, evidence.confidence, evidence.dense, evidence.coverage, unmentioned=role)
            return Retrieval(query, hits, evidence)

    def _distinct(self, fused: list[tuple[int, float]], batch: int) -> Iterator[tuple[ChunkRecord, float]]:
        """The fused candidates as chunks, best first, each passage text once (a file uploaded twice would
        otherwise fill the top k with the same text twice); read from the store ``batch`` at a time."""
        seen: set[str] = set()
        for start in range(0, len(fused), batch):
            window = fused[start : start + batch]
            chunks = {c.id: c for c in self.store.chunks([chunk_id for chunk_id, _ in window])}
            for chunk_id, score in window:
                chunk = chunks.get(chunk_id)
                text = " ".join(chunk.text.split()).lower() if chunk else ""
                if chunk is not None and text not in seen:
                    seen.add(text)
                    yield chunk, score
