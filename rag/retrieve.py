"""Find the passages that answer a question."""

from __future__ import annotations

from dataclasses import dataclass

from rag.embedder import Embedder, get_embedder
from rag.settings import Settings, get_settings
from rag.store import ChunkRecord, Store


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk: ChunkRecord

    def to_json(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "source": self.chunk.source,
            "page": self.chunk.page,
            "chunk_id": self.chunk.id,
            "text": self.chunk.text,
        }


class Retriever:
    def __init__(self, store: Store, *, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.store = store
        self.settings = settings or get_settings()
        self.embedder = embedder or get_embedder()

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        k = k or self.settings.top_k
        vector = self.embedder.embed_query(query)
        scored = self.store.search_dense(vector, k)
        chunks = self.store.chunks([chunk_id for chunk_id, _ in scored])
        scores = dict(scored)
        return [Hit(rank, scores[c.id], c) for rank, c in enumerate(chunks, start=1)]
