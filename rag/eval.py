"""``python -m rag.eval DATASET_DIR [-k 5] [--json] [--refusal OTHER_DIR]``: how well retrieval finds the answers.

DATASET_DIR holds ``docs/`` and ``questions.jsonl`` (rows of id, question, answers, source); the scoring is in
``rag.retrieval.evaluate``. The docs are ingested into a fresh temporary index unless ``--index`` is given: this
entry point sits on top of both ``ingest`` and ``rag``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ingest.pipeline import Ingestor
from rag.cli import add_k_option, open_index, parser, print_json, run, say, settings_with
from rag.index.base import Index
from rag.index.embedder import get_embedder
from rag.index.store import open_store
from rag.retrieval.evaluate import DatasetError, load_questions, refusal_rate, score_retrieval
from rag.retrieval.retriever import Retriever


def ingest_dataset(dataset: Path, store: Index) -> dict[str, float]:
    """Ingest ``docs/`` and time it; the embedding model is loaded first, so the figure is ingest speed alone."""
    get_embedder().load()
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
    add_k_option(p, "passages per question")
    p.add_argument("--refusal", type=Path, metavar="OTHER_DIR",
                   help="also ask OTHER_DIR's questions (its documents are not indexed): how many are refused?")
    args = p.parse_args(argv)
    args.k = settings_with(p, top_k=args.k).top_k
    for folder in filter(None, [args.dataset, args.refusal]):
        if not (folder / "questions.jsonl").is_file():
            p.error(f"{folder} must hold questions.jsonl")
    if args.index is None and not (args.dataset / "docs").is_dir():
        p.error(f"{args.dataset} must hold docs/ (or give --index)")

    try:
        questions = load_questions(args.dataset)
        others = load_questions(args.refusal) if args.refusal else []
    except DatasetError as exc:
        say(f"error: {exc}")
        return 2
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        # a given --index is read, never created; without one the docs go into a fresh temporary index
        # (on Milvus the temporary index is a set of collections named after the folder, dropped at the end)
        store = open_index(args) if args.index is not None else open_store(Path(tmp), scratch=True)
        result: dict[str, object] = {}
        ingest = ingest_dataset(args.dataset, store) if args.index is None else {
            "ingest_seconds": 0.0, "chunks": store.chunk_count(), "chunks_per_second": 0.0}
        retriever = Retriever(store)
        scores = score_retrieval(retriever, questions, args.k)
        in_corpus_refused = scores.pop("in_corpus_refused")
        result.update(scores)
        result.update(ingest)
        if args.refusal:
            result["refusal"] = {
                "out_of_corpus_refused": refusal_rate(retriever, others, args.k),
                "in_corpus_refused": in_corpus_refused,
            }
        if args.index is None and hasattr(store, "drop"):
            store.drop()
        store.close()
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            say(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    run(main)
