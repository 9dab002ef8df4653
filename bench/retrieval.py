"""Retrieval benchmark: the usual tutorial pipeline vs the shipped retriever, on the same data, in one run.

    .venv/bin/python bench/retrieval.py [DATASET_DIR] [-k 5]

Reference: pure dense search (all-MiniLM-L6-v2 + FAISS) over 1000-character chunks, as most tutorials build it,
and pure dense search over our chunks. Shipped: the default settings (hybrid dense + BM25, heading context).
Latency is per query: embed + search + fuse (+ the evidence signal for the shipped retriever).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

from ingest.loaders import load_document  # noqa: E402
from rag.eval import ingest_dataset  # noqa: E402
from rag.index.embedder import get_embedder  # noqa: E402
from rag.index.records import NewChunk, sha256_text  # noqa: E402
from rag.index.store import open_store  # noqa: E402
from rag.retrieval.evaluate import first_hit_rank, load_questions, score_retrieval  # noqa: E402
from rag.retrieval.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad-dev"


def tutorial_index(dataset: Path, folder: Path):
    """1000-character chunks with 200 overlap (the common tutorial recipe), no heading context."""
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    embedder = get_embedder()
    store = open_store(folder)
    with store.writer():
        for path in sorted((dataset / "docs").iterdir()):
            text = "\n\n".join(r.text for r in load_document(path).records)
            pieces = splitter.split_text(text)
            vectors = embedder.embed(pieces)
            store.put_document(
                path=path, base=path.name, kind="md", sha256=sha256_text(text), size=len(text), pages=None,
                recipe="tutorial", chunks=[
                    NewChunk(t, None, None, 0, len(t), embedder.count_tokens(t), None, sha256_text(t), v)
                    for t, v in zip(pieces, vectors, strict=True)
                ],
            )
    return store


def neighbour_expansion(store, settings: Settings, questions, k: int) -> tuple[float, float, float]:
    """hit@1, hit@k and mean passage length (words) when each passage is widened by one chunk on either side.

    Widening can only make a passage more likely to contain an answer, so the hit rates rise by construction;
    the cost is passage length, which the answer step pays in the model's context window.
    """
    retriever = Retriever(store, settings=settings)
    ranks, lengths = [], []
    for question in questions:
        hits = retriever.search(question.question, k)
        wide = []
        for hit in hits:
            text = "\n\n".join(c.text for c in store.neighbours(hit.chunk, 1))
            wide.append(replace(hit, chunk=replace(hit.chunk, text=text)))
            lengths.append(len(text.split()))
        ranks.append(first_hit_rank(wide, question))
    n = len(questions)
    return sum(r == 1 for r in ranks) / n, sum(r is not None for r in ranks) / n, sum(lengths) / len(lengths)


def relevance_cut(store, settings: Settings, questions, k: int) -> tuple[float, float, float]:
    """hit@k over all k passages, hit@k over the passages the answer step keeps (those scoring at least
    ``settings.min_relative_score`` of the best), and how many passages it keeps on average."""
    retriever = Retriever(store, settings=settings)
    before, after, kept = 0, 0, 0
    for question in questions:
        retrieval = retriever.retrieve(question.question, k)
        relevant = retrieval.relevant(settings.min_relative_score)
        before += first_hit_rank(retrieval.hits, question) is not None
        after += first_hit_rank(relevant, question) is not None
        kept += len(relevant)
    n = len(questions)
    return before / n, after / n, kept / n


def _all_ids(store) -> list[int]:
    return [row[0] for row in store._db.execute("SELECT id FROM chunks")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("-k", type=int, default=5)
    args = p.parse_args()
    questions = load_questions(args.dataset)
    shipped = Settings()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tutorial = tutorial_index(args.dataset, Path(tmp) / "tutorial")
        ours = open_store(Path(tmp) / "ours")
        ingest_dataset(args.dataset, ours)  # with the default settings, as shipped
        dense = shipped.model_copy(update={"retrieval_mode": "dense"})
        for label, store, settings in (
            ("reference: dense, 1000-char chunks", tutorial, dense),
            ("dense, our chunks", ours, dense),
            (f"shipped: {shipped.retrieval_mode} ({shipped.fusion})", ours, shipped),
        ):
            rows.append((label, store.chunk_count(), score_retrieval(Retriever(store, settings=settings), questions, args.k)))
        plain_words = sum(len(c.text.split()) for c in ours.chunks(_all_ids(ours))) / ours.chunk_count()
        wide = neighbour_expansion(ours, shipped, questions, args.k)
        cuts = [(mode, relevance_cut(ours, shipped.model_copy(update={"retrieval_mode": mode}), questions, args.k))
                for mode in ("hybrid", "dense", "keyword")]
    print(f"{args.dataset.name}: {len(questions)} questions, k={args.k}")
    print(f"| retriever | chunks | hit@1 | hit@{args.k} | MRR | p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, chunks, r in rows:
        print(f"| {label} | {chunks} | {r['hit@1']:.3f} | {r[f'hit@{args.k}']:.3f} | {r['mrr']:.3f} | "
              f"{r['query_ms_p50']:.1f} | {r['query_ms_p95']:.1f} |")
    print(f"\nneighbour expansion (shipped, each passage +-1 chunk): hit@1 {wide[0]:.3f}, hit@{args.k} {wide[1]:.3f}, "
          f"{wide[2]:.0f} words a passage instead of {plain_words:.0f}")
    print(f"\npassages given to the model (score >= {shipped.min_relative_score} x the best), of the top {args.k}:")
    for mode, (before, after, kept) in cuts:
        print(f"  {mode:>7}: hit@{args.k} {before:.3f} -> {after:.3f} with {kept:.2f} passages kept on average")


if __name__ == "__main__":
    main()
