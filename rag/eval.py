"""``python -m rag.eval DATASET_DIR [-k 5] [--json] [--refusal OTHER_DIR]``: how well retrieval finds the answers.

DATASET_DIR holds ``docs/`` and ``questions.jsonl`` (rows of id, question, answers, source). A retrieved chunk is a
hit when it comes from the question's source file and contains one of its answers (case-insensitive, whitespace
normalised). The docs are ingested into a fresh temporary index unless ``--index`` is given.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.pipeline import Ingestor
from rag.cli import parser, print_json, say
from rag.embedder import get_embedder
from rag.retrieve import Hit, Retriever
from rag.store import Store, open_store


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


def ingest_dataset(dataset: Path, store: Store) -> dict[str, float]:
    """Ingest ``docs/`` and time it; the embedding model is loaded first, so the figure is ingest speed alone."""
    get_embedder().model()
    report = Ingestor(store).ingest([dataset / "docs"])
    if report.failed:
        raise SystemExit(f"ingest failed for {[f.path for f in report.failed]}")
    chunks = store.chunk_count()
    return {
        "ingest_seconds": round(report.seconds, 3),
        "chunks": chunks,
        "chunks_per_second": round(report.chunks / report.seconds, 2) if report.seconds else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m rag.eval", "Measure retrieval on a question set (docs/ + questions.jsonl).")
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    p.add_argument("-k", type=int, default=5, help="passages per question (default 5)")
    p.add_argument("--refusal", type=Path, metavar="OTHER_DIR",
                   help="also ask OTHER_DIR's questions (its documents are not indexed): how many are refused?")
    args = p.parse_args(argv)
    for folder in filter(None, [args.dataset, args.refusal]):
        if not (folder / "questions.jsonl").is_file():
            p.error(f"{folder} must hold questions.jsonl")
    if args.index is None and not (args.dataset / "docs").is_dir():
        p.error(f"{args.dataset} must hold docs/ (or give --index)")

    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        store = open_store(args.index or Path(tmp))
        result: dict[str, object] = {}
        ingest = ingest_dataset(args.dataset, store) if args.index is None else {
            "ingest_seconds": 0.0, "chunks": store.chunk_count(), "chunks_per_second": 0.0}
        retriever = Retriever(store)
        scores = score_retrieval(retriever, load_questions(args.dataset), args.k)
        in_corpus_refused = scores.pop("in_corpus_refused")
        result.update(scores)
        result.update(ingest)
        if args.refusal:
            result["refusal"] = {
                "out_of_corpus_refused": refusal_rate(retriever, load_questions(args.refusal), args.k),
                "in_corpus_refused": in_corpus_refused,
            }
        store.close()
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            say(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
