"""How the index holds up as it grows: ``bench/scale.py --chunks N [--json] [--dir DIR]``.

Builds a synthetic index of N chunks through ``Store.put_document`` (bench/synthetic.py: 180-word texts, random
unit vectors around topic centres, no model), then, each in a fresh process so its peak memory is its own:
- a writer adds, replaces and removes one small document (3 chunks), timing open + write + commit (+ merge);
- a reader opens the index and runs 200 queries: dense (a stored vector plus noise), keyword (5 words of a stored
  chunk) and both, as the retriever runs them after embedding; recall@10 of dense search against exact search.
The reference, measured in the same run: exact search (FAISS Flat over every vector) for the dense figures, and,
up to 100k chunks (``--reference-writes``), the previous release's write: rebuild bm25s from every row and write
the whole FAISS Flat file again.

``--store milvus`` measures the same rows on ``rag.index.milvus.MilvusStore``, against a Milvus Lite server the
bench starts on a free loopback port (``scripts/milvus.sh``, data in the index folder, so "disk" is the server's
data; the reader's and writers' peak memory is the client's, and "server peak" the server's own); ``--store both``
runs both stores one after the other in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic import Corpus, put  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from rag.index.store import DensePolicy, Store  # noqa: E402
from rag.settings import get_settings  # noqa: E402

DIM = 384
QUERIES = 200


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MILVUS_URI_FILE = "bench-milvus-uri"  # in the index folder: the server the children of a Milvus run talk to


def milvus_uri(folder: Path) -> str | None:
    marker = folder / MILVUS_URI_FILE
    return marker.read_text().strip() if marker.exists() else None


def open_store(folder: Path) -> Store:
    uri = milvus_uri(folder)
    if uri:
        from rag.index.milvus import MilvusStore

        return MilvusStore(folder, uri=uri, embed_model="synthetic", dim=DIM, timeout=120)  # type: ignore[return-value]
    s = get_settings()
    policy = DensePolicy(exact_limit=s.dense_exact_limit, merge_rows=s.dense_merge_rows, min_nprobe=s.dense_nprobe)
    return Store(folder, embed_model="synthetic", dim=DIM, policy=policy)


def build(folder: Path, chunks: int) -> float:
    started = time.perf_counter()
    store = open_store(folder)
    corpus = Corpus(DIM)
    batch = 50_000 // 20
    documents = list(corpus.documents(chunks)) if chunks <= 20_000 else None
    with store.writer(timeout=5):
        if milvus_uri(folder):
            for document in documents if documents is not None else corpus.documents(chunks):
                put(store, document)
        elif documents is not None:
            with store.batch():
                for document in documents:
                    put(store, document)
        else:
            generator = corpus.documents(chunks)
            done = False
            while not done:
                with store.batch():
                    for _ in range(batch):
                        document = next(generator, None)
                        if document is None:
                            done = True
                            break
                        put(store, document)
    store.close()
    return time.perf_counter() - started


def write_op(folder: Path, op: str) -> dict[str, float]:
    """One writer process: open the index, change one small document, commit; time and peak memory."""
    started = time.perf_counter()
    store = open_store(folder)
    corpus = Corpus(DIM)
    small = corpus.document(10_000_000, chunks=3, version={"add": 0, "replace": 1}.get(op, 0))
    with store.writer(timeout=5):
        if op == "remove":
            store.remove_document(small.base)
        else:
            put(store, small)
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": seconds, "peak_mb": peak_mb()}


def read_op(folder: Path) -> dict[str, float]:
    """One reader process: open, first query (loads the snapshot), then timed queries and recall@10."""
    started = time.perf_counter()
    store = open_store(folder)
    rng = np.random.default_rng(7)
    picks = sample_chunks(store, rng)
    vectors = [np.frombuffer(v, dtype=np.float32) for v, _ in picks]
    vectors = [v + rng.normal(size=DIM).astype(np.float32) * 0.02 for v in vectors]
    vectors = [v / np.linalg.norm(v) for v in vectors]
    words = [" ".join(rng.choice(t.split(), size=5, replace=False)) for _, t in picks]
    store.search_dense(vectors[0], 10)
    first = time.perf_counter() - started
    timings: dict[str, list[float]] = {"dense": [], "keyword": [], "both": []}
    found = []
    for vector, query in zip(vectors, words, strict=True):
        t0 = time.perf_counter()
        found.append([i for i, _ in store.search_dense(vector, 10)])
        t1 = time.perf_counter()
        store.search_sparse(query, 30)
        t2 = time.perf_counter()
        with store.reading():
            store.search_dense(vector, 30)
            store.search_sparse(query, 30)
        t3 = time.perf_counter()
        timings["dense"].append((t1 - t0) * 1000)
        timings["keyword"].append((t2 - t1) * 1000)
        timings["both"].append((t3 - t2) * 1000)
    out = {"open_and_first_query_s": first, "peak_mb": peak_mb()}
    for name, values in timings.items():
        out[f"{name}_p50_ms"] = statistics.median(values)
        out[f"{name}_p95_ms"] = float(np.percentile(values, 95))
    np.save(folder / "bench-queries.npy", np.array(vectors))
    (folder / "bench-found.json").write_text(json.dumps(found))
    store.close()
    return out


def sample_chunks(store: Store, rng: np.random.Generator) -> list[tuple[bytes, str]]:
    """(vector bytes, stems) of ``QUERIES`` stored chunks picked at random."""
    if isinstance(store, Store):
        rows = store._db.execute("SELECT MAX(id) FROM chunks").fetchone()[0]
        ids = ",".join(map(str, rng.integers(1, rows, 4 * QUERIES)))
        return store._db.execute(f"SELECT embedding, tokens FROM chunks WHERE id IN ({ids})").fetchall()[:QUERIES]
    ids = [r["id"] for r in store.stored_chunks()]
    chosen = [int(i) for i in rng.choice(ids, size=min(QUERIES, len(ids)), replace=False)]
    rows = store._query(store._chunks_name, f"id in {chosen}", ["vector", "stems"], "sampling")
    return [(np.asarray(r["vector"], dtype=np.float32).tobytes(), r["stems"]) for r in rows]


def all_vectors(store: Store) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of every stored chunk, a page at a time."""
    if isinstance(store, Store):
        last = 0
        while rows := store._db.execute(
            "SELECT id, embedding FROM chunks WHERE id > ? ORDER BY id LIMIT 100000", (last,)
        ).fetchall():
            yield (np.array([r[0] for r in rows], dtype=np.int64),
                   np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, DIM))
            last = rows[-1][0]
        return
    with store.reading():
        view = store._view()
        for page in store._query_all(store._chunks_name, "id > 0", ["id", "doc_id", "version", "vector"], "reading"):
            page = [r for r in page if view.visible(r["doc_id"], r["version"])]
            if page:
                yield (np.array([r["id"] for r in page], dtype=np.int64),
                       np.array([r["vector"] for r in page], dtype=np.float32))


