"""Chunking study: hit@1 / hit@5 against chunk size, overlap and heading context, for dense and hybrid search.

    .venv/bin/python bench/chunking.py [DATASET_DIR] [--sizes 64,96,128,192,254] [--overlaps 0,0.25]

Each configuration is ingested into its own temporary index with the real model, then every question is asked
(questions are embedded once and reused: this study compares quality, bench/retrieval.py measures speed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.pipeline import Ingestor  # noqa: E402
from rag.index.embedder import Embedder, get_embedder  # noqa: E402
from rag.index.store import open_store  # noqa: E402
from rag.retrieval.evaluate import load_questions, score_retrieval  # noqa: E402
from rag.retrieval.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad-dev"
MODES = {
    "dense": dict(retrieval_mode="dense"),
    "hybrid-rrf": dict(fusion="rrf"),
    "hybrid-convex": dict(fusion="convex"),
}


class QueryCache(Embedder):
    """The real model, with every question embedded once in a batch and reused across configurations."""

    def __init__(self, real: Embedder, queries: list[str]) -> None:
        super().__init__(real.path)
        self.real = real
        self.name = real.name
        self._cache = dict(zip(queries, real.embed(queries, batch_size=64), strict=True))

    @property
    def loaded(self) -> bool:
        return self.real.loaded

    def load(self) -> None:
        self.real.load()

    def embed_batch(self, texts: list[str]):  # noqa: ANN201
        return self.real.embed_batch(texts)

    def embed_query(self, text: str):  # type: ignore[override]
        return self._cache[text] if text in self._cache else self.real.embed_query(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("--sizes", default="64,96,128,192,254")
    p.add_argument("--overlaps", default="0,0.25", help="fractions of the chunk size")
    p.add_argument("--context", default="0,1", help="heading context off (0) / on (1)")
    args = p.parse_args()
    questions = load_questions(args.dataset)
    queries = QueryCache(get_embedder(), [q.question for q in questions])
    print(f"{len(questions)} questions on {args.dataset.name}; hit@1 / hit@5 / MRR")
    print("| tokens | overlap | heading | chunks | " + " | ".join(MODES) + " |")
    print("|---:|---:|:---:|---:|" + "---|" * len(MODES))
    for size in (int(s) for s in args.sizes.split(",")):
        for fraction in (float(o) for o in args.overlaps.split(",")):
            for context in (bool(int(c)) for c in args.context.split(",")):
                overlap = int(size * fraction)
                settings = Settings(chunk_tokens=size, chunk_overlap=overlap, heading_context=context)
                with tempfile.TemporaryDirectory() as tmp:
                    store = open_store(Path(tmp))
                    Ingestor(store, settings=settings).ingest([args.dataset / "docs"])
                    cells = []
                    for overrides in MODES.values():
                        mode = settings.model_copy(update=overrides)
                        r = score_retrieval(Retriever(store, settings=mode, embedder=queries), questions, 5)
                        cells.append(f"{r['hit@1']:.3f} / {r['hit@5']:.3f} / {r['mrr']:.3f}")
                    print(f"| {size} | {overlap} | {'yes' if context else 'no'} | {store.chunk_count()} | "
                          + " | ".join(cells) + " |", flush=True)
                    store.close()


if __name__ == "__main__":
    main()
