"""Fault campaign: ``kill -9`` at random points of real ingests (``python -m ingest`` with the real model), and
after each one the index opens, every committed document is whole (rows, vectors and keyword postings agree, and
search finds each document's chunks), and a re-run completes.

Small dense-index settings make the ingests fold the delta into snapshots and train IVF indexes as they go, so
kills also land inside merges. A kill counts only when it ends a running ingest (exit by SIGKILL); one that comes
after the ingest has finished is made again on the next edit. Seeded: the same edits and kill points every run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.index.embedder import Embedder
from rag.index.store import Store
from tests.conftest import ROOT

# Small windows spread the writes over the run (each window's files are stored after it is embedded).
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_DENSE_MERGE_ROWS": "6", "RAG_DENSE_EXACT_LIMIT": "40",
       "RAG_EMBED_WINDOW": "8"}
TOPICS = ("lighthouse", "glacier", "orchard", "foundry", "observatory", "monastery", "vineyard", "shipyard")


def _write(path: Path, rng: random.Random, version: int, history: dict[str, set[str]]) -> None:
    """A file of two paragraphs or more, each of numbered records (the numbers let keyword search find a chunk)."""
    tag = path.stem
    paragraphs = [
        f"{tag} version {version}, part {n}: the {rng.choice(TOPICS)} keeps "
        + " ".join(f"{rng.choice(TOPICS)} record {rng.randint(1, 10**6)}" for _ in range(40))
        for n in range(rng.randint(2, 5))
    ]
    path.write_text("\n\n".join(paragraphs))
    history.setdefault(str(path), set()).add(hashlib.sha256(path.read_bytes()).hexdigest())


def _generation(index: Path) -> int:
    try:
        with sqlite3.connect(index / "index.sqlite", timeout=1) as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
    except (sqlite3.OperationalError, TypeError):
        return -1


def _check(index: Path, embedder: Embedder, history: dict[str, set[str]]) -> None:
    with sqlite3.connect(index / "index.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    try:
        store._db.execute("INSERT INTO keyword(keyword) VALUES ('integrity-check')")  # postings match the rows
        rows = store._db.execute("SELECT c.id, c.embedding, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id")
        rows = rows.fetchall()
        assert store.dense_ids() == {r[0] for r in rows}, "vectors and rows agree"
        assert store.chunk_count() == len(rows)
        for doc in store.documents():
            assert doc.sha256 in history[doc.path], f"{doc.name} is a version that was written"
            assert doc.chunks >= 2
        for chunk_id, blob, text in rows:  # each chunk is found by its own record numbers and by its vector
            numbers = re.findall(r"record (\d+)", text)[:4]
            assert chunk_id in [i for i, _ in store.search_sparse(" ".join(numbers), 3)], text[:80]
            assert store.search_dense(np.frombuffer(blob, dtype=np.float32), 1)[0][0] == chunk_id
    finally:
        store.close()


def _campaign(tmp_path: Path, embedder: Embedder, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    history: dict[str, set[str]] = {}
    for n in range(10):
        _write(docs / f"file{n:02d}.txt", rng, 0, history)
    landed = attempt = 0
    while landed < kills:  # a kill that comes after the ingest has finished does not count
        assert attempt < 3 * kills, f"only {landed} of {attempt} kills landed while an ingest was running"
        if attempt:  # edits between runs: replacements, a removal, an addition
            for path in rng.sample(sorted(docs.iterdir()), 6):
                _write(path, rng, attempt, history)
            if rng.random() < 0.5:
                rng.choice(sorted(docs.iterdir())).unlink()
            _write(docs / f"file{10 + attempt:02d}.txt", rng, attempt, history)
        attempt += 1
        before = _generation(index)
        child = subprocess.Popen([sys.executable, "-m", "ingest", str(docs), "--index", str(index)], cwd=ROOT,
                                 env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The kill lands after a random number of committed writes (one per stored file, and merges), plus a random
        # part of a second: inside the embedding of the next window, inside a write, or inside a merge.
        writes, delay = rng.randint(1, 3), rng.uniform(0, 0.4)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None and _generation(index) - before < writes:
            time.sleep(0.01)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        landed += child.returncode == -signal.SIGKILL
        _check(index, embedder, history)
    print(f"fault campaign: {landed} kills landed in {attempt} ingests")  # pytest -s shows it
    done = subprocess.run([sys.executable, "-m", "ingest", str(docs), "--index", str(index), "--json"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _check(index, embedder, history)
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    on_disk = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in docs.iterdir()}
    assert {d.path: d.sha256 for d in store.documents()} == on_disk, "the re-run leaves exactly the files on disk"
    store.close()


def test_kill_9_during_ingest_a_few_times(tmp_path: Path, embedder: Embedder) -> None:
    _campaign(tmp_path, embedder, kills=3, seed=1)


@pytest.mark.slow
def test_kill_9_during_ingest_campaign(tmp_path: Path, embedder: Embedder) -> None:
    _campaign(tmp_path, embedder, kills=20, seed=2)
