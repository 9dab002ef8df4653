"""Ways to merge ranked lists from dense and keyword search into one ranking."""

from __future__ import annotations

from collections.abc import Sequence

Ranked = Sequence[tuple[int, float]]  # (chunk id, score), best first


def reciprocal_rank(rankings: Sequence[Ranked], weights: Sequence[float], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion (Cormack et al., 2009): sum of weight / (k + rank); scores' scales do not matter."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def convex(dense: Ranked, sparse: Ranked, alpha: float) -> list[tuple[int, float]]:
    """alpha * dense + (1 - alpha) * keyword, each scaled to [0, 1] (Bruch et al., 2023, "TM2C2").

    Cosine is scaled from its theoretical floor of 0 for these models' unit vectors; BM25 by the best score of the
    query, since its scale depends on the query. A chunk missing from one list scores 0 there.
    """
    best_sparse = max((s for _, s in sparse), default=0.0) or 1.0
    fused: dict[int, float] = {}
    for chunk_id, score in dense:
        fused[chunk_id] = alpha * max(score, 0.0)
    for chunk_id, score in sparse:
        fused[chunk_id] = fused.get(chunk_id, 0.0) + (1 - alpha) * score / best_sparse
    return sorted(fused.items(), key=lambda item: -item[1])
