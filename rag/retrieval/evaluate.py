"""Scoring retrieval on a question set (``docs/`` + ``questions.jsonl``): hit@1, hit@k, MRR, latency, refusals.

A retrieved chunk is a hit when it comes from the question's source file and contains one of its answers
(case-insensitive, whitespace normalised): the rule of ``../shared/eval/xquad-dev/README.md``.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rag.retrieval.retriever import Hit, Retriever


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    source: str


def load_questions(dataset: Path) -> list[Question]:
    rows = (json.loads(line) for line in (dataset / "questions.jsonl").read_text().splitlines() if line.strip())
    return [Question(r["id"], r["question"], list(r["answers"]), r["source"]) for r in rows]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def is_hit(hit: Hit, question: Question) -> bool:
    if hit.chunk.source != question.source:
        return False
    text = _squash(hit.chunk.text)
    return any(_squash(answer) in text for answer in question.answers)


def first_hit_rank(hits: list[Hit], question: Question) -> int | None:
    return next((hit.rank for hit in hits if is_hit(hit, question)), None)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def score_retrieval(retriever: Retriever, questions: list[Question], k: int) -> dict[str, float]:
    """hit@1, hit@k, MRR, query latency (embed + search + fuse + evidence) and the share wrongly judged "no
    evidence", over ``questions`` whose documents are indexed."""
    ranks: list[int | None] = []
    latencies: list[float] = []
    refused = 0
    retriever.search("warm-up query", k)  # the first query pays for loading the model and the index
    for question in questions:
        started = time.perf_counter()
        retrieval = retriever.retrieve(question.question, k)
        latencies.append((time.perf_counter() - started) * 1000)
        ranks.append(first_hit_rank(retrieval.hits, question))
        refused += not retrieval.evidence.found
    n = max(len(questions), 1)
    return {
        "questions": len(questions),
        "hit@1": round(sum(r == 1 for r in ranks) / n, 4),
        f"hit@{k}": round(sum(r is not None for r in ranks) / n, 4),
        "mrr": round(sum(1 / r for r in ranks if r) / n, 4),
        "query_ms_p50": round(statistics.median(latencies) if latencies else 0.0, 2),
        "query_ms_p95": round(percentile(latencies, 0.95), 2),
        "in_corpus_refused": round(refused / n, 4),
    }


def refusal_rate(retriever: Retriever, questions: list[Question], k: int) -> float:
    """Share of ``questions`` (whose documents are not indexed) judged "no evidence"."""
    refused = sum(not retriever.retrieve(q.question, k).evidence.found for q in questions)
    return round(refused / max(len(questions), 1), 4)