def exact_reference(folder: Path) -> dict[str, float]:
    """Exact search over every stored vector (FAISS Flat): the recall reference and the latency it would cost."""
    import faiss

    store = open_store(folder)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    for ids, vectors in all_vectors(store):
        index.add_with_ids(vectors, ids)
    store.close()
    queries = np.load(folder / "bench-queries.npy")
    found = json.loads((folder / "bench-found.json").read_text())
    times, recalls = [], []
    for query, ours in zip(queries, found, strict=True):
        t0 = time.perf_counter()
        _, ids = index.search(query.reshape(1, -1), 10)
        times.append((time.perf_counter() - t0) * 1000)
        recalls.append(len(set(ids[0].tolist()) & set(ours)) / 10)
    return {"recall_at_10": float(np.mean(recalls)), "exact_p50_ms": statistics.median(times),
            "exact_p95_ms": float(np.percentile(times, 95))}


def reference_write(folder: Path) -> dict[str, float]:
    """The previous release's cost of any write: bm25s rebuilt from every row, the whole Flat index rewritten."""
    import bm25s
    import faiss

    started = time.perf_counter()
    store = open_store(folder)
    rows = store._db.execute("SELECT id, tokens, embedding FROM chunks ORDER BY id").fetchall()
    model = bm25s.BM25()
    model.index([r[1].split() for r in rows], show_progress=False)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        model.save(tmp + "/bm25", show_progress=False)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
        index.add_with_ids(np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(-1, DIM),
                           np.array([r[0] for r in rows], dtype=np.int64))
        faiss.write_index(index, tmp + "/dense.faiss")
    store.close()
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


