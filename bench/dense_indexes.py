"""Which FAISS index for which size: ``bench/dense_indexes.py --chunks 10000 100000 1000000 [--json]``.

For each size, the same synthetic vectors (bench/synthetic.py: random unit vectors around topic centres, 384
dims) go into Flat (exact: the reference), IVF-Flat, IVF with 8-bit scalar quantisation (what the store uses once
large) and HNSW; each is timed to build (train + add), sized (serialised bytes: its memory), and asked 200 queries
(a stored vector plus a little noise) one at a time on one thread: p50/p95 latency and recall@10 against Flat.
What each allows: Flat, IVF-Flat and IVF-SQ8 can remove ids; HNSW cannot (only mark them unwanted at search time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic import clustered_vectors  # noqa: E402
from rag.index.dense import DensePolicy  # noqa: E402

DIM = 384
QUERIES = 200


def measure(index: faiss.Index, queries: np.ndarray, exact: list[set[int]] | None,
            vectors: np.ndarray | None = None) -> dict[str, float]:
    """Latency and recall@10; with ``vectors``, the best 40 are scored again with them (the store's rerank)."""
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = index.search(query.reshape(1, -1), 10 if vectors is None else 40)
        if vectors is not None:
            candidates = ids[0][ids[0] >= 0]
            ids = candidates[np.argsort(-(vectors[candidates] @ query))[:10]].reshape(1, -1)
        times.append((time.perf_counter() - started) * 1000)
        found.append(set(ids[0].tolist()))
    recall = 1.0 if exact is None else float(np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)]))
    return {"p50_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)), "recall_at_10": recall,
            "found": found}


def run(chunks: int, hnsw_limit: int, threads: int, only: str | None = None) -> list[dict[str, object]]:
    vectors = clustered_vectors(chunks, DIM)
    rng = np.random.default_rng(1)
    queries = vectors[rng.integers(0, chunks, QUERIES)] + rng.normal(size=(QUERIES, DIM)).astype(np.float32) * 0.02
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    policy = DensePolicy()
    nlist = policy.nlist(chunks)
    nprobe = policy.nprobe(nlist)
    candidates = {
        "Flat (exact)": lambda: faiss.IndexFlatIP(DIM),
        f"IVF{nlist}-Flat": lambda: faiss.index_factory(DIM, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT),
        f"IVF{nlist}-SQ8 (from {policy.exact_limit:,})": lambda: faiss.index_factory(
            DIM, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT),
        "HNSW32": lambda: faiss.index_factory(DIM, "HNSW32", faiss.METRIC_INNER_PRODUCT),
    }
    rows: list[dict[str, object]] = []
    exact = None
    for name, make in candidates.items():
        if only and only not in name and not name.startswith("Flat"):  # Flat is the recall reference
            continue
        if name.startswith("HNSW") and chunks > hnsw_limit:
            rows.append({"chunks": chunks, "index": name, "skipped": f"over --hnsw-limit {hnsw_limit}"})
            continue
        faiss.omp_set_num_threads(threads)  # building may use the cores; searching is one query on one thread
        started = time.perf_counter()
        index = make()
        if not index.is_trained:
            index.train(vectors[rng.choice(chunks, size=min(chunks, 40 * nlist), replace=False)])
        index.add(vectors)
        build = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        memory = faiss.serialize_index(index).nbytes / 2**20
        probes = [nprobe // 4, nprobe // 2, nprobe, 2 * nprobe] if isinstance(index, faiss.IndexIVF) else [None]
        reranks = [False, True] if "SQ8" in name else [False]
        efs = [64, 128, 256, 512] if isinstance(index, faiss.IndexHNSW) else [None]  # its recall/speed dial
        for probe, rerank, ef in ((p, r, e) for p in probes for r in reranks for e in efs):  # the rule and around it
            if probe is not None:
                index.nprobe = max(1, probe)
            if ef is not None:
                index.hnsw.efSearch = ef
            result = measure(index, queries, exact, vectors if rerank else None)
            if exact is None:
                exact = result["found"]
            del result["found"]
            label = name + (f", nprobe {index.nprobe}" + (" (the rule)" if probe == nprobe else "") if probe else "")
            label += f", efSearch {ef}" if ef else ""
            label += ", best 40 rescored exactly" if rerank else ""
            label += " (shipped)" if rerank and probe == nprobe else ""
            rows.append({"chunks": chunks, "index": label, "build_s": build, "memory_mb": memory, **result})
            print(json.dumps(rows[-1]), file=sys.stderr)
        del index
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--hnsw-limit", type=int, default=1_000_000, help="skip HNSW above this many chunks")
    p.add_argument("--threads", type=int, default=2, help="threads for building (queries use one)")
    p.add_argument("--only", help="measure only the indexes whose name holds this (and Flat, the reference)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [row for n in args.chunks for row in run(n, args.hnsw_limit, args.threads, args.only)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| chunks | index | build s | memory MB | p50 ms | p95 ms | recall@10 |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['chunks']:,} | {r['index']} | skipped ({r['skipped']}) | | | | |")
        else:
            print(f"| {r['chunks']:,} | {r['index']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | {r['p50_ms']:.2f} |"
                  f" {r['p95_ms']:.2f} | {r['recall_at_10']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
