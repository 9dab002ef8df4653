"""Which keyword engine: ``bench/keyword_engines.py --chunks 10000 100000 [--quality ../shared/eval/xquad-dev] [--json]``.

Three engines over the same stems (``rag.index.keyword.tokenize``), each with its own BM25:
- SQLite FTS5 as the store uses it (external content, candidates rescored with Lucene BM25 at k1 1.5): shipped;
- tantivy (Rust, via its Python bindings): a separate index folder, committed after each change;
- bm25s rebuilt from every chunk (the previous release rebuilt it on every write), saved to disk.
For each size (bench/synthetic.py texts): build seconds, the cost of adding one 3-chunk document (FTS5: one
transaction, fsynced; tantivy: add + commit + reload; bm25s: rebuild + save), query p50/p95 over 200 five-word
queries, and disk size. With ``--quality``: keyword-only hit@1 / hit@5 of each engine on the question set's own
chunks (ingested with the real pipeline and model), the reference being bm25s, the previous release's engine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic import Corpus  # noqa: E402
from rag.index.keyword import SCHEMA, KeywordIndex, tokenize  # noqa: E402

Search = Callable[[str, int], list[tuple[int, float]]]


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


class Fts5:
    name = "SQLite FTS5 (shipped)"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = sqlite3.connect(folder / "fts.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, doc_id INTEGER, tokens TEXT NOT NULL)")
        self.db.execute("CREATE INDEX chunks_doc ON chunks(doc_id)")
        for statement in filter(str.strip, SCHEMA.split(";")):
            self.db.execute(statement)
        self.keyword = KeywordIndex(self.db)
        self.tokens = self.documents = 0

    def add(self, rows: list[tuple[int, int, str]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO chunks(id, doc_id, tokens) VALUES (?, ?, ?)", rows)
        for doc_id in sorted({r[1] for r in rows}):
            self.keyword.add_document(doc_id)
        self.db.execute("COMMIT")
        self.documents += len(rows)
        self.tokens += sum(len(r[2].split()) for r in rows)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.keyword.search(query, k, documents=self.documents, tokens=self.tokens)


class Tantivy:
    name = "tantivy 0.27"

    def __init__(self, folder: Path) -> None:
        import tantivy

        self.tantivy = tantivy
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("tokens", stored=False, tokenizer_name="whitespace")
        builder.add_integer_field("id", stored=True, indexed=True, fast=True)
        self.index = tantivy.Index(builder.build(), path=str(folder))
        self.writer = self.index.writer(heap_size=200_000_000, num_threads=1)

    def add(self, rows: list[tuple[int, int, str]]) -> None:
        for chunk_id, _, tokens in rows:
            self.writer.add_document(self.tantivy.Document(tokens=tokens, id=chunk_id))
        self.writer.commit()
        self.index.reload()

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        terms = tokenize(query)
        if not terms:
            return []
        searcher = self.index.searcher()
        hits = searcher.search(self.index.parse_query(" ".join(terms), ["tokens"]), k).hits
        return [(searcher.doc(address)["id"][0], score) for score, address in hits]


class Bm25sRebuilt:
    name = "bm25s, rebuilt per write (previous release)"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows: list[tuple[int, int, str]] = []

    def add(self, rows: list[tuple[int, int, str]]) -> None:
        import shutil

        import bm25s

        self.rows += rows
        self.model = bm25s.BM25()
        self.model.index([r[2].split() for r in self.rows], show_progress=False)
        self.ids = np.array([r[0] for r in self.rows])
        shutil.rmtree(self.folder / "bm25", ignore_errors=True)
        self.model.save(str(self.folder / "bm25"), show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        terms = [t for t in tokenize(query) if t in self.model.vocab_dict]
        if not terms:
            return []
        scores = self.model.get_scores(terms)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]


ENGINES = [Fts5, Tantivy, Bm25sRebuilt]


def scale(chunks: int) -> list[dict[str, object]]:
    corpus = Corpus()
    rows, texts = [], []
    for number, document in enumerate(corpus.documents(chunks)):
        for text in document.texts:
            rows.append((len(rows) + 1, number, " ".join(tokenize(text))))
            texts.append(text)
    rng = np.random.default_rng(5)
    queries = [" ".join(rng.choice(texts[i].split(), size=5, replace=False)) for i in rng.integers(0, chunks, 200)]
    extra = corpus.document(10_000_000, chunks=3)
    extra_rows = [(chunks + 1 + n, 10_000_000, " ".join(tokenize(t))) for n, t in enumerate(extra.texts)]
    results = []
    for engine in ENGINES:
        with tempfile.TemporaryDirectory(prefix="rag-keyword-") as tmp:
            started = time.perf_counter()
            index = engine(Path(tmp))
            batch = len(rows) if engine is Bm25sRebuilt else 100_000  # bm25s can only be built whole
            for start in range(0, len(rows), batch):
                index.add(rows[start : start + batch])
            build = time.perf_counter() - started
            started = time.perf_counter()
            index.add(extra_rows)
            add = time.perf_counter() - started
            times = []
            for query in queries:
                started = time.perf_counter()
                index.search(query, 30)
                times.append((time.perf_counter() - started) * 1000)
            results.append({"chunks": chunks, "engine": engine.name, "build_s": build, "add_one_s": add,
                            "p50_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)),
                            "disk_mb": folder_mb(Path(tmp))})
            print(json.dumps(results[-1]), file=sys.stderr)
            del index
    return results


def quality(dataset: Path) -> list[dict[str, object]]:
    """Keyword-only hit@1 / hit@5 of each engine on the question set's chunks (the real pipeline's chunks)."""
    from ingest.pipeline import Ingestor
    from rag.index.store import open_store
    from rag.retrieval.evaluate import first_hit_rank, load_questions
    from rag.retrieval.retriever import Hit

    questions = load_questions(dataset)
    out = []
    with tempfile.TemporaryDirectory(prefix="rag-keyword-q-") as tmp:
        store = open_store(Path(tmp) / "index")
        Ingestor(store).ingest([dataset / "docs"])
        rows = store._db.execute("SELECT id, doc_id, tokens FROM chunks ORDER BY id").fetchall()
        for engine in ENGINES:
            (Path(tmp) / engine.__name__).mkdir()
            index = engine(Path(tmp) / engine.__name__)
            index.add(rows)
            ranks = []
            for question in questions:
                hits = index.search(question.question, 5)
                chunks = {c.id: c for c in store.chunks([i for i, _ in hits])}
                ranked = [Hit(n, s, chunks[i]) for n, (i, s) in enumerate(hits, start=1) if i in chunks]
                ranks.append(first_hit_rank(ranked, question))
            out.append({"engine": engine.name, "hit@1": sum(r == 1 for r in ranks) / len(ranks),
                        "hit@5": sum(r is not None for r in ranks) / len(ranks), "questions": len(ranks)})
            print(json.dumps(out[-1]), file=sys.stderr)
        store.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--quality", type=Path, metavar="DATASET_DIR", help="also hit@1 / hit@5 on a question set")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = {"scale": [row for n in args.chunks for row in scale(n)],
              "quality": quality(args.quality) if args.quality else []}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("| chunks | engine | build s | add one document s | query p50 ms | p95 ms | disk MB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in result["scale"]:
        print(f"| {r['chunks']:,} | {r['engine']} | {r['build_s']:.1f} | {r['add_one_s']:.3f} | {r['p50_ms']:.2f} |"
              f" {r['p95_ms']:.2f} | {r['disk_mb']:.0f} |")
    if result["quality"]:
        print(f"\nkeyword only, {args.quality}:\n| engine | hit@1 | hit@5 |\n|---|---:|---:|")
        for r in result["quality"]:
            print(f"| {r['engine']} | {r['hit@1']:.3f} | {r['hit@5']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