def child(folder: Path, op: str) -> dict[str, float]:
    """Run one operation in a fresh process (its own peak memory) and read its JSON."""
    done = subprocess.run([sys.executable, __file__, "--op", op, "--dir", str(folder), "--queries", str(QUERIES)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{op} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_chunks(folder: Path) -> int:
    store = open_store(folder)
    try:
        return store.chunk_count()
    finally:
        store.close()


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith("bench-")) / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=10_000)
    p.add_argument("--dir", type=Path, help="index folder (default: a temporary one); reused when it exists")
    p.add_argument("--json", action="store_true")
    p.add_argument("--reference-writes", action="store_true", help="also time the previous release's write")
    p.add_argument("--store", choices=["embedded", "milvus", "both"], default="embedded",
                   help="which store to measure (milvus: on a Milvus Lite server the bench starts)")
    p.add_argument("--queries", type=int, default=QUERIES, help=f"timed queries per reader (default {QUERIES})")
    p.add_argument("--op", choices=["add", "replace", "remove", "read", "reference-write"], help=argparse.SUPPRESS)
    args = p.parse_args()
    globals()["QUERIES"] = args.queries
    if args.op:
        ops = {"read": read_op, "reference-write": reference_write}
        result = ops[args.op](args.dir) if args.op in ops else write_op(args.dir, args.op)
        print(json.dumps(result))
        return 0
    stores = ["embedded", "milvus"] if args.store == "both" else [args.store]
    results = {}
    for name in stores:
        with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
            folder = args.dir or Path(tmp)
            if name == "milvus":
                with milvus_server(folder) as server:
                    results[name] = measure(folder, args, server)
            else:
                results[name] = measure(folder, args, None)
    for name, result in results.items():
        report(name, result, args.json)
    return 0


def measure(folder: Path, args: argparse.Namespace, server: subprocess.Popen[bytes] | None) -> dict[str, object]:
    """The rows of one store: build (unless the folder holds an index), write ops, reads, the exact reference."""
    fresh = not (folder / "index.sqlite").exists() and not (folder / "bench-built").exists()
    result: dict[str, object] = {"build_s": build(folder, args.chunks) if fresh else None}
    (folder / "bench-built").touch()
    result["chunks"] = count_chunks(folder)  # a reused folder holds what it was built with, not --chunks
    for op in ("add", "replace", "remove"):
        result[op] = child(folder, op)
    result["reader"] = child(folder, "read")
    result["reference_exact"] = exact_reference(folder)
    if args.reference_writes and server is None:
        result["reference_write"] = child(folder, "reference-write")
    result["disk_mb"] = disk_mb(folder)
    result["snapshot"] = sorted(p.name for p in folder.glob("vectors-*"))
    if server is not None:
        result["server_peak_mb"] = process_peak_mb(server.pid)
    return result


def process_peak_mb(pid: int) -> float:
    """The peak resident memory of a process and its children (the Milvus server under its launcher)."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == pid or status.parent.name == str(pid):
            total += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
    return total


@contextmanager
def milvus_server(folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A Milvus Lite server on a free loopback port with its data in ``folder``; its URI is left in the folder for
    the child processes."""
    import os
    import signal
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(port), "HOST": "127.0.0.1",
           "DATA_DIR": str(folder / "milvus-data"), "READY_TIMEOUT": "120"}
    server = subprocess.Popen(["bash", str(root / "scripts" / "milvus.sh")], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while subprocess.run(["bash", str(root / "scripts" / "milvus.sh"), "--check"], env=env).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                error = server.stderr.read().decode() if server.stderr else ""
                raise SystemExit(f"the Milvus server did not start: {error}")
            time.sleep(0.5)
        (folder / MILVUS_URI_FILE).write_text(f"http://127.0.0.1:{port}")
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def report(name: str, result: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"store": name, **result}, indent=2))
    else:
        r, ref = result["reader"], result["reference_exact"]
        built = f"{result['build_s']:.1f} s" if result["build_s"] is not None else "reused (built earlier)"
        server = f", server peak {result['server_peak_mb']:.0f} MB" if "server_peak_mb" in result else ""
        print(f"[{name}] chunks {result['chunks']}, build {built}, disk {result['disk_mb']:.0f} MB{server}")
        for op in ("add", "replace", "remove"):
            print(f"{op} one document: {result[op]['seconds']:.3f} s, writer peak {result[op]['peak_mb']:.0f} MB")
        if "reference_write" in result:
            w = result["reference_write"]
            print(f"reference (previous release, any write): {w['seconds']:.2f} s, peak {w['peak_mb']:.0f} MB")
        print(f"dense p50/p95 {r['dense_p50_ms']:.2f}/{r['dense_p95_ms']:.2f} ms, recall@10 {ref['recall_at_10']:.3f};"
              f" reference exact p50/p95 {ref['exact_p50_ms']:.2f}/{ref['exact_p95_ms']:.2f} ms")
        print(f"keyword p50/p95 {r['keyword_p50_ms']:.2f}/{r['keyword_p95_ms']:.2f} ms; both"
              f" {r['both_p50_ms']:.2f}/{r['both_p95_ms']:.2f} ms; reader peak {r['peak_mb']:.0f} MB,"
              f" open + first query {r['open_and_first_query_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
