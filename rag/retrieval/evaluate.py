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

from rag.errors import DatasetError  # defined with the project's other errors; imported from here too
from rag.retrieval.retriever import Hit, Retriever


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    source: str


def read_jsonl(path: Path) -> list[object]:
    """JSON Lines: one JSON value per line. Lines end at "\n" only: U+2028, U+2029, U+0085 and the other breaks
    ``str.splitlines`` knows are ordinary characters inside JSON strings (abstracts hold them). Blank lines and a
    trailing "\r" are allowed. Raises ``DatasetError`` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from exc
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DatasetError(f"{path}, line {number}: not JSON ({exc})") from exc
    return rows


def load_questions(dataset: Path) -> list[Question]:
    """The questions of ``dataset/questions.jsonl``: rows of id, question, answers, source."""
    path = dataset / "questions.jsonl"
    questions = []
    for number, row in enumerate(read_jsonl(path), start=1):
        try:
            assert isinstance(row, dict)
            questions.append(Question(str(row["id"]), str(row["question"]), [str(a) for a in row["answers"]],
                                      str(row["source"])))
        except (AssertionError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}, row {number}: expected {{id, question, answers, source}} "
                               f"({type(exc).__name__}: {exc})") from exc
    return questions


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
