"""Processes for the store's concurrency tests: ``python -m tests.store_worker writer|reader INDEX SEED SECONDS [URI]``
(with a Milvus server's URI, the index is ``rag.index.milvus.MilvusStore``'s collections named after INDEX).

Vectors are seeded random unit vectors rather than the embedding model's: the store treats every vector alike,
and these processes must write and read thousands of times in a few seconds (loading the model in each of four
processes would leave no time to write). SQLite, FTS5 and FAISS are the real ones.

A document's text carries its version ("w1d3v17") in every chunk, and its sha256 field says "v17 n3" (version,
chunks), so a reader can tell a whole document from half of one, and an old version from the current one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from rag.index.base import Index
from rag.index.records import NewChunk, StoreError, sha256_text
from rag.index.store import DensePolicy, Store

DIM = 32
POLICY = DensePolicy(exact_limit=60, merge_rows=12, merge_share=0.0, min_nprobe=64)  # merges and IVF rebuilds often
WORDS = "river harbour lantern orchard meadow glacier canyon ember falcon willow".split()


def open_store(index: Path, uri: str | None = None) -> Store:
    if uri:
        from rag.index.milvus import MilvusStore

        return MilvusStore(index, uri=uri, embed_model="worker-test", dim=DIM)  # type: ignore[return-value]
    return Store(index, embed_model="worker-test", dim=DIM, policy=POLICY)


def whole_and_current(store: Index, chunk_id: int) -> str | None:
    """None when the chunk's document, as this read sees it, is whole and of one version; else what is wrong."""
    if isinstance(store, Store):
        doc = store._db.execute(
            "SELECT d.sha256, COUNT(c.id), MIN(substr(c.text, 1, instr(c.text, ' '))),"
            " MAX(substr(c.text, 1, instr(c.text, ' '))) FROM chunks c JOIN documents d ON d.id = c.doc_id"
            " WHERE d.id = (SELECT doc_id FROM chunks WHERE id = ?)", (chunk_id,)
        ).fetchone()
        version, count = doc[0].split()
        if int(count[1:]) != doc[1] or doc[2] != doc[3] or not doc[2].strip().endswith(version):
            return f"half a document or mixed versions: {doc}"
        return None
    chunk = store.chunks([chunk_id])[0]
    info = store.document(chunk.source)
    assert info is not None
    version, count = info.sha256.split()
    siblings = store.neighbours(chunk, distance=100)  # every chunk of its document's version in this read
    prefixes = {c.text.split()[0] for c in siblings}
    if len(siblings) != int(count[1:]) or len(prefixes) != 1 or not prefixes.pop().endswith(version):
        return f"half a document or mixed versions: {info.sha256} vs {[c.text[:12] for c in siblings]}"
    return None


def document_chunks(writer: int, doc: int, version: int, rng: np.random.Generator) -> list[NewChunk]:
    chunks = []
    for n in range(int(rng.integers(1, 5))):
        words = " ".join(rng.choice(WORDS, size=12))
        text = f"w{writer}d{doc}v{version} part {n}: {words}"
        vector = rng.normal(size=DIM).astype(np.float32)
        chunks.append(NewChunk(text, None, None, 0, len(text), 20, None, sha256_text(text), vector / np.linalg.norm(vector)))
    return chunks


def writer(index: Path, seed: int, seconds: float, uri: str | None = None) -> int:
    """Put, replace and remove this writer's five documents until time is up; log each committed change."""
    rng = np.random.default_rng(seed)
    store = open_store(index, uri)
    log = (index.parent / f"writer-{seed}.log").open("a")
    busy = version = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        doc, version = int(rng.integers(0, 5)), version + 1
        path = f"/worker/{seed}/doc{doc}.txt"
        try:
            with store.writer(timeout=0.5):
                if rng.random() < 0.25:
                    store.remove_document(path)
                    change = {"path": path, "version": None}
                else:
                    chunks = document_chunks(seed, doc, version, rng)
                    store.put_document(path=path, base=f"doc{doc}.txt", kind="txt", sha256=f"v{version} n{len(chunks)}",
                                       size=1, pages=None, recipe="worker", chunks=chunks)
                    change = {"path": path, "version": version}
        except StoreError as exc:
            if "busy" not in str(exc):
                raise
            busy += 1
            continue
        log.write(json.dumps(change) + "\n")
        log.flush()
    print(json.dumps({"busy": busy}))
    return 0


def reader(index: Path, seed: int, seconds: float, uri: str | None = None) -> int:
    """Search in a loop; every id returned must be a stored chunk of a whole, current document."""
    rng = np.random.default_rng(seed)
    store = open_store(index, uri)
    reads = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        vector = rng.normal(size=DIM).astype(np.float32)
        with store.reading():
            ids = [i for i, _ in store.search_dense(vector / np.linalg.norm(vector), 10)]
            ids += [i for i, _ in store.search_sparse(" ".join(rng.choice(WORDS, size=2)), 10)]
            found = store.chunks(ids)
            missing = set(ids) - {c.id for c in found}
            if missing:
                print(f"deleted ids returned: {sorted(missing)}", file=sys.stderr)
                return 3
            for chunk in found:
                problem = whole_and_current(store, chunk.id)
                if problem:
                    print(problem, file=sys.stderr)
                    return 4
        reads += 1
    print(json.dumps({"reads": reads}))
    return 0


def killed_writer(index: Path, seed: int, chunks: float, uri: str | None = None) -> int:
    """Replace ``/worker/big.txt`` with a version of ``chunks`` chunks, and die by SIGKILL right after the first
    batch of its chunks reached the server: a writer killed midway, at a moment the test chooses (the kill is
    real; only its timing is arranged, by wrapping the client's insert)."""
    import os
    import signal

    import rag.index.milvus.writer

    rag.index.milvus.writer._INSERT_ROWS = 25  # three batches of the 60 chunks below
    rng = np.random.default_rng(seed)
    store = open_store(index, uri)
    client = store._client  # type: ignore[attr-defined]
    insert = client.insert

    def insert_then_die(*args: object, **kwargs: object) -> object:
        result = insert(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    client.insert = insert_then_die
    big: list[NewChunk] = []
    while len(big) < chunks:
        big += document_chunks(seed, 0, seed, rng)
    with store.writer():
        store.put_document(path="/worker/big.txt", base="big.txt", kind="txt", sha256=f"v{seed} n{len(big)}",
                           size=1, pages=None, recipe="worker", chunks=big)
    return 0


if __name__ == "__main__":
    role, folder, worker_seed, duration = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    server = sys.argv[5] if len(sys.argv) > 5 else None
    roles = {"writer": writer, "reader": reader, "killed-writer": killed_writer}
    sys.exit(roles[role](folder, worker_seed, duration, server))
